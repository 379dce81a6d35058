"""What the running task or actor call is, for ``get_runtime_context()``: a dict with
task_name, function_name, resources, and for actors actor_name, class, module and
handle_meta (set by _worker_hooks from the metadata _api puts in each task). A context
variable, so that each thread and each coroutine of an async actor sees its own; None on the
driver."""

import contextvars

current = contextvars.ContextVar("mpiray_task_info", default=None)
