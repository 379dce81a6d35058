"""runtime_env: env_vars, working_dir, py_modules and excludes per job (``init``), per task
(``@remote``, ``.options``) and per actor; inheritance and merging; packages shipped through
the object store and extracted under the session directory; bad input; nothing left after
shutdown.

Job-level environments run in their own worlds (``run_script``, ``run_mpi``); task and actor
environments share one embedded cluster (``ray_cluster``, two local workers)."""

import json
import os
import shutil
import sys
import textwrap
import time

import pytest

import mpiray as ray
from mpiray import _runtime_env as renv
from mpiray.runtime_env import RuntimeEnv
from conftest import wait_for

pytestmark = pytest.mark.timeout(120)


def result(world):
    lines = [l for l in world.stdout.splitlines() if l.startswith("RESULT ")]
    assert world.returncode == 0 and len(lines) == 1, world
    return json.loads(lines[0][len("RESULT "):])


def write_tree(root, files):
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(textwrap.dedent(text))
    return str(root)


# ------------------------------------------------------------------ job level (own worlds)

JOB_SCRIPT = """
import json, os, shutil, sys
import mpiray as ray

src = os.path.abspath("src")
os.makedirs(src + "/sub")
open(src + "/jobmod_a1.py", "w").write("WHO = 'job working_dir'\\n")
open(src + "/sub/data.txt", "w").write("job data")
pkg = os.path.abspath("lib/jobpkg_a1")
os.makedirs(pkg)
open(pkg + "/__init__.py", "w").write("def hello():\\n    return 'jobpkg'\\n"
                                     "class Thing:\\n    def __init__(self, v):\\n        self.v = v\\n")
other = os.path.abspath("other")
os.makedirs(other)
open(other + "/othermod_a1.py", "w").write("WHO = 'task working_dir'\\n")

os.mkdir("elsewhere")
os.chdir("elsewhere")  # relative paths in runtime_env are resolved where they are given
ray.init(num_cpus=2, runtime_env={"working_dir": "../src", "py_modules": ["../lib/jobpkg_a1"],
                                  "env_vars": {"JOB_A": "job", "BOTH": "job"}})
sys.path.insert(0, os.path.dirname(pkg))  # the driver imports the package too (the workers
import jobpkg_a1                          # got their sys.path at init, without it)
thing = jobpkg_a1.Thing("an argument")
shutil.rmtree(src)   # shipped at init: the workers do not need the original
shutil.rmtree(pkg)
session = ray.get_runtime_context().get()["session_dir"]

def env():
    return {k: os.environ.get(k) for k in ("JOB_A", "BOTH", "TASK_B", "CHILD_C")}

@ray.remote
def job_task():
    import jobmod_a1, jobpkg_a1
    return dict(env=env(), who=jobmod_a1.WHO, pkg=jobpkg_a1.hello(),
                data=open("sub/data.txt").read(), cwd=os.getcwd(), path0=sys.path[0],
                ctx=ray.get_runtime_context().runtime_env)

@ray.remote
def use_thing(t):  # its argument's class comes from the job's py_modules
    return t.v

@ray.remote
def child():
    try:
        import jobmod_a1
        who = jobmod_a1.WHO
    except ImportError:
        who = None
    try:
        import othermod_a1
        other = othermod_a1.WHO
    except ImportError:
        other = None
    return dict(env=env(), who=who, other=other)

@ray.remote(runtime_env={"env_vars": {"TASK_B": "task", "BOTH": "task"}, "working_dir": other})
def task_level():
    import othermod_a1
    mine = dict(env=env(), other=othermod_a1.WHO)
    # Children inherit the task's environment; their own runtime_env merges over it.
    inherited = ray.get(child.remote())
    merged = ray.get(child.options(runtime_env={"env_vars": {"CHILD_C": "c"}}).remote())
    return mine, inherited, merged

res = dict(job=ray.get(job_task.remote()), thing=ray.get(use_thing.remote(thing)), task=ray.get(task_level.remote()),
           plain_child=ray.get(child.remote()), driver_env=os.environ.get("JOB_A"),
           driver_ctx=ray.get_runtime_context().runtime_env, session=session)
res["during"] = sorted(os.listdir(os.path.join(session, "runtime_resources")))
ray.shutdown()
res["after"] = os.path.exists(session)
print("RESULT " + json.dumps(res))
"""


def test_job_runtime_env_merged_inherited_and_cleaned_up(run_script):
    world = run_script(JOB_SCRIPT, env={"MPIRAY_RANKS_PER_NODE": "1"})  # workers: two nodes
    r = result(world)
    session = r["session"]
    job = r["job"]
    assert job["env"] == {"JOB_A": "job", "BOTH": "job", "TASK_B": None, "CHILD_C": None}
    assert job["who"] == "job working_dir" and job["pkg"] == "jobpkg"
    assert job["data"] == "job data"
    assert r["thing"] == "an argument"
    assert job["cwd"].startswith(os.path.join(session, "runtime_resources") + "/")
    assert job["path0"] == job["cwd"]
    assert job["ctx"]["env_vars"] == {"JOB_A": "job", "BOTH": "job"}
    assert job["ctx"]["working_dir"].startswith("mpiray://")
    assert len(job["ctx"]["py_modules"]) == 1
    mine, inherited, merged = r["task"]
    # env_vars merged key by key over the job's; working_dir replaced, py_modules kept.
    assert mine["env"] == {"JOB_A": "job", "BOTH": "task", "TASK_B": "task", "CHILD_C": None}
    assert mine["other"] == "task working_dir"
    assert inherited == {"env": mine["env"], "who": None, "other": "task working_dir"}
    assert merged["env"] == {**mine["env"], "CHILD_C": "c"}
    assert merged["other"] == "task working_dir"
    # A child of the driver gets the job's environment only.
    assert r["plain_child"] == {"env": job["env"], "who": "job working_dir", "other": None}
    assert r["driver_env"] is None  # the driver's own environment is left alone
    assert r["driver_ctx"]["env_vars"] == {"JOB_A": "job", "BOTH": "job"}
    assert len(r["during"]) == 3  # job working_dir, job py_module, task working_dir
    assert r["after"] is False
    # run_script checked that the session root and shm dir are empty and no process is left.
    assert os.listdir(world.session_root) == []


MPI_SCRIPT = """
import json, os, socket
import mpiray as ray
rank = int(os.environ["OMPI_COMM_WORLD_RANK"])
src = os.path.abspath("src")
if rank == 0:
    os.makedirs(src)
    open(src + "/data.txt", "w").write("from rank 0")
else:
    src = "/nonexistent/only/on/the/driver"  # worker ranks need not see the driver's files
ray.init(runtime_env={"working_dir": src, "env_vars": {"MPI_ENV": "set"}})

@ray.remote(num_cpus=1)
class Reader:
    def read(self):
        c = ray.get_runtime_context()
        return c.rank, c.get_node_id(), open("data.txt").read(), os.environ.get("MPI_ENV")

readers = [Reader.remote() for _ in range(2)]  # one per worker rank
out = ray.get([r.read.remote() for r in readers])
print("RESULT " + json.dumps(out))
"""


def test_job_runtime_env_under_mpirun_across_nodes(run_mpi):
    world = run_mpi(MPI_SCRIPT, 3, env={"MPIRAY_RANKS_PER_NODE": "2"})
    out = result(world)
    assert sorted(o[0] for o in out) == [1, 2]
    assert len({o[1] for o in out}) == 2  # two nodes: the zip crossed the fabric
    assert all(o[2:] == ["from rank 0", "set"] for o in out)


BAD_INIT = """
import mpiray as ray
for env, exc in [({"working_dir": "/nonexistent/dir"}, ValueError), ({"pip": ["x"]}, ValueError),
                 ({"bogus": 1}, ValueError), ("env", TypeError),
                 ({"env_vars": {"A": 1}}, TypeError)]:
    try:
        ray.init(num_cpus=1, runtime_env=env)
    except exc as e:
        print("RAISED", type(e).__name__, e)
    assert not ray.is_initialized()
ray.init(num_cpus=1, runtime_env={"env_vars": {"OK": "1"}})
print("RESULT", ray.get(ray.remote(lambda: __import__("os").environ["OK"]).remote()))
"""


def test_init_rejects_bad_runtime_env_before_starting(run_script):
    world = run_script(BAD_INIT)
    assert world.returncode == 0, world
    raised = [l for l in world.stdout.splitlines() if l.startswith("RAISED")]
    assert len(raised) == 5, world
    assert "/nonexistent/dir" in raised[0] and "'pip' is not supported" in raised[1]
    assert "'bogus'" in raised[2] and "must be a dict" in raised[3] and "env_vars" in raised[4]
    assert "RESULT 1" in world.stdout


# ------------------------------------------------------------------ bad input (no cluster)

def test_bad_runtime_env_raises_at_the_call_site(tmp_path):
    def f():
        pass

    with pytest.raises(TypeError, match="runtime_env must be a dict"):
        ray.remote(runtime_env=["env_vars"])(f)
    with pytest.raises(ValueError, match="Unknown runtime_env field 'workdir'"):
        ray.remote(runtime_env={"workdir": "."})(f)
    with pytest.raises(ValueError, match="'conda' is not supported"):
        ray.remote(runtime_env={"conda": "env"})(f)
    with pytest.raises(ValueError, match="does not exist"):
        ray.remote(f).options(runtime_env={"working_dir": str(tmp_path / "missing")})
    with pytest.raises(ValueError, match="working_dir.*must be a directory or a .zip"):
        (tmp_path / "file.txt").write_text("x")
        ray.remote(f).options(runtime_env={"working_dir": str(tmp_path / "file.txt")})
    with pytest.raises(ValueError, match="py_modules.*does not exist"):
        ray.remote(runtime_env={"py_modules": [str(tmp_path / "nomod")]})(f)
    with pytest.raises(TypeError, match="py_modules'\\] must be a list"):
        ray.remote(runtime_env={"py_modules": str(tmp_path)})(f)
    with pytest.raises(TypeError, match="env_vars'\\] must be a dict of str to str"):
        ray.remote(runtime_env={"env_vars": {"A": 1}})(f)
    with pytest.raises(TypeError, match="env_vars'\\] must be a dict"):
        ray.remote(runtime_env={"env_vars": ["A=1"]})(f)
    with pytest.raises(ValueError, match="invalid variable name"):
        ray.remote(runtime_env={"env_vars": {"A=B": "1"}})(f)
    with pytest.raises(TypeError, match="excludes'\\] must be a list of strings"):
        ray.remote(runtime_env={"excludes": "*.log"})(f)
    with pytest.raises(ValueError, match="remote URIs are not supported"):
        ray.remote(runtime_env={"working_dir": "s3://bucket/code.zip"})(f)
    with pytest.raises(ValueError, match="Unknown runtime_env\\['config'\\] field"):
        ray.remote(runtime_env={"config": {"timeout": 1}})(f)

    class A:
        pass

    with pytest.raises(ValueError, match="does not exist"):
        ray.remote(runtime_env={"working_dir": str(tmp_path / "missing")})(A)
    with pytest.raises(TypeError, match="must be a dict"):
        ray.remote(A).options(runtime_env="x")
    with pytest.raises(ValueError, match="'pip' is not supported"):
        RuntimeEnv(pip=["requests"])
    # Accepted: RuntimeEnv, None fields, Ray's config.
    ok = RuntimeEnv(env_vars={"A": "1"}, working_dir=None, config={"setup_timeout_seconds": 5})
    assert dict(ok) == {"env_vars": {"A": "1"}, "config": {"setup_timeout_seconds": 5}}
    ray.remote(runtime_env=ok)(f)


@pytest.mark.parametrize("patterns, path, is_dir, excluded", [
    (["*.log"], "a.log", False, True),
    (["*.log"], "d/e/b.log", False, True),
    (["*.log"], "a.txt", False, False),
    (["/build/"], "build", True, True),
    (["/build/"], "sub/build", True, False),
    (["/build/"], "build", False, False),
    (["build/"], "sub/build", True, True),
    (["docs/*.md"], "docs/a.md", False, True),
    (["docs/*.md"], "x/docs/a.md", False, False),
    (["docs/*.md"], "docs/sub/a.md", False, False),
    (["**/cache"], "a/b/cache", True, True),
    (["**/cache"], "cache", False, True),
    (["a/**/z"], "a/z", False, True),
    (["a/**/z"], "a/b/c/z", False, True),
    (["out/**"], "out/x/y", False, True),
    (["out/**"], "out", True, False),
    (["*.txt", "!keep.txt"], "x.txt", False, True),
    (["*.txt", "!keep.txt"], "d/keep.txt", False, False),
    (["[ab].py"], "a.py", False, True),
    (["[!ab].py"], "a.py", False, False),
    (["?.py"], "c.py", False, True),
    (["# comment", "", "\\#hash"], "#hash", False, True),
    (["# comment"], "# comment", False, False),
    (["my file.txt"], "my file.txt", False, True),
])
def test_excludes_follow_gitignore_syntax(patterns, path, is_dir, excluded):
    assert renv._Ignore(patterns).excluded(path, is_dir) is excluded


# ------------------------------------------------------------------ tasks and actors

ENV_KEYS = ("RENV_T1", "RENV_T2", "RENV_ACTOR")


@ray.remote
def read_env(keys=ENV_KEYS):
    return os.getpid(), {k: os.environ.get(k) for k in keys}, os.environ.get("PATH")


@ray.remote
def where():
    return os.getpid(), os.getcwd(), list(sys.path)


def plain_runs_on(pid, task=read_env, tries=200):
    """Results of plain tasks, until one ran in process ``pid``."""
    out = []
    for _ in range(tries):
        batch = ray.get([task.remote() for _ in range(4)])
        out += batch
        if any(r[0] == pid for r in batch):
            return out
    raise AssertionError(f"no plain task ran in process {pid}")


@pytest.mark.usefixtures("ray_cluster")
def test_env_vars_seen_by_the_task_only():
    base_pid, base_env, base_path = ray.get(read_env.remote())
    assert base_env == dict.fromkeys(ENV_KEYS)
    env = {"RENV_T1": "one", "PATH": "/renv/bin:${PATH}"}
    pid, seen, path = ray.get(read_env.options(runtime_env={"env_vars": env}).remote())
    assert seen == {"RENV_T1": "one", "RENV_T2": None, "RENV_ACTOR": None}
    assert path == "/renv/bin:" + base_path  # ${VAR}: the worker's own value
    # Plain tasks afterwards, in the same process too, see the worker's own environment.
    for p, e, path_after in plain_runs_on(pid):
        assert e == dict.fromkeys(ENV_KEYS), (p, e)
        assert path_after == base_path
    # The decorator form, and .options() replacing it.
    f = ray.remote(runtime_env={"env_vars": {"RENV_T1": "deco", "RENV_T2": "deco"}})(
        lambda: {k: os.environ.get(k) for k in ENV_KEYS})
    assert ray.get(f.remote()) == {"RENV_T1": "deco", "RENV_T2": "deco", "RENV_ACTOR": None}
    assert ray.get(f.options(runtime_env={"env_vars": {"RENV_T2": "opt"}}).remote()) == \
        {"RENV_T1": None, "RENV_T2": "opt", "RENV_ACTOR": None}


@pytest.mark.usefixtures("ray_cluster")
def test_actor_env_applies_to_constructor_and_every_method(tmp_path):
    src = write_tree(tmp_path / "actor_src", {
        "actormod_b2.py": "NAME = 'actor module'\n",
        "state.txt": "actor data",
    })

    @ray.remote(runtime_env={"env_vars": {"RENV_ACTOR": "yes"}, "working_dir": src})
    class Holder:
        def __init__(self):
            import actormod_b2
            self.seen = os.environ.get("RENV_ACTOR"), open("state.txt").read(), actormod_b2.NAME

        def constructor_saw(self):
            return self.seen

        def env(self):
            return os.getpid(), os.environ.get("RENV_ACTOR"), os.getcwd()

        def read(self, name):
            with open(name) as f:
                return f.read()

    @ray.remote
    class Plain:
        def env(self):
            return os.getpid(), os.environ.get("RENV_ACTOR"), os.getcwd()

    h = Holder.remote()
    assert ray.get(h.constructor_saw.remote()) == ("yes", "actor data", "actor module")
    pid, val, cwd = ray.get(h.env.remote())
    assert val == "yes" and "/runtime_resources/" in cwd
    assert ray.get(h.read.remote("state.txt")) == "actor data"
    # Between the actor's calls its environment is gone: plain work in the same process
    # (another actor, plain tasks) does not see it.
    p = Plain.remote()
    _, pval, pcwd = ray.get(p.env.remote())
    assert pval is None and "runtime_resources" not in pcwd
    for _, e, _ in plain_runs_on(pid):
        assert e["RENV_ACTOR"] is None
    assert ray.get([h.env.remote() for _ in range(3)]) == [(pid, "yes", cwd)] * 3
    # .options(runtime_env=...) on the class.
    h2 = Holder.options(runtime_env={"env_vars": {"RENV_ACTOR": "opt"}, "working_dir": src}).remote()
    assert ray.get(h2.constructor_saw.remote())[0] == "opt"
    assert ray.get(h.env.remote())[1] == "yes"
    ray.kill(h)
    ray.kill(h2)
    ray.kill(p)


@pytest.mark.usefixtures("ray_cluster")
def test_working_dir_shipped_with_the_task(tmp_path, monkeypatch):
    src = write_tree(tmp_path / "project", {
        "wdmod_c3.py": """
            import os
            def load():
                with open(os.path.join("data", "input.txt")) as f:
                    return f.read()
        """,
        "data/input.txt": "relative data",
        "bin/tool.sh": "#!/bin/sh\necho tool\n",
    })
    os.chmod(os.path.join(src, "bin/tool.sh"), 0o755)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    @ray.remote
    def use_working_dir():
        import wdmod_c3
        return (wdmod_c3.load(), os.getcwd(), sys.path[0], wdmod_c3.__file__,
                os.access("bin/tool.sh", os.X_OK))

    run = use_working_dir.options(runtime_env={"working_dir": os.path.relpath(src)})
    first = run.remote()
    shutil.rmtree(src)  # shipped when submitted: nothing is read from here any more
    again = run.remote()
    for data, cwd, path0, modfile, executable in ray.get([first, again]):
        assert data == "relative data"
        assert "/runtime_resources/" in cwd and path0 == cwd
        assert modfile == os.path.join(cwd, "wdmod_c3.py")
        assert executable

    # Values and exceptions of classes defined in a package reach the driver, which does not
    # have the module; a package with a module of the same name gets its own.
    @ray.remote
    def make_result():
        import wdmod_c3
        return wdmod_c3.Result("made")

    @ray.remote
    def fail():
        import wdmod_c3
        raise wdmod_c3.WdError("from the package")

    assert "wdmod_c3" not in sys.modules
    copy = write_tree(tmp_path / "project2", {"wdmod_c3.py": """
        class Result:
            def __init__(self, value):
                self.value = value

        class WdError(Exception):
            pass
    """})
    assert ray.get(make_result.options(runtime_env={"working_dir": copy}).remote()).value == "made"
    with pytest.raises(Exception, match="from the package") as err:
        ray.get(fail.options(runtime_env={"working_dir": copy}).remote())
    assert "WdError" in [c.__name__ for c in type(err.value).__mro__]

    # Afterwards plain tasks (on both workers) are back in their own directory, without the
    # package on sys.path or among their modules.
    @ray.remote
    def try_import():
        try:
            import wdmod_c3  # noqa: F401
            return "imported"
        except ImportError:
            return "missing"

    assert set(ray.get([try_import.remote() for _ in range(8)])) == {"missing"}
    for _pid, cwd, path in ray.get([where.remote() for _ in range(8)]):
        assert "runtime_resources" not in cwd
        assert not any("runtime_resources" in p for p in path)


@pytest.mark.usefixtures("ray_cluster")
def test_excludes_and_gitignore_are_honoured(tmp_path):
    src = write_tree(tmp_path / "tree", {
        "keep.py": "",
        "run.log": "",
        "build/out.o": "",
        "sub/build/kept.txt": "",
        "sub/trace.log": "",
        "data/big.bin": "",
        "data/small.txt": "",
        ".gitignore": "secret.txt\n",
        "secret.txt": "",
        "nested/.gitignore": "*.tmp\n!keep.tmp\n",
        "nested/a.tmp": "",
        "nested/keep.tmp": "",
    })

    @ray.remote
    def listing():
        out = []
        for root, dirs, files in os.walk("."):
            out += [os.path.relpath(os.path.join(root, f)) for f in files]
        return sorted(out)

    got = ray.get(listing.options(runtime_env={
        "working_dir": src, "excludes": ["*.log", "/build/", "data/big.bin"]}).remote())
    assert got == sorted([".gitignore", "keep.py", "sub/build/kept.txt", "data/small.txt",
                          "nested/.gitignore", "nested/keep.tmp"])


@pytest.mark.usefixtures("ray_cluster")
def test_py_modules_importable(tmp_path, monkeypatch):
    lib = tmp_path / "lib"
    write_tree(lib, {
        "pm_pkg_d4/__init__.py": "from .core import answer\n",
        "pm_pkg_d4/core.py": "def answer():\n    return 42\n",
        "pm_pkg_d4/skip_me.txt": "",
        "pm_obj_d4/__init__.py": """
            NAME = 'from a module object'

            class Point:
                def __init__(self, x, y):
                    self.x, self.y = x, y
        """,
        "pm_single_d4.py": "VALUE = 'single file'\n",
    })
    monkeypatch.syspath_prepend(str(lib))
    import pm_obj_d4  # the driver has it; the workers get it through py_modules

    @ray.remote
    def use_modules():
        import pm_obj_d4
        import pm_pkg_d4
        import pm_single_d4
        here = os.path.dirname(os.path.dirname(pm_pkg_d4.__file__))
        return (pm_pkg_d4.answer(), pm_obj_d4.NAME, pm_single_d4.VALUE,
                os.path.exists(os.path.join(here, "pm_pkg_d4", "skip_me.txt")),
                [m.__file__ for m in (pm_pkg_d4, pm_obj_d4, pm_single_d4)])

    env = {"py_modules": [str(lib / "pm_pkg_d4"), pm_obj_d4, str(lib / "pm_single_d4.py")],
           "excludes": ["*.txt"]}
    answer, name, value, skipped_shipped, files = ray.get(
        use_modules.options(runtime_env=env).remote())
    assert (answer, name, value, skipped_shipped) == (42, "from a module object", "single file", False)
    assert all("/runtime_resources/" in f for f in files), files

    # Arguments whose classes live in a shipped module are unpickled before the task starts:
    # the module is found in the task's packages.
    @ray.remote
    def total(p):
        return p.x + p.y

    point = pm_obj_d4.Point(1, 2)
    assert ray.get(total.options(runtime_env={"py_modules": [pm_obj_d4]}).remote(point)) == 3

    @ray.remote(runtime_env={"py_modules": [str(lib / "pm_pkg_d4"), pm_obj_d4]})
    class UsesPkg:
        def __init__(self, p):
            self.p = p

        def answer(self):
            import pm_pkg_d4
            return pm_pkg_d4.answer()

        def total(self, p):
            return self.p.x + p.x + p.y

    a = UsesPkg.remote(pm_obj_d4.Point(10, 0))
    assert ray.get([a.answer.remote() for _ in range(3)]) == [42] * 3
    assert ray.get([a.total.remote(point) for _ in range(3)]) == [13] * 3

    @ray.remote
    def plain_import():
        try:
            import pm_pkg_d4  # noqa: F401
            return "imported"
        except ImportError:
            return "missing"

    assert set(ray.get([plain_import.remote() for _ in range(8)])) == {"missing"}
    ray.kill(a)


@pytest.mark.usefixtures("ray_cluster")
def test_size_limit_is_a_clear_error(tmp_path, monkeypatch):
    src = write_tree(tmp_path / "big", {"small.py": "X = 1\n", "huge.dat": "x" * 20000})
    monkeypatch.setenv(renv.MAX_BYTES_ENV, "10000")
    f = ray.remote(lambda: sorted(os.listdir(".")))
    with pytest.raises(ValueError, match="larger than the maximum.*excludes"):
        f.options(runtime_env={"working_dir": src}).remote()
    assert ray.get(f.options(runtime_env={"working_dir": src, "excludes": ["huge.dat"]}).remote()) == \
        ["small.py"]


@pytest.mark.usefixtures("ray_cluster")
def test_nested_environments_in_one_process_are_layered(tmp_path):
    """A task blocked in get() lends its process to its child: the child's environment is laid
    over the parent's and taken off again when the child ends."""
    started, gate = tmp_path / "started", tmp_path / "gate"

    @ray.remote
    def blocker():
        started.touch()
        while not gate.exists():
            time.sleep(0.01)
        return os.getpid()

    @ray.remote
    def child():
        return os.getpid(), os.environ.get("RENV_T1"), os.environ.get("RENV_T2")

    @ray.remote
    def parent():
        before = os.environ.get("RENV_T1"), os.environ.get("RENV_T2")
        c = ray.get(child.options(runtime_env={"env_vars": {"RENV_T1": "child"}}).remote())
        after = os.environ.get("RENV_T1"), os.environ.get("RENV_T2")
        return os.getpid(), before, c, after

    b = blocker.remote()  # keeps the other worker busy
    try:
        assert wait_for(started.exists, timeout=30)
        pid, before, (cpid, c1, c2), after = ray.get(parent.options(
            runtime_env={"env_vars": {"RENV_T1": "parent", "RENV_T2": "parent"}}).remote())
    finally:
        gate.touch()
    assert cpid == pid  # the child ran in its blocked parent's process
    assert before == ("parent", "parent") == after
    assert (c1, c2) == ("child", "parent")  # inherited from the parent, merged
    ray.get(b)
    for _, e, _ in plain_runs_on(pid):
        assert e == dict.fromkeys(ENV_KEYS)


@pytest.mark.usefixtures("ray_cluster")
def test_remote_function_with_working_dir_submitted_by_a_task(tmp_path):
    """A remote function carries its shipped packages when it travels into a task, so the
    worker that submits it needs no access to the driver's files."""
    src = write_tree(tmp_path / "nested_src", {"nestedmod_e5.py": "VALUE = 'nested'\n"})

    @ray.remote(runtime_env={"working_dir": src})
    def inner():
        import nestedmod_e5
        return nestedmod_e5.VALUE

    @ray.remote
    def outer():
        return ray.get(inner.remote())

    assert ray.get(inner.remote()) == "nested"  # shipped by the driver
    shutil.rmtree(src)
    assert ray.get(outer.remote()) == "nested"


def test_cpp_functions_refuse_runtime_env(ray_cluster):
    from conftest import ITEST_LIB
    if not ITEST_LIB.exists():
        pytest.skip("the integration test library is not built")
    triple = ray.cpp_function("LibTriple", library=str(ITEST_LIB))
    with pytest.raises(ValueError, match="runtime_env is not supported for C\\+\\+ functions"):
        triple.options(runtime_env={"env_vars": {"A": "1"}})
