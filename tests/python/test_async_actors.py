"""Async actors: `async def` methods of one actor run on one event loop, interleaving at their
awaits (up to max_concurrency, 1000 by default, as Ray)."""

import pytest

from test_lifecycle import PRELUDE, last_json

pytestmark = pytest.mark.timeout(120)

ASYNC = PRELUDE + """
import asyncio
ray.init(num_cpus=2)

@ray.remote
class Waiter:
    def __init__(self):
        self.event = asyncio.Event()   # made outside the loop: bound on first use
        self.loops = set()
    async def nap(self, s):
        self.loops.add(id(asyncio.get_running_loop()))
        await asyncio.sleep(s)
        return s
    async def wait_for_signal(self):
        await self.event.wait()
        return "released"
    async def signal(self):
        self.event.set()
        return "set"
    async def loop_count(self):
        return len(self.loops)
    def sync_ping(self):
        return "sync"

@ray.remote(max_concurrency=1)
class OneAtATime:
    async def nap(self, s):
        await asyncio.sleep(s)
        return s

out = {}
w = Waiter.remote()
t0 = time.monotonic()
out["naps"] = ray.get([w.nap.remote(1.0) for _ in range(10)], timeout=30)
out["concurrent_s"] = round(time.monotonic() - t0, 2)      # ten 1 s naps at once: about 1 s
blocked = w.wait_for_signal.remote()
time.sleep(0.2)
out["signal"] = ray.get(w.signal.remote(), timeout=30)
out["released"] = ray.get(blocked, timeout=30)   # the waiting call let the others run
out["one_loop"] = ray.get(w.loop_count.remote())
out["sync"] = ray.get(w.sync_ping.remote())
o = OneAtATime.remote()
t0 = time.monotonic()
ray.get([o.nap.remote(0.3) for _ in range(3)], timeout=30)
out["serial_s"] = round(time.monotonic() - t0, 2)
print("RESULT " + json.dumps(out))
ray.shutdown()
"""


def test_async_actor_calls_interleave(run_script):
    world = run_script(ASYNC, timeout=90)
    assert world.returncode == 0, world
    r = last_json(world.stdout)
    assert r["naps"] == [1.0] * 10
    assert r["concurrent_s"] < 3.0
    assert r["signal"] == "set" and r["released"] == "released"
    assert r["one_loop"] == 1
    assert r["sync"] == "sync"
    assert r["serial_s"] >= 0.85      # max_concurrency=1: one call at a time


MANY = PRELUDE + """
import asyncio, threading
ray.init(num_cpus=2)

@ray.remote(max_concurrency=3000)
class Gate:
    def __init__(self):
        self.event = None
        self.order = []
    async def wait(self, i):
        if self.event is None:
            self.event = asyncio.Event()
        self.order.append(i)
        await self.event.wait()
        return i
    async def open(self):
        if self.event is None:
            self.event = asyncio.Event()
        self.event.set()
        return len(self.order)
    async def order_seen(self):
        return self.order
    async def fail(self):
        raise KeyError("inside")
    async def leave(self):
        ray.actor.exit_actor()
    def threads(self):
        return threading.active_count()

@ray.remote(max_concurrency=2)
class Two:
    def __init__(self):
        self.running = 0
        self.peak = 0
    async def nap(self):
        self.running += 1
        self.peak = max(self.peak, self.running)
        await asyncio.sleep(0.05)
        self.running -= 1
        return self.peak

out = {}
g = Gate.remote()
waiting = [g.wait.remote(i) for i in range(2500)]
out["opened_with"] = ray.get(g.open.remote(), timeout=60)   # 2500 calls wait, none in a thread
out["released"] = ray.get(waiting, timeout=60) == list(range(2500))
out["in_order"] = ray.get(g.order_seen.remote()) == list(range(2500))
out["threads"] = ray.get(g.threads.remote())
try:
    ray.get(g.fail.remote(), timeout=30)
except KeyError as e:
    out["error"] = str(e)
t = Two.remote()
out["peak"] = max(ray.get([t.nap.remote() for _ in range(10)], timeout=30))
try:
    ray.get(g.leave.remote(), timeout=30)
except ray.exceptions.RayActorError as e:
    out["left"] = "exit_actor" in str(e)
print("RESULT " + json.dumps(out))
ray.shutdown()
"""


def test_async_actor_calls_wait_without_a_thread_each(run_script):
    """2,500 calls of one async actor wait at once (more than the 1,000 threads an actor may
    have): each call's coroutine runs on the loop and no thread waits for it, so the call that
    opens the gate runs too. Calls start in submission order; max_concurrency still bounds
    the running calls; errors and exit_actor() come back from deferred calls."""
    world = run_script(MANY, timeout=110)
    assert world.returncode == 0, world
    r = last_json(world.stdout)
    assert r["opened_with"] == 2500
    assert r["released"] and r["in_order"]
    assert r["threads"] < 20, r["threads"]
    assert "inside" in r["error"]
    assert r["peak"] == 2
    assert r["left"] is True
