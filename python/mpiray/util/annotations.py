"""Ray's API stability markers (``ray.util.annotations``), for code that decorates its own
classes and functions with them: the decorators return what they decorate, unchanged
(``Deprecated`` adds a ``DeprecationWarning`` on use)."""

import functools
import inspect
import warnings

__all__ = ["PublicAPI", "DeveloperAPI", "Deprecated", "RayDeprecationWarning"]


class RayDeprecationWarning(DeprecationWarning):
    """Ray's own deprecation warning category."""


def _marker(*args, **kwargs):
    if len(args) == 1 and not kwargs and callable(args[0]):
        return args[0]
    return lambda obj: obj


PublicAPI = _marker
DeveloperAPI = _marker


def Deprecated(*args, **kwargs):  # noqa: N802  (Ray's name)
    """Mark a function or class deprecated: using it warns with ``message``."""
    message = kwargs.get("message", "")

    def deco(obj):
        text = f"{getattr(obj, '__qualname__', obj)} is deprecated. {message}".strip()
        if inspect.isclass(obj):
            init = obj.__init__

            @functools.wraps(init)
            def warned_init(self, *a, **k):
                warnings.warn(text, RayDeprecationWarning, stacklevel=2)
                init(self, *a, **k)

            obj.__init__ = warned_init
            return obj

        @functools.wraps(obj)
        def warned(*a, **k):
            warnings.warn(text, RayDeprecationWarning, stacklevel=2)
            return obj(*a, **k)

        return warned

    if len(args) == 1 and not kwargs and callable(args[0]):
        return deco(args[0])
    return deco
