"""What the running task or actor call is, for ``get_runtime_context()``: task_name,
function_name, resources, and for actors actor_name, class, module and
handle_meta (set by _worker_hooks from the metadata _api puts in each task). A context
variable, so that each thread and each coroutine of an async actor sees its own; None on the
driver. Stored as tuples, made into a dict by get() only when asked."""

import contextvars

current = contextvars.ContextVar("mpiray_task_info", default=None)


def get():
    """The calling task's or actor call's information as a dict ({} on the driver). A task
    stores ``(name, extra)`` (extra: _api's (function name, resources)), so
    that tasks that never ask pay nothing for it."""
    info = current.get()
    if info is None:
        return {}
    if isinstance(info, tuple) and isinstance(info[0], dict):  # an actor call
        base, method, native_ctx = info
        cls = base.get("class", "")
        out = dict(base, task_name=f"{cls}.{method}",
                   function_name=f"{base.get('module', '')}.{base.get('qualname', cls)}.{method}")
        if native_ctx is not None:
            out["native_ctx"] = native_ctx
        return out
    if isinstance(info, tuple):
        name, extra = info
        return {"task_name": name, "function_name": extra[0] if extra else name,
                "resources": dict(extra[1]) if extra else {"CPU": 1.0}}
    return info
