"""num_returns="streaming": an ObjectRefGenerator hands out each yielded value as soon as the
task yields it; errors after the last item; async generators; items nobody read are freed."""

import pytest

from test_lifecycle import PRELUDE, last_json

pytestmark = pytest.mark.timeout(120)

STREAM = PRELUDE + """
import asyncio, gc
import numpy as np
ray.init()

@ray.remote(num_returns="streaming")
def slow_squares(n):
    for i in range(n):
        time.sleep(0.3)
        yield i * i

@ray.remote(num_returns="streaming")
def fails_after(k):
    for i in range(k):
        yield i
    raise ValueError("broke after the items")

@ray.remote(num_returns="streaming")
def arrays(n):
    for i in range(n):
        yield np.full(1 << 20, i, dtype=np.int64)      # 8 MiB each, in shared memory

@ray.remote(num_returns="streaming")
async def agen(n):
    for i in range(n):
        await asyncio.sleep(0.01)
        yield f"item {i}"

@ray.remote(num_returns="streaming")
def not_a_generator():
    return 5

def objects():
    return ray._api._snapshot()["objects"]

out = {}
t0 = time.monotonic()
arrivals = []
gen = slow_squares.remote(4)
for ref in gen:
    arrivals.append((round(time.monotonic() - t0, 2), ray.get(ref)))
out["values"] = [v for _, v in arrivals]
# The first item came long before the task was done (streamed, not collected at the end).
out["first_at"] = arrivals[0][0]
out["last_at"] = arrivals[-1][0]
out["count"] = ray.get(gen.completed())
got = []
for ref in fails_after.remote(2):
    try:
        got.append(ray.get(ref))
    except ray.exceptions.RayTaskError as e:
        got.append("error: " + ("broke after the items" in str(e)).__str__())
out["fails"] = got
out["arrays"] = [int(ray.get(r)[7]) for r in arrays.remote(3)]
async def consume():
    return [ray.get(r) async for r in agen.remote(3)]
out["async"] = asyncio.run(consume())
try:
    for r in not_a_generator.remote():
        ray.get(r)
    out["not_gen"] = "no error"
except ray.exceptions.RayTaskError as e:
    out["not_gen"] = "generator function" in str(e)
try:
    slow_squares.options(num_returns="many").remote(1)
    out["bad_option"] = "accepted"
except ValueError as e:
    out["bad_option"] = "streaming" in str(e)
del ref, gen
gc.collect()
base = objects()
g = arrays.remote(5)
first = next(g)
ray.get(g.completed())
del first, g
gc.collect()
time.sleep(0.3)
out["leftover"] = objects() - base
print("RESULT " + json.dumps(out))
ray.shutdown()
"""


def test_streaming_generators(run_script):
    world = run_script(STREAM, env={"MPIRAY_NUM_WORKERS": "2"}, timeout=90)
    assert world.returncode == 0, world
    r = last_json(world.stdout)
    assert r["values"] == [0, 1, 4, 9] and r["count"] == 4
    assert r["first_at"] < 0.8 and r["last_at"] >= 1.1      # items arrive as they are made
    assert r["fails"] == [0, 1, "error: True"]
    assert r["arrays"] == [0, 1, 2]
    assert r["async"] == ["item 0", "item 1", "item 2"]
    assert r["not_gen"] is True
    assert r["bad_option"] is True
    assert r["leftover"] == 0     # items never read are freed with the generator
