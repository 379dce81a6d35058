"""Source file names of functions and classes shipped by value.

cloudpickle (3.1.3 and later) replaces the file name of every code object it pickles by value
with ``"<dynamic-code>"``, so a traceback from a remote function defined in the user's script
would show neither the file nor the failing line. The export keeps the file name beside the
pickled object (:func:`pack`), and the worker puts it back into the code objects after loading
(:func:`unpack`); the worker reads the lines from the file itself (shared or same machine).
"""

import types

_MARK = "__mpiray_export_v1__"
_DYNAMIC = "<dynamic-code>"


def _file_of(obj):
    code = getattr(obj, "__code__", None)
    if code is not None:
        return code.co_filename
    if isinstance(obj, type):
        for value in vars(obj).values():
            f = _file_of(getattr(value, "__func__", getattr(value, "fget", value)))
            if f:
                return f
    return None


def pack(obj):
    """What the export pickles: ``obj`` with the file it was defined in."""
    return (_MARK, _file_of(obj), obj)


def _refile(code, filename):
    consts = tuple(_refile(c, filename) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    if code.co_filename == _DYNAMIC:
        return code.replace(co_filename=filename, co_consts=consts)
    return code.replace(co_consts=consts) if consts != code.co_consts else code


def _fix(obj, filename, seen):
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, types.FunctionType):
        obj.__code__ = _refile(obj.__code__, filename)
    elif isinstance(obj, (staticmethod, classmethod)):
        _fix(obj.__func__, filename, seen)
    elif isinstance(obj, property):
        for f in (obj.fget, obj.fset, obj.fdel):
            if f is not None:
                _fix(f, filename, seen)
    elif isinstance(obj, type):
        for value in vars(obj).values():
            _fix(value, filename, seen)


def unpack(loaded):
    """The exported object, its code objects given back their file name."""
    if not (isinstance(loaded, tuple) and len(loaded) == 3 and loaded[0] == _MARK):
        return loaded
    _, filename, obj = loaded
    if filename and filename != _DYNAMIC:
        _fix(obj, filename, set())
    return obj
