"""Ray's ``ray.runtime_env``: ``RuntimeEnv`` and ``RuntimeEnvConfig``, dicts that can be passed
wherever a ``runtime_env`` dict is accepted (``init``, ``@remote``, ``.options``)."""

from . import _runtime_env as _impl

__all__ = ["RuntimeEnv", "RuntimeEnvConfig"]


class RuntimeEnvConfig(dict):
    """Ray's runtime_env ``config`` (accepted; mpiray installs nothing, so it has no effect)."""

    def __init__(self, setup_timeout_seconds=600, eager_install=True, log_files=None):
        super().__init__(setup_timeout_seconds=setup_timeout_seconds, eager_install=eager_install)
        if log_files is not None:
            self["log_files"] = list(log_files)


class RuntimeEnv(dict):
    """A runtime environment for a job, task or actor: ``env_vars``, ``working_dir``,
    ``py_modules``, ``excludes`` (and Ray's ``config``). Fields left as None are not set.
    Checked when made: an unknown or unsupported field raises ValueError, a wrong type
    TypeError."""

    def __init__(self, *, py_modules=None, working_dir=None, env_vars=None, excludes=None,
                 config=None, _validate=True, **kwargs):
        fields = dict(py_modules=py_modules, working_dir=working_dir, env_vars=env_vars,
                      excludes=excludes, config=config, **kwargs)
        super().__init__({k: v for k, v in fields.items() if v is not None})
        if _validate:
            _impl.validate(self, "RuntimeEnv", check_paths=False)

    def to_dict(self):
        return dict(self)
