"""Actor reference counting as Ray (issue 10): a non-detached actor ends once its last handle
is gone (after the calls already made finish), wherever the handles were; an actor created
by a task and not handed out ends with the task; lifetime="detached" and named actors live
on. Remote classes are defined in the script (__main__)."""

import pytest

from test_lifecycle import PRELUDE, last_json

pytestmark = pytest.mark.timeout(120)


def test_actors_end_with_their_last_handle_unless_detached(run_script):
    world = run_script(PRELUDE + """
import gc
from mpiray.util import state
ray.init(num_cpus=2)

class Base:
    def pid(self):
        return os.getpid()
    def slow(self):
        time.sleep(1.0)
        return "finished"

@ray.remote
class Dropped(Base): pass
@ray.remote
class Shared(Base): pass
@ray.remote
class Detached(Base): pass
@ray.remote
class Named(Base): pass
@ray.remote
class Forgotten(Base): pass
@ray.remote
class Returned(Base): pass

@ray.remote
def use(handle):
    return ray.get(handle.pid.remote())

@ray.remote
def forget():
    a = Forgotten.remote()
    return ray.get(a.pid.remote()) > 0

@ray.remote
def hand_out():
    return Returned.remote()

@ray.remote
class Keeper:
    def keep(self, handle):
        self.handle = handle
        return ray.get(handle.pid.remote())
    def drop(self):
        del self.handle
        gc.collect()

def states():
    out = {}
    for a in state.list_actors():
        out[a["class_name"]] = out[a["name"] or a["class_name"]] = a["state"]
    return out

def settle(name, want, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if states().get(name) == want:
            return want
        time.sleep(0.05)
    return states().get(name)

out = {}
d = Dropped.remote()
ray.get(use.remote(d))
pending = d.slow.remote()          # made before the last handle goes: it still finishes
del d
gc.collect()
out["pending_call"] = ray.get(pending, timeout=30)
out["dropped"] = settle("Dropped", "DEAD")

s = Shared.remote()
keeper = Keeper.remote()
ray.get(keeper.keep.remote(s))
del s
gc.collect()
time.sleep(0.5)
out["shared_alive"] = states().get("Shared")     # the keeper's copy holds it
ray.get(keeper.drop.remote())
out["shared_after"] = settle("Shared", "DEAD")

det = Detached.options(lifetime="detached").remote()
named = Named.options(name="named-one").remote()
ray.get([det.pid.remote(), named.pid.remote()])
del det, named
gc.collect()
time.sleep(1.0)
out["detached"] = states().get("Detached")
out["named"] = states().get("named-one")
out["named_call"] = ray.get(ray.get_actor("named-one").pid.remote(), timeout=30) > 0

out["forgotten_ran"] = ray.get(forget.remote())
out["forgotten"] = settle("Forgotten", "DEAD")
r = ray.get(hand_out.remote())
time.sleep(0.5)
out["returned"] = [ray.get(r.pid.remote(), timeout=30) > 0, states().get("Returned")]
print("RESULT " + json.dumps(out))
""", timeout=110)
    assert world.returncode == 0, world
    out = last_json(world.stdout)
    assert out["pending_call"] == "finished" and out["dropped"] == "DEAD", out
    assert out["shared_alive"] == "ALIVE" and out["shared_after"] == "DEAD", out
    assert out["detached"] == "ALIVE" and out["named"] == "ALIVE" and out["named_call"], out
    assert out["forgotten_ran"] and out["forgotten"] == "DEAD", out
    assert out["returned"] == [True, "ALIVE"], out
