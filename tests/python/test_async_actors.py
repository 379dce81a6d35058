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
