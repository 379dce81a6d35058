"""ray.util.state from the head: tasks by state, actors, objects, nodes, summaries, filters."""

import pytest

from test_lifecycle import PRELUDE, last_json

pytestmark = pytest.mark.timeout(120)

STATE = PRELUDE + """
import numpy as np
from mpiray.util.state import (list_actors, list_nodes, list_objects, list_tasks,
                               summarize_actors, summarize_objects, summarize_tasks)
ray.init()

@ray.remote
def nap(s):
    time.sleep(s)
    return s

@ray.remote
class Keeper:
    def ping(self):
        return 1

k = Keeper.options(name="keeper").remote()
ray.get(k.ping.remote())
ray.get([nap.remote(0) for _ in range(3)])
running = [nap.remote(1.5) for _ in range(3)]     # 2 workers: 2 run, 1 waits
time.sleep(0.5)
big = ray.put(np.zeros(1 << 20))
out = {}
out["running"] = len(list_tasks(filters=[("state", "=", "RUNNING")]))
out["queued"] = len(list_tasks(filters=[("state", "=", "PENDING_NODE_ASSIGNMENT")]))
out["finished_nap"] = summarize_tasks()["cluster"]["summary"]["nap"]["state_counts"].get("FINISHED")
actors = list_actors()
out["actor"] = [actors[0]["name"], actors[0].state, actors[0]["pid"] is not None]
out["shm_objects"] = summarize_objects()["cluster"]["summary"]["SHARED_MEMORY"]["count"]
out["big_listed"] = any(o.object_size > 8_000_000 and o.location == "SHARED_MEMORY" for o in list_objects())
out["nodes"] = [n.state for n in list_nodes()]
out["limit"] = len(list_tasks(limit=2))
ray.kill(k)
time.sleep(0.2)
out["dead"] = list_actors(filters=[("name", "=", "keeper")])[0]["state"]
out["actor_summary"] = summarize_actors()["cluster"]["total_actors"]
try:
    list_tasks(filters=[("colour", "=", "red")])
    out["bad_filter"] = "accepted"
except ValueError as e:
    out["bad_filter"] = "colour" in str(e)
ray.get(running)
print("RESULT " + json.dumps(out))
ray.shutdown()
"""


def test_state_listing(run_script):
    world = run_script(STATE, env={"MPIRAY_NUM_WORKERS": "2"}, timeout=60)
    assert world.returncode == 0, world
    r = last_json(world.stdout)
    assert r["running"] == 2 and r["queued"] == 1
    assert r["finished_nap"] == 3
    assert r["actor"] == ["keeper", "ALIVE", True]
    assert r["shm_objects"] >= 1 and r["big_listed"] is True
    assert r["nodes"] == ["ALIVE"]
    assert r["limit"] == 2
    assert r["dead"] == "DEAD" and r["actor_summary"] == 1
    assert r["bad_filter"] is True
