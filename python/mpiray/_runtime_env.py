"""Runtime environments (Ray's ``runtime_env``): ``env_vars``, ``working_dir``, ``py_modules``
and ``excludes``, per job, task and actor.

Driver side: a runtime_env is validated where the user passes it (``init``, ``@remote``,
``.options``); each directory or module is zipped once per session (deterministically, so its
content hash names it), put into the object store, and the resulting ``Package`` (hash + the
ObjectRef) travels inside the task's metadata as part of a ``TaskEnv``. The ObjectRef is held
by this module's cache for the session and by every pending task that carries it.

Worker side: a package is extracted once per content hash into
``<session dir>/runtime_resources/<hash>`` (removed with the session), and ``Scope`` applies a
TaskEnv around the task, constructor or actor method: environment variables, current
directory, ``sys.path`` and the modules imported from the packages are set on entry and
restored on exit. A worker process runs several tasks and actors at once (threads), so these
process-wide settings are layered: the most recently entered scope wins while several are
active, and each exit restores what the remaining scopes (or the base process) want. A task's
arguments are unpickled before its scope is entered; ``_ArgumentFinder`` lets them import
modules from the task's (or actor's) packages meanwhile.
"""

import hashlib
import io
import logging
import os
import pickle
import re
import shutil
import sys
import tempfile
import threading
import types
import zipfile

from . import _core

logger = logging.getLogger("mpiray")

FIELDS = ("env_vars", "working_dir", "py_modules", "excludes", "config")

# Ray's other runtime_env fields: recognised, so the error says why they are refused.
_UNSUPPORTED = {
    "pip": "mpiray installs no packages at run time: install them into the Python environment "
           "the job runs in (a virtualenv or conda environment on a shared file system, or a "
           "container), or ship pure-Python code with 'py_modules'",
    "conda": "mpiray creates no conda environments: activate one before launching the job",
    "uv": "mpiray installs no packages at run time: install them before launching the job",
    "container": "mpiray starts no containers: launch the job inside one (srun --container-image, "
                 "apptainer exec ...)",
    "image_uri": "mpiray starts no containers: launch the job inside one",
    "py_executable": "workers run the driver's interpreter",
    "java_jars": "mpiray has no Java workers",
    "worker_process_setup_hook": "not implemented",
    "nsight": "not implemented",
    "_nsight": "not implemented",
    "rocprof_sys": "not implemented",
    "_rocprof_sys": "not implemented",
}

_CONFIG_FIELDS = {"setup_timeout_seconds", "eager_install", "log_files"}

# The largest package (zip) shipped, as Ray's default (RAY_max_grpc_message_size: 500 MiB).
DEFAULT_MAX_BYTES = 500 * 1024 * 1024
MAX_BYTES_ENV = "MPIRAY_RUNTIME_ENV_MAX_BYTES"
FILE_SIZE_WARNING = 10 * 1024 * 1024
IGNORE_GITIGNORE_ENV = "MPIRAY_RUNTIME_ENV_IGNORE_GITIGNORE"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed: the zip's bytes (and hash) depend on content only


def _mib(n):
    return f"{n / 1024 ** 2:.2f} MiB"


def _max_bytes():
    v = os.environ.get(MAX_BYTES_ENV)
    if not v:
        return DEFAULT_MAX_BYTES
    try:
        return int(v)
    except ValueError:
        raise ValueError(f"{MAX_BYTES_ENV} must be a number of bytes, got {v!r}") from None


def _is_worker_rank():
    """True in a process launched as an MPI rank other than 0: it becomes a worker inside
    init(), never submits work, and may not see the driver's files (no shared file system)."""
    for var in ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"):
        v = os.environ.get(var)
        if v is not None and v.strip() not in ("", "0"):
            return True
    return False


# ------------------------------------------------------------------ validation (driver)

class Spec:
    """A validated runtime_env as given by the user: paths absolute; ``given`` names the
    fields that replace the parent's (env_vars are merged instead)."""

    __slots__ = ("env_vars", "working_dir", "py_modules", "excludes", "given", "shipped")

    def __init__(self):
        self.env_vars = {}
        self.working_dir = None  # (path, kind): kind "dir" or "zip"
        self.py_modules = ()     # ((path, kind), ...): kind "dir", "file", "zip" or "whl"
        self.excludes = ()
        self.given = frozenset()
        self.shipped = None      # (job id, working_dir Package, py_modules Packages)

    # A RemoteFunction or ActorClass holding a Spec may be pickled into a task: its packages
    # go with it once shipped, so that a worker submitting it does not need the driver's files.
    def __getstate__(self):
        return (self.env_vars, self.working_dir, self.py_modules, self.excludes, self.given,
                self.shipped)

    def __setstate__(self, state):
        (self.env_vars, self.working_dir, self.py_modules, self.excludes, self.given,
         self.shipped) = state


def _is_uri(s):
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", s) is not None


def _path_of(value, field):
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise TypeError(f"runtime_env['{field}'] must be a path (str), got "
                        f"{type(value).__name__}: {value!r:.100}")
    local = re.match(r"^file://(localhost)?(/.*)$", value) if isinstance(value, str) else None
    if local:  # file:///path and file://localhost/path name a local path (as in Ray)
        value = local.group(2)
    if _is_uri(value):
        raise ValueError(f"runtime_env['{field}'] {value!r}: remote URIs are not supported by "
                         "mpiray; download the archive and give its local path (it is shipped "
                         "to the workers through the object store)")
    if not value:
        raise ValueError(f"runtime_env['{field}'] must not be empty")
    return os.path.abspath(os.path.expanduser(value))


def _check_working_dir(value, check_paths):
    path = _path_of(value, "working_dir")
    if path.endswith(".zip") and (not check_paths or os.path.isfile(path)):
        return path, "zip"
    if check_paths:
        if not os.path.exists(path):
            raise ValueError(f"runtime_env['working_dir'] {value!r} does not exist "
                             f"(resolved to {path})")
        if not os.path.isdir(path):
            raise ValueError(f"runtime_env['working_dir'] {value!r} must be a directory or a "
                             ".zip file")
    return path, "dir"


def _module_path(module):
    paths = list(getattr(module, "__path__", None) or [])
    if paths:
        if len(paths) != 1:
            raise ValueError(f"runtime_env['py_modules']: module {module.__name__!r} has "
                             f"{len(paths)} directories in __path__ (a namespace package); give "
                             "its directories as paths instead")
        return paths[0], "dir"
    f = getattr(module, "__file__", None)
    if f and f.endswith(".py"):
        return os.path.abspath(f), "file"
    raise ValueError(f"runtime_env['py_modules']: module {module.__name__!r} has no source "
                     "directory or .py file to ship (built-in or extension module)")


def _check_py_module(entry, check_paths):
    if isinstance(entry, types.ModuleType):
        path, kind = _module_path(entry)
        return os.path.abspath(path), kind
    path = _path_of(entry, "py_modules")
    if check_paths and not os.path.exists(path):
        raise ValueError(f"runtime_env['py_modules'] entry {entry!r} does not exist "
                         f"(resolved to {path})")
    if path.endswith(".whl"):
        return path, "whl"
    if path.endswith(".zip"):
        return path, "zip"
    if path.endswith(".py") and (not check_paths or os.path.isfile(path)):
        return path, "file"
    if check_paths and not os.path.isdir(path):
        raise ValueError(f"runtime_env['py_modules'] entry {entry!r} must be a directory, a "
                         ".py file, a .zip or .whl file, or a module object")
    return path, "dir"


def validate(runtime_env, where="runtime_env", check_paths=None):
    """A ``Spec`` from a user's runtime_env (dict or RuntimeEnv; None gives None). Raises
    TypeError/ValueError naming the field. Paths are checked unless this process is a worker
    rank (``check_paths`` None) or ``check_paths`` is False."""
    if runtime_env is None or isinstance(runtime_env, Spec):
        return runtime_env
    if check_paths is None:
        check_paths = not _is_worker_rank()
    if not isinstance(runtime_env, dict):
        raise TypeError(f"runtime_env must be a dict (or mpiray.runtime_env.RuntimeEnv), got "
                        f"{type(runtime_env).__name__}: {runtime_env!r:.100}")
    given = {k: v for k, v in runtime_env.items() if v is not None}
    for key in given:
        if not isinstance(key, str):
            raise TypeError(f"runtime_env keys must be strings, got {key!r}")
        if key in _UNSUPPORTED:
            raise ValueError(f"runtime_env field '{key}' is not supported by mpiray: "
                             f"{_UNSUPPORTED[key]}. Supported fields: {list(FIELDS)}")
        if key not in FIELDS:
            raise ValueError(f"Unknown runtime_env field '{key}' in {where}. Supported fields: "
                             f"{list(FIELDS)}")
    spec = Spec()
    env = given.get("env_vars")
    if env is not None:
        if not isinstance(env, dict):
            raise TypeError("runtime_env['env_vars'] must be a dict of str to str, got "
                            f"{type(env).__name__}")
        for k, v in env.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError("runtime_env['env_vars'] must be a dict of str to str, got "
                                f"{k!r}: {v!r:.100} ({type(k).__name__}: {type(v).__name__})")
            if not k or "=" in k or "\0" in k or "\0" in v:
                raise ValueError(f"runtime_env['env_vars']: invalid variable name {k!r}")
        spec.env_vars = dict(env)
    if "working_dir" in given:
        spec.working_dir = _check_working_dir(given["working_dir"], check_paths)
    if "py_modules" in given:
        mods = given["py_modules"]
        if isinstance(mods, (str, os.PathLike, types.ModuleType)) or not isinstance(mods, (list, tuple)):
            raise TypeError("runtime_env['py_modules'] must be a list of paths or modules, got "
                            f"{type(mods).__name__}")
        spec.py_modules = tuple(_check_py_module(m, check_paths) for m in mods)
    if "excludes" in given:
        exc = given["excludes"]
        if isinstance(exc, str) or not isinstance(exc, (list, tuple)) or \
                not all(isinstance(e, str) for e in exc):
            raise TypeError("runtime_env['excludes'] must be a list of strings (.gitignore "
                            f"patterns), got {exc!r:.100}")
        spec.excludes = tuple(exc)
    if "config" in given:
        cfg = given["config"]
        if not isinstance(cfg, dict):
            raise TypeError(f"runtime_env['config'] must be a dict, got {type(cfg).__name__}")
        unknown = sorted(set(cfg) - _CONFIG_FIELDS)
        if unknown:
            raise ValueError(f"Unknown runtime_env['config'] field(s) {unknown}; valid ones: "
                             f"{sorted(_CONFIG_FIELDS)}")
    spec.given = frozenset(k for k in given if k in ("env_vars", "working_dir", "py_modules"))
    return spec


def validated_options(options, where):
    """``options`` with its runtime_env (if any) validated into a Spec."""
    if options.get("runtime_env") is None:
        return options
    out = dict(options)
    out["runtime_env"] = validate(options["runtime_env"], where)
    return out


# ------------------------------------------------------------------ .gitignore patterns

def _glob_segment(seg):
    out, i, n = [], 0, len(seg)
    while i < n:
        c = seg[i]
        if c == "\\" and i + 1 < n:
            out.append(re.escape(seg[i + 1]))
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = i + 1
            if j < n and seg[j] in "!^":
                j += 1
            if j < n and seg[j] == "]":
                j += 1
            while j < n and seg[j] != "]":
                j += 1
            if j >= n:
                out.append(re.escape(c))
            else:
                body = seg[i + 1:j]
                if body[:1] in ("!", "^"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _compile_pattern(line):
    """(regex, negated, dir_only) for one .gitignore line, or None for blanks/comments."""
    s = line.rstrip("\r\n")
    while s.endswith(" ") and not s.endswith("\\ "):
        s = s[:-1]
    if not s or s.startswith("#"):
        return None
    negated = s.startswith("!")
    if negated:
        s = s[1:]
    elif s.startswith("\\!") or s.startswith("\\#"):
        s = s[1:]
    dir_only = s.endswith("/")
    s = s.rstrip("/")
    if not s:
        return None
    anchored = "/" in s
    segs = s.lstrip("/").split("/")
    body = []
    for i, seg in enumerate(segs):
        last = i == len(segs) - 1
        if seg == "**":
            body.append(".*" if last else "(?:.*/)?")
        else:
            body.append(_glob_segment(seg) + ("" if last else "/"))
    prefix = "" if anchored else "(?:.*/)?"
    return re.compile("^" + prefix + "".join(body) + "$"), negated, dir_only


class _Ignore:
    """.gitignore-style patterns relative to ``base`` (a path relative to the package root);
    the last matching pattern decides."""

    def __init__(self, lines, base=""):
        self.base = base
        self.rules = [r for r in map(_compile_pattern, lines) if r is not None]

    def excluded(self, rel, is_dir):
        if self.base:
            if not rel.startswith(self.base + "/"):
                return False
            rel = rel[len(self.base) + 1:]
        result = False
        for regex, negated, dir_only in self.rules:
            if dir_only and not is_dir:
                continue
            if regex.match(rel):
                result = not negated
        return result


# ------------------------------------------------------------------ packaging (driver)

def _walk(root, excludes):
    """(relative path, absolute path or None for a directory) of everything under ``root``
    that is not excluded, in sorted order. Symbolic links are followed (not into a loop)."""
    use_gitignore = os.environ.get(IGNORE_GITIGNORE_ENV, os.environ.get(
        "RAY_RUNTIME_ENV_IGNORE_GITIGNORE", "0")) != "1"
    top = [_Ignore(excludes)] if excludes else []

    def visit(dirpath, rel, matchers, ancestors):
        if use_gitignore:
            gi = os.path.join(dirpath, ".gitignore")
            if os.path.isfile(gi):
                with open(gi, encoding="utf-8", errors="replace") as f:
                    matchers = matchers + [_Ignore(f.readlines(), rel)]
        for name in sorted(os.listdir(dirpath)):
            path = os.path.join(dirpath, name)
            r = f"{rel}/{name}" if rel else name
            is_dir = os.path.isdir(path)
            if any(m.excluded(r, is_dir) for m in matchers):
                continue
            if is_dir:
                real = os.path.realpath(path)
                if real in ancestors:
                    continue  # a link back up the tree
                yield r, None
                yield from visit(path, r, matchers, ancestors | {real})
            elif os.path.isfile(path):  # sockets, fifos, dangling links: left out
                yield r, path

    yield from visit(root, "", top, frozenset({os.path.realpath(root)}))


def _zip_tree(field, source, entries):
    limit = _max_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, path in entries:
            if path is None:
                info = zipfile.ZipInfo(name + "/", _ZIP_TIME)
                info.external_attr = (0o40755 << 16) | 0x10
                zf.writestr(info, b"")
                continue
            st = os.stat(path)
            if buf.tell() + st.st_size >= limit:
                raise ValueError(
                    f"runtime_env['{field}'] {source!r}: the package is larger than the maximum "
                    f"of {_mib(limit)} (at {name}: {_mib(buf.tell() + st.st_size)} so far). "
                    "Leave large files out with runtime_env['excludes'] (or a .gitignore), "
                    "read large data from a shared file system, or raise the limit with "
                    f"{MAX_BYTES_ENV}")
            if st.st_size >= FILE_SIZE_WARNING:
                logger.warning("runtime_env['%s']: file %s is large (%s); consider adding it to "
                               "runtime_env['excludes']", field, path, _mib(st.st_size))
            info = zipfile.ZipInfo(name, _ZIP_TIME)
            info.external_attr = (st.st_mode & 0xFFFF) << 16
            info.file_size = st.st_size
            with open(path, "rb") as src, zf.open(info, "w", force_zip64=st.st_size >= 1 << 31) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    return buf.getvalue()


def _read_archive(field, path):
    size = os.path.getsize(path)
    limit = _max_bytes()
    if size >= limit:
        raise ValueError(f"runtime_env['{field}'] {path!r}: the archive ({_mib(size)}) is larger "
                         f"than the maximum of {_mib(limit)} (raise it with {MAX_BYTES_ENV})")
    with open(path, "rb") as f:
        data = f.read()
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise ValueError(f"runtime_env['{field}'] {path!r} is not a zip archive")
    return data


class Built:
    """A zipped package not yet in the object store."""

    __slots__ = ("key", "kind", "data", "hash", "strip_top", "source")

    def __init__(self, key, kind, data, strip_top, source):
        self.key, self.kind, self.data, self.strip_top, self.source = key, kind, data, strip_top, source
        h = hashlib.sha256(b"strip:" if strip_top else b"keep:")
        h.update(data)
        self.hash = h.hexdigest()[:32]


def _build(field, path, kind, excludes):
    if kind == "dir":
        if not os.path.isdir(path):
            raise ValueError(f"runtime_env['{field}'] {path!r} does not exist (or is no longer "
                             "a directory)")
        entries = _walk(path, excludes)
        if field == "py_modules":  # the package directory itself, importable by its name
            top = os.path.basename(path.rstrip(os.sep))
            entries = [(top, None)] + [(f"{top}/{r}", p) for r, p in entries]
        return _zip_tree(field, path, entries), False
    if kind == "file":
        if not os.path.isfile(path):
            raise ValueError(f"runtime_env['{field}'] {path!r} does not exist")
        return _zip_tree(field, path, [(os.path.basename(path), path)]), False
    if not os.path.isfile(path):
        raise ValueError(f"runtime_env['{field}'] {path!r} does not exist")
    # A working_dir archive holding one top-level directory stands for that directory (as
    # Ray); a py_modules archive is put on sys.path as it is (like a .zip on PYTHONPATH).
    return _read_archive(field, path), field == "working_dir"


_cache_lock = threading.Lock()
_packages = {}  # (field, path, kind, excludes, gitignore) -> Package, for this session


def _key(field, path, kind, excludes):
    gi = os.environ.get(IGNORE_GITIGNORE_ENV, os.environ.get("RAY_RUNTIME_ENV_IGNORE_GITIGNORE", "0"))
    return (field, path, kind, tuple(excludes) if kind == "dir" else (), gi)


def build(field, entry, excludes):
    """Zip ``entry`` ((path, kind)) unless this session already shipped it."""
    path, kind = entry
    key = _key(field, path, kind, excludes)
    with _cache_lock:
        if key in _packages:
            return _packages[key]
    data, strip_top = _build(field, path, kind, excludes)
    return Built(key, field, data, strip_top, path)


class Package:
    """A zip in the object store: its content hash, and the ObjectRef that keeps it there."""

    __slots__ = ("kind", "hash", "ref", "strip_top")

    def __init__(self, kind, hash_, ref, strip_top):
        self.kind, self.hash, self.ref, self.strip_top = kind, hash_, ref, strip_top

    def __getstate__(self):
        return (self.kind, self.hash, self.ref, self.strip_top)

    def __setstate__(self, state):
        self.kind, self.hash, self.ref, self.strip_top = state

    @property
    def uri(self):
        return f"mpiray://_pkg_{self.hash}.zip"


def ship(built):
    """The Package of ``built`` (put into the object store once per session)."""
    if isinstance(built, Package):
        return built
    with _cache_lock:
        pkg = _packages.get(built.key)
        if pkg is None:
            # Out of band: written once into shared memory, read in place by the workers.
            ref = _core.put(pickle.PickleBuffer(built.data))
            pkg = Package(built.kind, built.hash, ref, built.strip_top)
            _packages[built.key] = pkg
        return pkg


_job_id = None  # the session's name: packages are valid in this session only


def _session_name():
    global _job_id
    if _job_id is None:
        _job_id = _core.context()["job_id"]
    return _job_id


def _resolve(spec, prebuilt=None):
    """(working_dir Package or None, tuple of py_modules Packages) of a Spec."""
    if spec.working_dir is None and not spec.py_modules:
        return None, ()
    job = _session_name()
    shipped = spec.shipped
    if shipped is not None and shipped[0] == job:
        return shipped[1], shipped[2]
    prebuilt = prebuilt or {}

    def one(field, entry):
        b = prebuilt.get((field, entry))
        return ship(b if b is not None else build(field, entry, spec.excludes))

    wd = one("working_dir", spec.working_dir) if spec.working_dir is not None else None
    mods = tuple(one("py_modules", e) for e in spec.py_modules)
    spec.shipped = (job, wd, mods)
    return wd, mods


class TaskEnv:
    """The runtime environment a task or actor runs in (merged over its parent's), as it
    travels in the task's metadata."""

    __slots__ = ("env_vars", "working_dir", "py_modules", "job", "key")

    def __init__(self, env_vars, working_dir, py_modules, job):
        self.env_vars = env_vars
        self.working_dir = working_dir
        self.py_modules = tuple(py_modules)
        self.job = job  # the job's TaskEnv: itself for the job's own, None if the job has none
        self.key = (working_dir.hash if working_dir else None,) + tuple(p.hash for p in self.py_modules)

    def __getstate__(self):
        return (self.env_vars, self.working_dir, self.py_modules,
                "self" if self.job is self else self.job)

    def __setstate__(self, state):
        env_vars, wd, mods, job = state
        self.__init__(env_vars, wd, mods, self if job == "self" else job)
        # A worker unpickles a task's metadata (holding its TaskEnv) just before its arguments:
        # until the task starts, imports the arguments need may come from its packages.
        global _job_seen
        _pending[threading.get_ident()] = self
        if self.job is not None:
            _job_seen = self.job

    def view(self):
        """Ray's form: what get_runtime_context().runtime_env shows."""
        out = {}
        if self.env_vars:
            out["env_vars"] = dict(self.env_vars)
        if self.working_dir is not None:
            out["working_dir"] = self.working_dir.uri
        if self.py_modules:
            out["py_modules"] = [p.uri for p in self.py_modules]
        return out


def _merge(parent, spec, wd, mods):
    """``spec`` over ``parent``: env_vars merged key by key, other fields replaced."""
    env = dict(parent.env_vars) if parent is not None else {}
    env.update(spec.env_vars)
    if parent is not None and "working_dir" not in spec.given:
        wd = parent.working_dir
    if parent is not None and "py_modules" not in spec.given:
        mods = parent.py_modules
    if parent is None and not env and wd is None and not mods:
        return None  # nothing to apply
    return TaskEnv(env, wd, mods, None if parent is None else parent.job)


_job_env = None  # the driver's: set by init(runtime_env=...)
_job_seen = None  # a worker's: the job's TaskEnv, learned from the tasks it ran
class _Local(threading.local):
    env = None  # (a class default: a thread that never set it reads None, no AttributeError)


_tls = _Local()  # .env: the TaskEnv of what the calling thread runs
# Thread id -> the TaskEnv of the task whose arguments the thread unpickles next. Keyed by id,
# not threading.local: the runtime's threads get a new Python thread state for every call.
_pending = {}


def prepare_job(spec):
    """Zip the job's packages (before the cluster starts, so that errors come first)."""
    if spec is None:
        return {}
    out = {}
    if spec.working_dir is not None:
        out[("working_dir", spec.working_dir)] = build("working_dir", spec.working_dir, spec.excludes)
    for e in spec.py_modules:
        out[("py_modules", e)] = build("py_modules", e, spec.excludes)
    return out


def set_job(spec, prebuilt):
    """Ship the job's packages and make its TaskEnv the parent of the driver's submissions."""
    global _job_env, _job_id
    _job_id = None
    if spec is None or (not spec.env_vars and spec.working_dir is None and not spec.py_modules):
        _job_env = None
        return
    wd, mods = _resolve(spec, prebuilt)
    _job_env = TaskEnv(dict(spec.env_vars), wd, mods, None)
    _job_env.job = _job_env


def reset():
    """Forget the session's packages and job environment (at shutdown)."""
    global _job_env, _job_id
    _job_env = None
    _job_id = None
    with _cache_lock:
        _packages.clear()


def parent_env():
    env = getattr(_tls, "env", None)
    if env is not None:
        return env
    return _job_env if _job_env is not None else _job_seen


def for_submission(spec):
    """The TaskEnv a task or actor submitted now runs in (None: none at all)."""
    parent = parent_env()
    if spec is None:
        return parent
    wd, mods = _resolve(spec)
    return _merge(parent, spec, wd, mods)


def current_view():
    env = parent_env()
    return env.view() if env is not None else {}


# ------------------------------------------------------------------ workers

_extract_lock = threading.Lock()
_extracted = {}  # hash -> local directory


def _cache_root():
    return os.path.join(_core.context()["session_dir"], "runtime_resources")


def _extract(zf, dest):
    for info in zf.infolist():
        target = zf.extract(info, dest)
        mode = (info.external_attr >> 16) & 0o7777
        if mode and not info.is_dir():
            os.chmod(target, mode | 0o400)


def _single_top(dirpath):
    names = [n for n in os.listdir(dirpath) if n != "__MACOSX"]
    if len(names) == 1 and os.path.isdir(os.path.join(dirpath, names[0])):
        return os.path.join(dirpath, names[0])
    return dirpath


def local_dir(pkg):
    """The directory ``pkg`` is extracted to on this host (once per content hash; several
    processes may race: each extracts into a private directory and renames it into place)."""
    d = _extracted.get(pkg.hash)
    if d is not None:
        return d
    with _extract_lock:
        d = _extracted.get(pkg.hash)
        if d is not None:
            return d
        root = _cache_root()
        final = os.path.join(root, pkg.hash)
        if not os.path.isdir(final):
            data = _core.get([pkg.ref], None)[0]
            os.makedirs(root, mode=0o700, exist_ok=True)
            tmp = tempfile.mkdtemp(prefix=f".{pkg.hash}.", dir=root)
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as zf:
                    _extract(zf, tmp)
                src = _single_top(tmp) if pkg.strip_top else tmp
                try:
                    os.rename(src, final)
                except OSError:
                    if not os.path.isdir(final):  # not another process's copy: a real error
                        raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        _extracted[pkg.hash] = final
        return final


_state_lock = threading.RLock()
_active = []        # [(token, TaskEnv, expanded env_vars, working dir, [path entries])]
_base_env = {}      # variable -> its value before any scope set it (None: unset)
_base_cwd = None    # the directory before a scope changed it
_inserted = []      # sys.path entries the scopes put in front
_stash = {}         # package directory -> {module name: module} while no scope uses it
_shadowed = {}      # module name -> a base module hidden by an active package's module
_active_dirs = frozenset()


def _expand(value, lookup):
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: lookup(m.group(1)) or "", value)


def _base_value(name):
    return _base_env[name] if name in _base_env else os.environ.get(name)


def _module_under(module, dirs):
    try:
        f = getattr(module, "__file__", None)
        if not f:
            paths = list(getattr(module, "__path__", None) or [])
            f = paths[0] if paths else None
    except Exception:
        return None
    if not f:
        return None
    for d in dirs:
        if f.startswith(d + os.sep):
            return d
    return None


def _apply():
    """Make the process's environment, directory, sys.path and modules what the active scopes
    (in order of entry, the last one winning) want."""
    global _base_cwd, _active_dirs
    # Environment variables.
    want = {}
    for _, _, env, _, _ in _active:
        want.update(env)
    for k in list(_base_env):
        if k not in want:
            old = _base_env.pop(k)
            if old is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = old
    for k, v in want.items():
        if k not in _base_env:
            _base_env[k] = os.environ.get(k)
        if os.environ.get(k) != v:
            os.environ[k] = v
    # Current directory.
    cwd = next((wd for _, _, _, wd, _ in reversed(_active) if wd is not None), None)
    if cwd is not None:
        if _base_cwd is None:
            try:
                _base_cwd = os.getcwd()
            except OSError:
                _base_cwd = "/"
        os.chdir(cwd)
    elif _base_cwd is not None:
        try:
            os.chdir(_base_cwd)
        except OSError:
            pass
        _base_cwd = None
    # sys.path: the newest scope's entries first.
    paths = []
    for _, _, _, _, entries in reversed(_active):
        for p in entries:
            if p not in paths:
                paths.append(p)
    if paths != _inserted:
        for p in _inserted:
            try:
                sys.path.remove(p)
            except ValueError:
                pass
        sys.path[0:0] = paths
        _inserted[:] = paths
    # Modules imported from packages no scope uses any more leave sys.modules (so plain tasks
    # cannot import them) and come back when a scope uses their package again; modules of the
    # base process that a package provides too step aside meanwhile (as if the package were
    # first on sys.path of a fresh process).
    dirs = frozenset(paths)
    if dirs != _active_dirs:
        gone = _active_dirs - dirs
        if gone:
            for name, mod in list(sys.modules.items()):
                d = _module_under(mod, gone)
                if d is not None:
                    _stash.setdefault(d, {})[name] = mod
                    del sys.modules[name]
        provided = set()
        for d in dirs:
            provided |= _top_names(d)
        if provided:
            for name, mod in list(sys.modules.items()):
                if name.partition(".")[0] in provided and _module_under(mod, dirs) is None:
                    _shadowed[name] = mod
                    del sys.modules[name]
        for d in dirs - _active_dirs:
            for name, mod in _stash.pop(d, {}).items():
                sys.modules.setdefault(name, mod)
        for name in list(_shadowed):
            if name.partition(".")[0] not in provided:
                mod = _shadowed.pop(name)
                sys.modules.setdefault(name, mod)
        _active_dirs = dirs


_top_cache = {}


def _top_names(d):
    """Top-level modules and regular packages a package directory provides."""
    names = _top_cache.get(d)
    if names is None:
        names = set()
        try:
            listing = os.listdir(d)
        except OSError:
            listing = []
        for n in listing:
            p = os.path.join(d, n)
            if n.endswith(".py") or n.endswith(".so") or n.endswith(".pyd"):
                names.add(n.partition(".")[0])
            elif os.path.isfile(os.path.join(p, "__init__.py")):
                names.add(n)
        _top_cache[d] = names
    return names


class Scope:
    """``with Scope(env):`` runs the body in ``env`` (see the module's docstring)."""

    __slots__ = ("env", "token", "saved")

    def __init__(self, env):
        self.env = env
        self.token = None
        self.saved = None

    def __enter__(self):
        global _job_seen
        env = self.env
        if env is None:
            self.saved = getattr(_tls, "env", None)
            _tls.env = None
            return self
        if env.job is not None:
            _job_seen = env.job
        wd = local_dir(env.working_dir) if env.working_dir is not None else None
        entries = ([wd] if wd is not None else []) + [local_dir(p) for p in env.py_modules]
        with _state_lock:
            expanded = {k: _expand(v, _base_value) for k, v in env.env_vars.items()}
            self.token = object()
            _active.append((self.token, env, expanded, wd, entries))
            try:
                _apply()
            except BaseException:
                self._remove()
                raise
        self.saved = getattr(_tls, "env", None)
        _tls.env = env
        return self

    def _remove(self):
        for i, item in enumerate(_active):
            if item[0] is self.token:
                del _active[i]
                break
        _apply()

    def __exit__(self, *exc):
        _tls.env = self.saved
        if self.token is not None:
            with _state_lock:
                self._remove()
        return False


class _ArgumentFinder:
    """The last finder on a worker's sys.meta_path: a task's arguments are unpickled before its
    environment is applied, so a module they need that is not found otherwise is looked for in
    the packages of that task (or of the actor whose call's arguments come next)."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        env = _pending.get(threading.get_ident())
        if path is not None or env is None:
            return None  # submodules are found through their package's __path__
        pkgs = ((env.working_dir,) if env.working_dir is not None else ()) + env.py_modules
        if not pkgs:
            return None
        import importlib.machinery
        return importlib.machinery.PathFinder.find_spec(name, [local_dir(p) for p in pkgs])

    @staticmethod
    def invalidate_caches():
        pass


def install_finder():
    """Called once in worker processes."""
    if _ArgumentFinder not in sys.meta_path:
        sys.meta_path.append(_ArgumentFinder)


def task_started():
    """The task's arguments are unpickled: later imports follow its environment only."""
    _pending.pop(threading.get_ident(), None)


def expect_arguments_of(env):
    """Arguments unpickled next on this thread (an actor's next call) may need ``env``'s
    packages."""
    _pending[threading.get_ident()] = env
