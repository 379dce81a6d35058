"""Actors: creation with and without options, methods, num_returns, named actors, handles
passed around, kill, and the runtime context inside an actor (shared embedded cluster)."""

import os
import time

import pytest

import mpiray as ray
from mpiray import exceptions as rex
from conftest import wait_for

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("ray_cluster")]


@ray.remote
class Counter:
    def __init__(self, start=0, *, step=1):
        self.value = start
        self.step = step

    def add(self, x=None):
        self.value += self.step if x is None else x
        return self.value

    def get(self):
        return self.value

    def pair(self):
        return self.value, -self.value

    @ray.method(num_returns=2)
    def split(self):
        return self.value // 2, self.value % 2

    @ray.method(num_returns=3)
    def three(self):
        return 1, 2, 3

    def context(self):
        c = ray.get_runtime_context()
        return dict(actor_id=c.actor_id, actor_hex=c.get_actor_id(), rank=c.rank,
                    task_id=c.task_id, namespace=c.namespace, job_id=c.job_id, pid=os.getpid())

    def slow_add(self, x, t):
        time.sleep(t)
        self.value += x
        return self.value


def test_actor_state_and_call_order():
    c = Counter.remote(10)
    refs = [c.add.remote(1) for _ in range(20)]
    assert ray.get(refs) == list(range(11, 31))  # calls from one caller run in order
    assert ray.get(c.get.remote()) == 30


def test_actor_constructor_args_and_kwargs():
    c = Counter.remote(5, step=10)
    assert ray.get(c.add.remote()) == 15
    assert ray.get(c.add.remote(x=1)) == 16
    # Refs as arguments are resolved, for the constructor and methods.
    d = Counter.remote(ray.put(100))
    assert ray.get(d.add.remote(ray.put(1))) == 101


def test_actor_class_with_options_decorator():
    @ray.remote(num_cpus=1, max_concurrency=1)
    class Holder:
        def __init__(self):
            self.items = []

        def push(self, x):
            self.items.append(x)
            return len(self.items)

    h = Holder.remote()
    assert ray.get([h.push.remote(i) for i in range(3)]) == [1, 2, 3]
    # The actor holds its CPU for its lifetime.
    assert wait_for(lambda: ray.available_resources().get("CPU") == 1.0, timeout=10)
    ray.kill(h)
    assert wait_for(lambda: ray.available_resources().get("CPU") == 2.0, timeout=10)


def test_actor_options_resources():
    a = Counter.options(num_cpus=2).remote(0)
    assert ray.get(a.add.remote(1)) == 1
    assert wait_for(lambda: ray.available_resources().get("CPU", 0.0) == 0.0, timeout=10)
    ray.kill(a)
    assert wait_for(lambda: ray.available_resources().get("CPU") == 2.0, timeout=10)
    with pytest.raises(rex.InfeasibleError):
        Counter.options(num_gpus=1).remote(0)
    with pytest.raises(ValueError):
        Counter.options(num_cpu=1)


def test_method_num_returns_decorator_and_options():
    c = Counter.remote(7)
    a, b = c.split.remote()
    assert ray.get([a, b]) == [3, 1]
    refs = c.three.remote()
    assert len(refs) == 3 and ray.get(refs) == [1, 2, 3]
    x, y = c.pair.options(num_returns=2).remote()
    assert ray.get(x) == 7 and ray.get(y) == -7
    assert ray.get(c.pair.remote()) == (7, -7)
    with pytest.raises(ValueError):
        c.pair.options(num_returnz=2)
    with pytest.raises(ValueError, match="bogus"):
        ray.method(num_returns=2, bogus=1)


def test_calling_actor_class_or_method_directly_raises():
    with pytest.raises(TypeError, match=r"Counter\.remote\(\)"):
        Counter()
    c = Counter.remote()
    with pytest.raises(TypeError, match=r"add\.remote\(\)"):
        c.add()
    with pytest.raises(AttributeError, match="no_such_method"):
        c.no_such_method.remote()


def test_runtime_context_inside_actor():
    c = Counter.remote()
    info = ray.get(c.context.remote())
    assert isinstance(info["actor_id"], ray.ActorID)
    assert info["actor_id"] == c._actor_id
    assert info["actor_hex"] == c._actor_id.hex()
    assert info["rank"] >= 1
    assert info["task_id"] is not None
    assert info["namespace"] == ray.get_runtime_context().namespace
    assert info["job_id"] == ray.get_runtime_context().job_id
    assert info["pid"] != os.getpid()
    other = Counter.remote()
    assert ray.get(other.context.remote())["actor_id"] != info["actor_id"]


def test_named_actor_get_actor_and_namespace():
    c = Counter.options(name="named-counter").remote(1)
    assert ray.get(c.add.remote(1)) == 2
    h = ray.get_actor("named-counter")
    assert h == c and hash(h) == hash(c)
    assert ray.get(h.add.remote(1)) == 3  # the same actor
    ns = ray.get_runtime_context().namespace
    assert ray.get_actor("named-counter", namespace=ns) == c
    with pytest.raises(ValueError, match="named-counter"):
        ray.get_actor("named-counter", namespace="elsewhere")
    with pytest.raises(ValueError):
        ray.get_actor("never-created")
    with pytest.raises(ValueError):
        ray.get_actor("")
    # The name is taken; get_if_exists returns the live one.
    with pytest.raises(ValueError, match="already"):
        Counter.options(name="named-counter").remote()
    assert Counter.options(name="named-counter", get_if_exists=True).remote() == c
    # A named actor in another namespace.
    e = Counter.options(name="named-counter", namespace="elsewhere").remote(100)
    assert e != c
    assert ray.get(ray.get_actor("named-counter", namespace="elsewhere").get.remote()) == 100
    ray.kill(e)
    ray.kill(c)


@ray.remote
def call_actor(handle, x):
    return ray.get(handle.add.remote(x))


@ray.remote
class Caller:
    def __init__(self, target):
        self.target = target

    def poke(self, x):
        return ray.get(self.target.add.remote(x))

    def poke_other(self, other, x):
        return ray.get(other.add.remote(x))


def test_actor_handles_passed_to_tasks_and_actors():
    c = Counter.remote(0)
    assert ray.get(call_actor.remote(c, 5)) == 5
    assert ray.get([call_actor.remote(c, 1) for _ in range(4)]) is not None
    assert ray.get(c.get.remote()) == 9
    caller = Caller.remote(c)
    assert ray.get(caller.poke.remote(100)) == 109
    d = Counter.remote(1000)
    assert ray.get(caller.poke_other.remote(d, 1)) == 1001
    # Handles inside containers too.
    @ray.remote
    def via_list(handles):
        return [ray.get(h.get.remote()) for h in handles]

    assert ray.get(via_list.remote([c, d])) == [109, 1001]


def test_kill_actor():
    c = Counter.options(name="doomed").remote(0)
    assert ray.get(c.add.remote(1)) == 1
    ray.kill(c)
    with pytest.raises(rex.ActorDiedError):
        ray.get(c.add.remote(1), timeout=30)
    with pytest.raises(rex.RayActorError):
        ray.get(c.get.remote(), timeout=30)
    assert wait_for(lambda: _name_free("doomed"), timeout=10)
    with pytest.raises(ValueError):
        ray.kill("not an actor")


def _name_free(name):
    try:
        ray.get_actor(name)
    except ValueError:
        return True
    return False


def test_kill_fails_queued_calls():
    c = Counter.remote(0)
    first = c.slow_add.remote(1, 1.0)
    queued = [c.add.remote(1) for _ in range(3)]
    time.sleep(0.2)
    ray.kill(c)
    for r in queued:
        with pytest.raises(rex.ActorDiedError):
            ray.get(r, timeout=30)
    try:  # the running call may finish or fail; it must not hang
        ray.get(first, timeout=30)
    except rex.RayError:
        pass


def test_actor_constructor_error():
    @ray.remote
    class Broken:
        def __init__(self):
            raise ValueError("constructor failed")

        def m(self):
            return 1

    b = Broken.remote()
    with pytest.raises(rex.RayActorError, match="constructor failed"):
        ray.get(b.m.remote(), timeout=30)


def test_actor_method_error_keeps_actor_alive():
    @ray.remote
    class Fragile:
        def __init__(self):
            self.n = 0

        def fail(self):
            self.n += 1
            raise KeyError("method failed")

        def count(self):
            return self.n

    f = Fragile.remote()
    with pytest.raises(KeyError, match="method failed"):
        ray.get(f.fail.remote())
    assert ray.get(f.count.remote()) == 1


def test_async_actor_method():
    @ray.remote
    class AsyncActor:
        async def compute(self, x):
            import asyncio
            await asyncio.sleep(0.01)
            return x * 2

    a = AsyncActor.remote()
    assert ray.get(a.compute.remote(21)) == 42


def test_actor_handle_repr_and_id():
    c = Counter.remote()
    assert "Counter" in repr(c)
    assert isinstance(c._actor_id, ray.ActorID)
    assert len(c._actor_id.hex()) == 16


@ray.remote
class Plus1:
    def f(self, x):
        return x + 1


@ray.remote
class Chain:
    """Calls one actor and passes the still-pending result to another (from a worker)."""

    def __init__(self, first, second):
        self.first, self.second = first, second

    def sync_chain(self, x):
        return ray.get(self.second.f.remote(self.first.f.remote(x)))

    async def async_chain(self, x):
        return await self.second.f.remote(self.first.f.remote(x))


def test_pending_ref_from_a_worker_passed_to_another_actor():
    # A worker's actor call goes straight to the actor's process; the callee of the second
    # call may ask the head for the first call's result before the caller's registration of
    # that call arrives: the head waits for it instead of calling the object unknown.
    first, second = Plus1.remote(), Plus1.remote()
    chain = Chain.remote(first, second)
    for method in ("sync_chain", "async_chain"):  # one at a time: each call races anew
        got = [ray.get(getattr(chain, method).remote(i)) for i in range(60)]
        assert got == [i + 2 for i in range(60)], method
    for a in (first, second, chain):
        ray.kill(a)


@ray.remote
class Reader:
    """Reads small objects by reference: a worker keeps the values of small objects it has
    read (they never change) and asks the head only for new ones."""

    def total(self, *values):
        return sum(len(v) if isinstance(v, bytes) else v for v in values)

    def read_refs(self, refs):
        return [ray.get(r) for r in refs]


@ray.remote
def fails():
    raise ValueError("boom")


def test_small_ref_arguments_read_by_an_actor_again_and_again():
    r = Reader.remote()
    x = ray.put(7)
    assert ray.get([r.total.remote(x) for _ in range(3000)]) == [7] * 3000
    # More distinct small objects than the worker keeps (8 MiB of 90 KB values): the oldest
    # are dropped and read from the head again, every value still right.
    blobs = [ray.put(bytes([i % 251]) * 90_000) for i in range(150)]
    for _ in range(2):
        assert ray.get([r.total.remote(b) for b in blobs]) == [90_000] * 150
    got = ray.get(r.read_refs.remote(blobs[:3]))
    assert [g[:1] for g in got] == [bytes([0]), bytes([1]), bytes([2])]
    # An error is not kept: each call that reads it fails with it.
    bad = fails.remote()
    for _ in range(3):
        with pytest.raises(ValueError, match="boom"):
            ray.get(r.total.remote(bad))
