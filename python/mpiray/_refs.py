"""Rebuilding ObjectRefs when a value containing them is unpickled (a plain Python function,
so that pickle finds it by name)."""

from . import _core


def rebuild(binary):
    return _core._rebuild_ref(binary)
