"""Ray's public names and small API behaviours that Ray programs and Ray's own tests rely on:
exception names and wrapping, ids, init()'s return value, auto-init, float sizes, wait/get
edge cases, placement groups after pickling, Queue subclasses, the runtime context."""

import pickle

import pytest

import mpiray as ray
from mpiray import exceptions as rex

pytestmark = pytest.mark.timeout(120)


# ------------------------------------------------------------------ names (no cluster)


def test_public_names_exist_with_rays_hierarchy():
    assert ray.ObjectID is ray.ObjectRef
    for name in ("JobID", "NodeID", "TaskID", "ActorID", "PlacementGroupID", "UniqueID",
                 "WorkerID", "FunctionID", "ActorClassID"):
        cls = getattr(ray, name)
        a, b = cls(b"\x01\x02"), cls(b"\x01\x02")
        assert a == b and hash(a) == hash(b) and a.binary() == b"\x01\x02"
        assert a.hex() in ("0102", "0201")  # (a placement group's hex is its id, little-endian)
        assert pickle.loads(pickle.dumps(a)) == a
    assert ray.JobID(b"\x01") != ray.NodeID(b"\x01")  # different kinds never compare equal
    assert issubclass(rex.ObjectFreedError, rex.ObjectLostError)
    assert issubclass(rex.OwnerDiedError, rex.ObjectLostError)
    assert issubclass(rex.ReferenceCountingAssertionError, AssertionError)
    assert issubclass(rex.GetTimeoutError, TimeoutError)
    for name in ("NodeDiedError", "OutOfMemoryError", "RuntimeEnvSetupError",
                 "TaskPlacementGroupRemoved", "ActorPlacementGroupRemoved",
                 "PendingCallsLimitExceeded", "TaskUnschedulableError", "ActorUnschedulableError"):
        assert issubclass(getattr(rex, name), rex.RayError), name
        assert name in rex.__all__
    from mpiray.actor import ActorClassInheritanceException
    assert issubclass(ActorClassInheritanceException, TypeError)
    from mpiray.util.placement_group import VALID_PLACEMENT_GROUP_STRATEGIES
    assert VALID_PLACEMENT_GROUP_STRATEGIES == {"PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"}
    assert ray.cloudpickle.loads(ray.cloudpickle.dumps(lambda: 3))() == 3
    from mpiray.runtime_context import RuntimeContext, get_runtime_context
    assert RuntimeContext is ray.RuntimeContext and get_runtime_context is ray.get_runtime_context


def test_inheriting_from_an_actor_class_is_refused():
    class Base:
        def f(self):
            return 1

    ActorBase = ray.remote(Base)
    from mpiray.actor import ActorClassInheritanceException
    with pytest.raises(ActorClassInheritanceException, match="Inheriting from actor classes"):
        class Derived(ActorBase):  # noqa: F841
            pass

    class Fine(Base):  # inheriting from the plain class is the way
        pass

    assert ray.remote(Fine)._cls.f is Base.f


# ------------------------------------------------------------------ with a cluster


def test_init_returns_a_ray_context(private_dirs):
    ctx = ray.init(num_cpus=1, object_store_memory=700e6)  # a float, as Ray programs write it
    assert isinstance(ctx, dict)
    assert ctx["session_dir"] == ctx.address_info["session_dir"] and ctx["session_dir"]
    assert ctx["address"].startswith("mpiray://") and ctx.address_info["webui_url"] == ""
    assert ctx.dashboard_url == "" and ctx.namespace == ray.get_runtime_context().namespace
    assert ctx.rank == 0 and ctx.get()["session_dir"] == ctx["session_dir"]
    assert ray.init(ignore_reinit_error=True)["session_dir"] == ctx["session_dir"]
    with ctx:  # a context manager whose exit shuts down
        assert ray.is_initialized()
    assert not ray.is_initialized()


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "700MB"])
def test_bad_object_store_memory_is_refused(private_dirs, bad):
    with pytest.raises((ValueError, TypeError), match="object_store_memory"):
        ray.init(num_cpus=1, object_store_memory=bad)
    assert not ray.is_initialized()


def test_auto_init_at_first_remote_call(run_script):
    world = run_script("""
        import mpiray as ray

        @ray.remote
        def f(x):
            return x + 1

        assert not ray.is_initialized()
        print("value", ray.get(f.remote(1)))
        assert ray.is_initialized()
        ray.shutdown()
        assert ray.get(ray.put(5)) == 5          # put starts it again
        assert ray.get_runtime_context().get_job_id()
        ray.shutdown()
        print("ok")
    """)
    assert world.returncode == 0, world
    assert "value 2" in world.stdout and "ok" in world.stdout


def test_auto_init_can_be_turned_off(run_script):
    world = run_script("""
        import mpiray as ray

        @ray.remote
        def f():
            return 1

        try:
            f.remote()
        except RuntimeError as e:
            assert "RAY_ENABLE_AUTO_CONNECT" in str(e), e
            print("refused")
        assert not ray.is_initialized()
    """, env={"RAY_ENABLE_AUTO_CONNECT": "0"})
    assert world.returncode == 0, world
    assert "refused" in world.stdout


def test_task_error_is_ray_task_error_and_the_users_type(run_script):
    world = run_script("""
        import mpiray as ray
        from mpiray.exceptions import RayTaskError, RayError

        class MyError(Exception):
            def __init__(self, code):
                super().__init__(f"code {code}")
                self.code = code

        @ray.remote
        def fails():
            raise MyError(7)

        @ray.remote
        def chained():
            return ray.get(fails.remote())

        ray.init(num_cpus=2)
        for ref in (fails.remote(), chained.remote()):
            try:
                ray.get(ref)
            except MyError as e:
                assert isinstance(e, RayTaskError) and isinstance(e, RayError)
                assert isinstance(e.cause, MyError) and e.cause.code == 7 and e.code == 7
                assert "MyError" in str(e) and "code 7" in str(e)
                assert isinstance(e.as_instanceof_cause(), MyError)
                print("caught", type(e).__name__)
        ray.shutdown()
    """)
    assert world.returncode == 0, world
    assert world.stdout.count("caught RayTaskError(MyError)") == 2, world.stdout


@pytest.mark.usefixtures("ray_cluster")
class TestWithCluster:
    def test_wait_edge_cases(self):
        assert ray.wait([]) == ([], [])
        refs = [ray.put(i) for i in range(3)]
        with pytest.raises(ValueError):
            ray.wait(refs, num_returns=4)
        with pytest.raises(ValueError):
            ray.wait(refs, num_returns=0)
        with pytest.raises(ValueError):
            ray.wait(refs, timeout=-1)
        with pytest.raises(ValueError):
            ray.wait([refs[0], refs[0]])
        with pytest.raises(TypeError):
            ray.wait(refs[0])
        with pytest.raises(TypeError):
            ray.wait([1])
        ready, rest = ray.wait(refs, num_returns=2)
        assert len(ready) == 2 and len(rest) == 1
        with pytest.raises(TypeError):
            ray.put(refs[0])

    def test_get_timeout(self):
        @ray.remote
        class Gate:
            def __init__(self):
                import threading
                self.ev = threading.Event()

            def wait(self):
                self.ev.wait(30)
                return "open"

            def open(self):
                self.ev.set()

        g = Gate.options(max_concurrency=2).remote()
        ref = g.wait.remote()
        with pytest.raises(rex.GetTimeoutError):
            ray.get(ref, timeout=0.2)
        with pytest.raises(TimeoutError):
            ray.get([ref], timeout=0)
        ray.get(g.open.remote())
        assert ray.get(ref, timeout=30) == "open"

    def test_placement_group_equal_after_pickling(self):
        from mpiray.util import placement_group, remove_placement_group
        pg = placement_group([{"CPU": 1}])
        assert ray.get(pg.ready(), timeout=30)

        @ray.remote
        def same(group, groups):
            return group == groups[0] and hash(group) == hash(groups[0]) and group in set(groups)

        copy = pickle.loads(pickle.dumps(pg))
        assert copy == pg and hash(copy) == hash(pg)
        assert ray.get(same.remote(pg, [pg]))
        remove_placement_group(pg)

    def test_queue_subclass_keeps_its_type(self):
        from mpiray.util.queue import Queue

        class Tagged(Queue):
            def tag(self):
                return f"tagged:{self.label}"

        q = Tagged()
        q.label = "x"

        @ray.remote
        def use(queue):
            queue.put(queue.tag())
            return type(queue).__name__

        assert ray.get(use.remote(q)) == "Tagged"
        assert q.get(timeout=10) == "tagged:x"
        q.shutdown()

    def test_runtime_context_ids_and_names(self):
        rtc = ray.get_runtime_context()
        d = rtc.get()
        assert {"job_id", "node_id", "namespace"} <= set(d)
        assert "task_id" not in d and "actor_id" not in d  # the driver runs no task
        assert d["job_id"].hex() == rtc.get_job_id() and d["node_id"].hex() == rtc.get_node_id()
        assert rtc.get_task_id() is None and rtc.get_actor_id() is None
        assert rtc.get_actor_name() is None and rtc.get_assigned_resources() == {}
        with pytest.warns(DeprecationWarning, match="get_node_id"):
            assert rtc.node_id.hex() == rtc.get_node_id()

        @ray.remote
        def task():
            c = ray.get_runtime_context()
            d = c.get()
            return (d["task_id"].hex() == c.get_task_id(), "actor_id" in d, c.get_task_name(),
                    c.get_task_function_name(), c.get_assigned_resources(), c.get_actor_name())

        ok, has_actor, name, fname, res, actor_name = ray.get(task.options(name="named").remote())
        assert ok and not has_actor and name == "named" and actor_name is None
        assert fname.endswith(".task") and res == {"CPU": 1.0}

        @ray.remote
        class Echo:
            def info(self):
                c = ray.get_runtime_context()
                return (c.get_actor_name(), c.get_task_name(), c.get_assigned_resources(),
                        c.get()["actor_id"].hex() == c.get_actor_id())

            def via_self(self, s):
                return ray.get_runtime_context().current_actor.echo.remote(s)

            def echo(self, s):
                return s

        named = Echo.options(name="echo-compat", num_cpus=1).remote()
        assert ray.get(named.info.remote()) == ("echo-compat", "Echo.info", {"CPU": 1.0}, True)
        plain = Echo.remote()
        assert ray.get(plain.info.remote())[:3] == ("", "Echo.info", {})
        assert ray.get(ray.get(plain.via_self.remote("hello"))) == "hello"
        ray.kill(named)
        ray.kill(plain)


@pytest.mark.usefixtures("ray_cluster")
def test_current_placement_group_inside_tasks_and_actors():
    from mpiray.util import get_current_placement_group, placement_group, remove_placement_group
    from mpiray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    pg = placement_group([{"CPU": 1}])
    assert ray.get(pg.ready(), timeout=30)
    assert ray.get_runtime_context().get_placement_group_id() is None
    assert get_current_placement_group() is None

    @ray.remote
    def where():
        group = get_current_placement_group()
        return ray.get_runtime_context().get_placement_group_id(), group == pg if group else None

    @ray.remote
    class Member:
        def where(self):
            return ray.get_runtime_context().get_placement_group_id()

    in_group = PlacementGroupSchedulingStrategy(placement_group=pg)
    assert ray.get(where.options(scheduling_strategy=in_group).remote()) == (pg.id.hex(), True)
    assert ray.get(where.remote()) == (None, None)
    m = Member.options(scheduling_strategy=in_group).remote()
    assert ray.get(m.where.remote()) == pg.id.hex()
    ray.kill(m)
    remove_placement_group(pg)


@pytest.mark.parametrize("key,bad", [("num_returns", -1), ("num_returns", 0.5), ("max_retries", -2),
                                     ("max_retries", 0.5), ("max_calls", -1), ("num_cpus", -1),
                                     ("resources", ["CPU"])])
def test_bad_task_options_are_refused_where_given(key, bad):
    with pytest.raises(ValueError, match=f"The keyword '{key}' only accepts"):
        @ray.remote(**{key: bad})
        def g():
            return 1

    @ray.remote
    def h():
        return 1

    with pytest.raises(ValueError, match=f"The keyword '{key}' only accepts"):
        h.options(**{key: bad})


@pytest.mark.parametrize("key,bad", [("max_restarts", -2), ("max_task_retries", 1.5),
                                     ("max_concurrency", 0)])
def test_bad_actor_options_are_refused_where_given(key, bad):
    with pytest.raises(ValueError, match=f"The keyword '{key}' only accepts"):
        @ray.remote(**{key: bad})
        class A:
            x = 1
