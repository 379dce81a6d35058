"""Shared fixtures and helpers for the mpiray Python API tests.

Run with:
    MPIRAY_BUILD_DIR=<build dir> PYTHONPATH=<repo>/python python3 -m pytest tests/python -q

Three ways of running mpiray are exercised:
  * embedded in the pytest process (``ray_cluster`` fixture: ``ray.init(num_cpus=2)``),
  * a plain ``python script.py`` subprocess (``run_script``: the driver starts local workers),
  * an ``mpirun -n N python script.py`` world (``run_mpi``).
Every cluster gets a private session root and shm dir and a unique environment tag; after it
ends the helpers assert that no process carrying the tag is left and both dirs are empty.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MPIRUN = REPO / "scripts" / "mpirun"
PYTHON_DIR = REPO / "python"
BUILD_DIR = Path(os.environ.get("MPIRAY_BUILD_DIR") or (REPO / "build")).resolve()
ITEST_LIB = BUILD_DIR / "tests" / "integration" / "libmpiray_itest_funcs.so"

DEFAULT_TIMEOUT = 120

# Script code (after `info = ray.init()`) that adds and removes nodes of a running job:
# join(name, resources) starts a worker process that joins under its own host key (a node of
# its own, with MPIRAY_NODE_RESOURCES=resources) and waits until the head lists it;
# kill(p, name) SIGKILLs it and waits until the node is gone.
JOIN_NODE = """
import os as _os, signal as _signal, subprocess as _subprocess, sys as _sys, time as _time

def join(name, resources="CPU=1"):
    env = dict(_os.environ, MPIRAY_JOIN=info["session_dir"], SLURMD_NODENAME=name,
               MPIRAY_NODE_RESOURCES=resources)
    p = _subprocess.Popen([_sys.executable, "-m", "mpiray._worker"], env=env,
                          stdin=_subprocess.DEVNULL)
    deadline = _time.time() + 60
    while not any(n["Alive"] and n["NodeManagerHostname"] == name for n in ray.nodes()):
        assert _time.time() < deadline, "the worker did not join"
        _time.sleep(0.05)
    return p

def kill(p, name):
    p.send_signal(_signal.SIGKILL)
    p.wait()
    deadline = _time.time() + 30
    while any(n["Alive"] and n["NodeManagerHostname"] == name for n in ray.nodes()):
        assert _time.time() < deadline, "the dead node is still listed"
        _time.sleep(0.05)
"""


def pytest_collection_modifyitems(items):
    """Every test gets a timeout (pytest-timeout), unless it sets its own."""
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT))


# ------------------------------------------------------------------ leftovers


def _is_zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return True  # gone
    # The state follows the command name, which is in parentheses and may contain spaces.
    return stat[stat.rindex(")") + 2] in "ZX"


def processes_with_tag(tag, exclude=()):
    """PIDs of live (non-zombie) processes whose environment carries MPIRAY_TEST_TAG=<tag>."""
    needle = f"MPIRAY_TEST_TAG={tag}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid in exclude or pid == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if needle in env.split(b"\0") and not _is_zombie(pid):
            found.append(pid)
    return found



def kill_processes_with_tag(tag):
    """SIGKILL every live process of a run (what a failed or timed-out test leaves)."""
    for pid in processes_with_tag(tag):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass

def live_children(pid):
    """Non-zombie direct children of ``pid``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rindex(")") + 2:].split()
        if int(rest[1]) == pid and rest[0] not in "ZX":
            out.append(int(entry))
    return out


def describe(pids):
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            out.append(f"{pid}: {cmdline}")
        except OSError:
            out.append(f"{pid}: <gone>")
    return "\n".join(out)


def files_under(*dirs):
    return sorted(str(p) for d in dirs for p in Path(d).rglob("*"))


def assert_nothing_left(tag, session_root, shm_dir, wait_s=5.0, extra_pids=lambda: []):
    """No process with the tag, no file under the private dirs (waits up to ``wait_s``)."""
    deadline = time.monotonic() + wait_s
    while True:
        procs = processes_with_tag(tag) + list(extra_pids())
        files = files_under(session_root, shm_dir)
        if not procs and not files:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for pid in procs:  # do not leak them into the next test
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    raise AssertionError(f"left behind:\nprocesses:\n{describe(procs)}\nfiles: {files}")


# ------------------------------------------------------------------ subprocess worlds


class World:
    """What a finished subprocess world produced."""

    def __init__(self, returncode, stdout, stderr, session_root, shm_dir, workdir, elapsed):
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.session_root = session_root
        self.shm_dir = shm_dir
        self.workdir = workdir
        self.elapsed = elapsed

    def __iter__(self):  # rc, out, err = run_mpi(...)
        return iter((self.returncode, self.stdout, self.stderr))

    def __repr__(self):
        return (f"World(rc={self.returncode}, elapsed={self.elapsed:.1f}s)\n--- stdout ---\n"
                f"{self.stdout[-4000:]}\n--- stderr ---\n{self.stderr[-4000:]}")


def base_env(tag, session_root, shm_dir, extra=None):
    env = dict(os.environ)
    env.pop("MPIRAY_RANKS_PER_NODE", None)
    env.pop("MPIRAY_KEEP_SESSION", None)
    env.pop("MPIRAY_SPILL_DIR", None)  # spill into the private session directory
    # Libraries that ran in this pytest process may have set it (mpiray.rllib sets its learner's
    # thread count): a script must see the environment a user's shell gives, where mpiray sets
    # it per task unless the user did (tests that want a user value pass it in ``extra``).
    env.pop("OMP_NUM_THREADS", None)
    env.update({
        "MPIRAY_BUILD_DIR": str(BUILD_DIR),
        "PYTHONPATH": os.pathsep.join([str(PYTHON_DIR)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                                          if p and p != str(PYTHON_DIR)]),
        "MPIRAY_SESSION_ROOT": str(session_root),
        "MPIRAY_SHM_DIR": str(shm_dir),
        "MPIRAY_TEST_TAG": tag,
        "PYTHONUNBUFFERED": "1",
        "PYTHONFAULTHANDLER": "0",
    })
    env.update(extra or {})
    return env


class _Launcher:
    """Writes a script to a temp dir and runs it (plain python or mpirun), then checks that
    nothing is left behind."""

    def __init__(self, tmp_path_factory):
        self._factory = tmp_path_factory

    def prepare(self, script):
        work = self._factory.mktemp("world")
        session_root, shm_dir = work / "session", work / "shm"
        session_root.mkdir()
        shm_dir.mkdir()
        path = work / "script.py"
        path.write_text(textwrap.dedent(script))
        return work, session_root, shm_dir, path

    def run(self, cmd_prefix, script, *, args=(), env=None, timeout=60, check_clean=True,
            clean_wait_s=5.0):
        work, session_root, shm_dir, path = self.prepare(script)
        tag = uuid.uuid4().hex
        full_env = base_env(tag, session_root, shm_dir, env)
        cmd = [*cmd_prefix, sys.executable, str(path), *map(str, args)]
        start = time.monotonic()
        try:
            proc = subprocess.run(cmd, cwd=work, env=full_env, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired as e:
            kill_processes_with_tag(tag)
            raise AssertionError(f"{cmd} did not finish in {timeout}s:\n{e.stdout}\n{e.stderr}")
        world = World(proc.returncode, proc.stdout, proc.stderr, session_root, shm_dir, work,
                      time.monotonic() - start)
        if check_clean:
            assert_nothing_left(tag, session_root, shm_dir, clean_wait_s)
        world.tag = tag
        return world


@pytest.fixture
def run_mpi(tmp_path_factory):
    """run_mpi(script, n, args=(), env=None, recovery=False, timeout=60) -> World
    (iterable as (returncode, stdout, stderr)); asserts afterwards that nothing is left."""
    launcher = _Launcher(tmp_path_factory)

    def run(script, n=3, *, args=(), env=None, recovery=False, timeout=60, check_clean=True):
        assert 3 <= n <= 5, "keep mpirun worlds small"
        prefix = [str(MPIRUN)] + (["--enable-recovery"] if recovery else []) + ["-n", str(n)]
        return launcher.run(prefix, script, args=args, env=env, timeout=timeout,
                            check_clean=check_clean)

    run.launcher = launcher
    return run


@pytest.fixture
def run_script(tmp_path_factory):
    """run_script(script, args=(), env=None, timeout=60) -> World: plain ``python script.py``
    (embedded mode: the driver starts local workers); asserts afterwards that nothing is left."""
    launcher = _Launcher(tmp_path_factory)

    def run(script, *, args=(), env=None, timeout=60, check_clean=True):
        return launcher.run([], script, args=args, env=env, timeout=timeout,
                            check_clean=check_clean)

    run.launcher = launcher
    return run


def default_sigint():
    """Popen preexec_fn for drivers a test interrupts: SIGINT back to its default disposition.
    A shell that starts a job in the background without job control (`make test &` in a
    script, some CI runners) makes it ignore SIGINT, every child inherits that, and a Python
    started with SIGINT ignored never raises KeyboardInterrupt."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def spawn_script(tmp_path_factory):
    """spawn_script(script, env=None) -> (Popen, tag, session_root, shm_dir): a driver
    started in the background (for signals)."""
    launcher = _Launcher(tmp_path_factory)
    started = []

    def spawn(script, *, env=None):
        work, session_root, shm_dir, path = launcher.prepare(script)
        tag = uuid.uuid4().hex
        proc = subprocess.Popen([sys.executable, str(path)], cwd=work,
                                env=base_env(tag, session_root, shm_dir, env),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=default_sigint)
        started.append((proc, tag))
        return proc, tag, session_root, shm_dir

    yield spawn
    for proc, tag in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        kill_processes_with_tag(tag)


# ------------------------------------------------------------------ embedded clusters


class PrivateDirs:
    """A private session root, shm dir and environment tag for a cluster started in this
    process (workers inherit the tag; the forked reaper is found as our child)."""

    def __init__(self, base):
        self.base = Path(base)
        self.session_root = self.base / "session"
        self.shm_dir = self.base / "shm"
        self.session_root.mkdir(parents=True, exist_ok=True)
        self.shm_dir.mkdir(parents=True, exist_ok=True)
        self.tag = uuid.uuid4().hex
        self._saved = {}

    def __enter__(self):
        for k, v in (("MPIRAY_SESSION_ROOT", str(self.session_root)),
                     ("MPIRAY_SHM_DIR", str(self.shm_dir)), ("MPIRAY_TEST_TAG", self.tag)):
            self._saved[k] = os.environ.get(k)
            os.environ[k] = v
        for k in ("MPIRAY_RANKS_PER_NODE", "MPIRAY_KEEP_SESSION", "MPIRAY_NUM_WORKERS",
                  "MPIRAY_SPILL_DIR"):
            self._saved.setdefault(k, os.environ.get(k))
            os.environ.pop(k, None)
        return self

    def __exit__(self, *exc):
        for k, v in self._saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    def assert_clean(self, wait_s=5.0):
        assert_nothing_left(self.tag, self.session_root, self.shm_dir, wait_s,
                            extra_pids=lambda: live_children(os.getpid()))


@pytest.fixture
def private_dirs(tmp_path):
    """For tests that call ray.init()/shutdown() themselves: private dirs and tag, set in
    os.environ; afterwards the cluster must be down and nothing left."""
    import mpiray as ray
    with PrivateDirs(tmp_path / "cluster") as dirs:
        try:
            yield dirs
        finally:
            if ray.is_initialized():
                ray.shutdown()
        dirs.assert_clean()


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """One embedded cluster (``ray.init(num_cpus=2)``) shared by the tests of a module; after
    shutdown the session root and shm dir must be empty and no worker left."""
    import mpiray as ray
    assert not ray.is_initialized(), "a previous test left a cluster running"
    with PrivateDirs(tmp_path_factory.mktemp("cluster")) as dirs:
        ctx = ray.init(num_cpus=2)
        assert ray.is_initialized()
        session_dir = ctx.get()["session_dir"]
        assert session_dir.startswith(str(dirs.session_root)), session_dir
        assert processes_with_tag(dirs.tag), "the local workers should carry the tag"
        try:
            yield dirs
        finally:
            ray.shutdown()
        assert not ray.is_initialized()
        dirs.assert_clean()


def wait_for(predicate, timeout=10.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@pytest.fixture(autouse=True)
def _quiet_data_context(request):
    """The mpiray.data tests (tests/python/data): progress bars off unless a test turns them
    on, and each test's DataContext changes undone. (Here rather than in a conftest.py of that
    folder: a second module named ``conftest`` would shadow this one's helpers, which the
    tests import with ``from conftest import ...``.)"""
    if request.path.parent.name != "data":
        yield None
        return
    import mpiray.data as rd
    ctx = rd.DataContext.get_current()
    saved = ctx.copy()
    ctx.enable_progress_bars = False
    yield ctx
    rd.DataContext._set_current(saved)


@pytest.fixture(scope="module")
def train_cluster(tmp_path_factory):
    """The mpiray.train tests: an embedded cluster of 3 local workers shared by a module
    (training workers are actors; each needs a worker process of its own)."""
    import mpiray as ray
    assert not ray.is_initialized(), "a previous test left a cluster running"
    with PrivateDirs(tmp_path_factory.mktemp("cluster")) as dirs:
        ray.init(num_cpus=3)
        try:
            yield dirs
        finally:
            ray.shutdown()
        dirs.assert_clean()



@pytest.fixture
def fresh_serve():
    """Each mpiray.serve test leaves no app behind for the next one (the cluster stays)."""
    yield
    from mpiray import serve
    serve.shutdown()

@pytest.fixture(scope="module")
def serve_cluster(tmp_path_factory):
    """The mpiray.serve tests: an embedded cluster of 4 local workers shared by a module;
    afterwards Serve is shut down (controller and replicas gone) and nothing is left."""
    import mpiray as ray
    from mpiray import serve
    assert not ray.is_initialized(), "a previous test left a cluster running"
    with PrivateDirs(tmp_path_factory.mktemp("cluster")) as dirs:
        ray.init(num_cpus=4)
        try:
            yield dirs
        finally:
            try:
                serve.shutdown()
            finally:
                ray.shutdown()
        dirs.assert_clean()
