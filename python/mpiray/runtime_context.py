"""``ray.runtime_context``: :class:`RuntimeContext` and :func:`get_runtime_context`."""

from ._api import RuntimeContext, get_runtime_context

__all__ = ["RuntimeContext", "get_runtime_context"]
