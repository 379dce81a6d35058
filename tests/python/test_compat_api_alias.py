"""The opt-in `import ray` alias: unmodified Ray programs (scripts that say `import ray`) run
on mpiray through `python -m mpiray script.py`, `mpiray run script.py` (the console script's
launcher) and MPIRAY_AS_RAY=1 (the .pth hook of an installed package), standalone and under
mpirun; every ray.X module is mpiray.X itself; the installed Ray is untouched."""

import os
import subprocess
import sys
import textwrap
import uuid

import pytest

from conftest import MPIRUN, PYTHON_DIR, assert_nothing_left, base_env

pytestmark = pytest.mark.timeout(180)

# An ordinary Ray program: tasks, actors, ray.util, exceptions, all through `import ray`.
RAY_PROGRAM = """
import sys
import ray
import ray.util
import ray.exceptions
import ray.runtime_context
import ray.util.placement_group
import ray.util.multiprocessing
from ray.util.queue import Queue
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
import mpiray

assert ray is mpiray, ray
assert ray.util.queue.Queue is mpiray.util.queue.Queue
assert ray.exceptions.RayTaskError is mpiray.exceptions.RayTaskError


@ray.remote
def square(x):
    import ray as inner          # the alias also holds in the worker processes
    return x * x, inner.__name__


@ray.remote
class Counter:
    def __init__(self):
        self.n = 0

    def add(self, k):
        self.n += k
        return self.n


@ray.remote
def fails():
    raise KeyError("boom")


if __name__ == "__main__":
    ray.init(num_cpus=2)
    print("squares", ray.get([square.remote(i) for i in range(4)]))
    c = Counter.remote()
    print("counter", ray.get([c.add.remote(1) for _ in range(3)]))
    q = Queue()
    q.put(7)
    print("queue", q.get())
    try:
        ray.get(fails.remote())
    except KeyError:
        print("caught KeyError")
    except ray.exceptions.RayTaskError:
        print("caught only RayTaskError")
    ray.shutdown()
"""


def _run(cmd, tmp_path, script, env_extra=None, timeout=120):
    work = tmp_path / "world"
    session_root, shm_dir = work / "session", work / "shm"
    session_root.mkdir(parents=True)
    shm_dir.mkdir()
    path = work / "prog.py"
    path.write_text(textwrap.dedent(script))
    tag = uuid.uuid4().hex
    env = base_env(tag, session_root, shm_dir, env_extra)
    proc = subprocess.run([*cmd, str(path)], cwd=work, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert_nothing_left(tag, session_root, shm_dir)
    return proc


def _check_program_output(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "squares [(0, 'mpiray'), (1, 'mpiray'), (4, 'mpiray'), (9, 'mpiray')]" in out, out
    assert "counter [1, 2, 3]" in out, out
    assert "queue 7" in out, out
    assert "caught KeyError" in out, out


def test_python_dash_m_mpiray_runs_a_ray_program(tmp_path):
    _check_program_output(_run([sys.executable, "-m", "mpiray"], tmp_path, RAY_PROGRAM))


def test_mpiray_run_runs_a_ray_program(tmp_path):
    # The console script `mpiray` is mpiray._cli:main; `run` goes to python -m mpiray.
    cli = [sys.executable, "-c", "import sys; from mpiray._cli import main; sys.exit(main())", "run"]
    _check_program_output(_run(cli, tmp_path, RAY_PROGRAM))


def test_alias_under_mpirun(tmp_path):
    proc = _run([str(MPIRUN), "-n", "3", sys.executable, "-m", "mpiray"], tmp_path, RAY_PROGRAM)
    _check_program_output(proc)


def test_environment_variable_through_the_pth_hook(tmp_path):
    # An installed mpiray puts mpiray-as-ray.pth into site-packages; site.addsitedir runs it as
    # interpreter start-up would. With MPIRAY_AS_RAY unset the hook does nothing.
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    (site_dir / "mpiray-as-ray.pth").write_text((PYTHON_DIR / "mpiray-as-ray.pth").read_text())
    probe = (f"import site, sys; site.addsitedir({str(site_dir)!r}); import ray; "
             "print(ray.__name__, ray.__file__)")
    env = dict(os.environ, PYTHONPATH=str(PYTHON_DIR))
    on = subprocess.run([sys.executable, "-c", probe], env=dict(env, MPIRAY_AS_RAY="1"),
                        capture_output=True, text=True, timeout=60)
    assert on.returncode == 0, on.stderr
    assert on.stdout.startswith("mpiray "), on.stdout
    off = subprocess.run([sys.executable, "-c", probe], env=dict(env, MPIRAY_AS_RAY="0"),
                         capture_output=True, text=True, timeout=60)
    if off.returncode == 0:  # Ray itself is installed here: it is found, untouched
        assert off.stdout.startswith("ray "), off.stdout
        assert "mpiray" not in off.stdout.split()[1]


def test_submodules_and_missing_modules(tmp_path):
    code = """
import importlib, mpiray
for name in ["util", "util.queue", "util.multiprocessing", "util.placement_group",
             "util.scheduling_strategies", "util.collective", "util.state", "util.joblib",
             "exceptions", "runtime_context", "actor", "cloudpickle", "tune", "train",
             "data", "rllib"]:
    try:
        mod = importlib.import_module("ray." + name)
    except ImportError as e:   # a library whose own dependencies are missing here
        if "mpiray." + name not in str(e) and "ray." + name not in str(e):
            print("skip", name, e)
            continue
        raise
    assert mod is importlib.import_module("mpiray." + name), name
try:
    import ray.no_such_module
except ModuleNotFoundError as e:
    assert e.name == "ray.no_such_module" and "mpiray.no_such_module" in str(e), e
    print("missing ok")
from ray import cloudpickle
assert cloudpickle.loads(cloudpickle.dumps(lambda x: x + 1))(1) == 2
print("done")
"""
    work = tmp_path
    (work / "probe.py").write_text(textwrap.dedent(code))
    env = dict(os.environ, PYTHONPATH=str(PYTHON_DIR))
    proc = subprocess.run([sys.executable, "-m", "mpiray", str(work / "probe.py")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "missing ok" in proc.stdout and "done" in proc.stdout


def test_alias_refuses_when_ray_is_already_imported():
    from mpiray import _ray_alias
    code = ("import sys, types; sys.modules['ray'] = types.ModuleType('ray'); "
            "from mpiray import _ray_alias; _ray_alias.install()")
    env = dict(os.environ, PYTHONPATH=str(PYTHON_DIR))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0 and "already imported" in proc.stderr, proc.stderr
    assert _ray_alias.requested({"MPIRAY_AS_RAY": "1"}) and not _ray_alias.requested({"MPIRAY_AS_RAY": "0"})


def test_usage_errors():
    env = dict(os.environ, PYTHONPATH=str(PYTHON_DIR))
    none = subprocess.run([sys.executable, "-m", "mpiray"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert none.returncode == 2 and "usage" in none.stderr
    missing = subprocess.run([sys.executable, "-m", "mpiray", "/nonexistent/x.py"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no such file" in missing.stderr
