"""Generators as Ray runs them (issue 10): a generator function streams by default
(num_returns None), num_returns="dynamic" (one ref holding a DynamicObjectRefGenerator),
a generator with a fixed num_returns yielding fewer or more items (ValueError), and
generator methods on actors (sync, async, dynamic, fixed, failing midway)."""

import pytest

from test_lifecycle import PRELUDE, last_json

pytestmark = pytest.mark.timeout(120)


def test_generator_tasks_and_actor_methods(run_script):
    world = run_script(PRELUDE + """
ray.init(num_cpus=2)

@ray.remote
def gen(n):
    for i in range(n):
        yield i

@ray.remote(num_returns="dynamic")
def dyn(n):
    for i in range(n):
        yield i * 10

@ray.remote
def plain():
    return "plain"

@ray.remote
class Gens:
    def sync(self, n):
        for i in range(n):
            yield i
    async def asynchronous(self, n):
        for i in range(n):
            yield -i
    @ray.method(num_returns="dynamic")
    def dynamic(self, n):
        for i in range(n):
            yield str(i)
    def fails_midway(self):
        yield 1
        raise KeyError("midway")

def fixed(n):
    try:
        return ray.get(gen.options(num_returns=2).remote(n), timeout=30)
    except ValueError as e:
        return "fewer" if "fewer" in str(e) else "more" if "more than" in str(e) else str(e)

out = {}
g = gen.remote(3)
out["default"] = [type(g).__name__, [ray.get(r) for r in g]]
d = ray.get(dyn.remote(4))
out["dynamic"] = [type(d).__name__, len(d), ray.get(list(d))]
out["none"] = [ray.get(next(iter(gen.options(num_returns=None).remote(2)))),
               ray.get(plain.options(num_returns=None).remote())]
out["fixed"] = [fixed(2), fixed(1), fixed(3)]
a = Gens.remote()
out["actor"] = [[ray.get(r) for r in a.sync.remote(3)],
                [ray.get(r) for r in a.asynchronous.remote(2)],
                ray.get(list(ray.get(a.dynamic.remote(2)))),
                ray.get(a.sync.options(num_returns=2).remote(2))]
try:
    [ray.get(r) for r in a.fails_midway.remote()]
    out["midway"] = "no error"
except KeyError:
    out["midway"] = "KeyError"
out["names"] = [ray.ObjectRefGenerator.__name__, ray.DynamicObjectRefGenerator.__name__]
print("RESULT " + json.dumps(out))
""", timeout=100)
    assert world.returncode == 0, world
    out = last_json(world.stdout)
    assert out["default"] == ["ObjectRefGenerator", [0, 1, 2]], out
    assert out["dynamic"] == ["DynamicObjectRefGenerator", 4, [0, 10, 20, 30]], out
    assert out["none"] == [0, "plain"], out
    assert out["fixed"] == [[0, 1], "fewer", "more"], out
    assert out["actor"] == [[0, 1, 2], [0, -1], ["0", "1"], [0, 1]], out
    assert out["midway"] == "KeyError", out
