"""asyncio with ObjectRefs and async actors as in Ray: `await ref`, `ref.as_future()`,
`ref.future()`, `asyncio.wait_for` on refs, `_on_completed` callbacks; every method of an
async actor runs on its one event-loop thread; errors in async methods reach the caller as the
user's exception type; `async def` remote functions are refused as Ray does."""

import asyncio
import threading
import time

import pytest

import mpiray as ray
from mpiray import exceptions as rex

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("ray_cluster")]


@ray.remote
class Gate:
    def __init__(self):
        self.ev = asyncio.Event()

    async def wait(self):
        await self.ev.wait()
        return "open"

    async def open(self):
        self.ev.set()


@ray.remote
def slow(x, delay=0.0):
    time.sleep(delay)
    return x


@ray.remote
def fails():
    raise ValueError("task failed")


def test_await_refs_and_futures():
    async def main():
        assert await slow.remote(1) == 1
        assert await slow.remote(2).as_future() == 2
        assert await asyncio.wrap_future(slow.remote(3).future()) == 3
        assert await asyncio.wait_for(slow.remote(4), timeout=30) == 4
        assert await asyncio.gather(slow.remote(5), slow.remote(6)) == [5, 6]
        with pytest.raises(ValueError, match="task failed"):
            await fails.remote()
        with pytest.raises(rex.RayTaskError):
            await fails.remote().as_future()

    asyncio.run(main())


def test_wait_for_times_out_then_the_same_ref_completes():
    gate = Gate.remote()
    waiting = gate.wait.remote()

    async def main():
        fut = waiting.as_future()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(fut, timeout=0.1)
        assert fut.cancelled()
        await gate.open.remote()
        assert await waiting == "open"
        assert await waiting == "open"  # awaiting twice is fine

    asyncio.run(main())
    ray.kill(gate)


def test_on_completed_callbacks():
    seen = []
    done = threading.Event()

    def record(value):
        seen.append(value)
        done.set()

    ray.put("ready")._on_completed(record)
    assert done.wait(10) and seen == ["ready"]
    done.clear()
    slow.remote("later", 0.3)._on_completed(record)
    assert not done.is_set()
    assert done.wait(10) and seen == ["ready", "later"]
    done.clear()
    fails.remote()._on_completed(record)  # a failed task: the exception is passed
    assert done.wait(10) and isinstance(seen[-1], ValueError)


def test_async_actor_runs_every_method_on_one_thread():
    @ray.remote
    class Mixed:
        def sync_thread(self):
            return threading.get_ident()

        async def async_thread(self):
            await asyncio.sleep(0)
            return threading.get_ident()

        async def raises(self):
            await asyncio.sleep(0)
            raise KeyError("inside async")

    a = Mixed.remote()
    ids = ray.get([a.sync_thread.remote(), a.async_thread.remote(), a.sync_thread.remote(),
                   a.async_thread.remote()])
    assert len(set(ids)) == 1, ids
    with pytest.raises(KeyError, match="inside async"):
        ray.get(a.raises.remote())
    try:
        ray.get(a.raises.remote())
    except rex.RayTaskError as e:
        assert isinstance(e.cause, KeyError)
    ray.kill(a)


def test_async_actor_calls_interleave_with_plain_methods_on_the_loop():
    @ray.remote
    class Batcher:
        def __init__(self):
            self.batch = []
            self.event = asyncio.Event()

        async def add(self, x):
            self.batch.append(x)
            if len(self.batch) >= 3:
                self.event.set()
            else:
                await self.event.wait()
            return sorted(self.batch)

        def size(self):
            return len(self.batch)

    b = Batcher.remote()
    refs = [b.add.remote(i) for i in range(3)]
    assert ray.get(refs) == [[0, 1, 2]] * 3
    assert ray.get(b.size.remote()) == 3
    ray.kill(b)


def test_async_remote_function_is_refused():
    with pytest.raises(ValueError, match="'async def' should not be used for remote tasks"):
        @ray.remote
        async def f():
            pass

    @ray.remote(num_returns="streaming")
    async def agen(n):  # an async generator is a streaming task, allowed
        for i in range(n):
            yield i

    assert [ray.get(r) for r in agen.remote(3)] == [0, 1, 2]
