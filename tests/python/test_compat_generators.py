"""Generators as Ray runs them (issue 10): a generator function streams by default
(num_returns None), num_returns="dynamic" (one ref holding a DynamicObjectRefGenerator),
a generator with a fixed num_returns yielding fewer items (ValueError) or more (the first
num_returns, as Ray 2), a generator raising after some values (those values, then the error
in the remaining returns, as Ray 2), and
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
    assert out["fixed"] == [[0, 1], "fewer", [0, 1]], out
    assert out["actor"] == [[0, 1, 2], [0, -1], ["0", "1"], [0, 1]], out
    assert out["midway"] == "KeyError", out


def test_generator_values_before_its_error(run_script):
    world = run_script(PRELUDE + """
import numpy as np
ray.init(num_cpus=2)

@ray.remote(num_cpus=0)
class Counter:
    def __init__(self):
        self.n = 0
    def inc(self):
        self.n += 1
        return self.n

class Flaky(Exception):
    pass

@ray.remote(max_retries=0)
def fails_after(k, big):
    for i in range(k):
        yield np.ones(200_000, dtype=np.int8) * i if big else [i]
    raise KeyError("after " + str(k))

@ray.remote(max_retries=1)
def flaky(counter):
    for i in range(3):
        yield i
        if ray.get(counter.inc.remote()) == 1:
            raise Flaky("first run")

@ray.remote
def consume(x):
    return "consumed"

def outcome(ref):
    try:
        v = ray.get(ref, timeout=30)
        return int(v[0]) if isinstance(v, (list, np.ndarray)) else v
    except KeyError as e:
        assert isinstance(e, ray.exceptions.RayTaskError), type(e)
        return "KeyError"
    except Flaky:
        return "Flaky"

out = {}
for big in (False, True):
    refs = fails_after.options(num_returns=3).remote(1, big)
    out["fixed", big] = [outcome(r) for r in refs]
    out["dynamic", big] = [outcome(r) for r in ray.get(fails_after.options(num_returns="dynamic").remote(2, big))]
out["dependent"] = outcome(consume.remote(fails_after.options(num_returns=2).remote(1, False)[1]))
counter = Counter.remote()
out["no_retry"] = [outcome(r) for r in ray.get(flaky.options(num_returns="dynamic").remote(counter))]
counter = Counter.remote()
out["retried"] = ray.get(list(ray.get(flaky.options(num_returns="dynamic", retry_exceptions=[Flaky]).remote(counter))))
print("RESULT " + json.dumps({" ".join(map(str, k)) if isinstance(k, tuple) else k: v for k, v in out.items()}))
""", timeout=100)
    assert world.returncode == 0, world
    out = last_json(world.stdout)
    for big in ("False", "True"):
        assert out["fixed " + big] == [0, "KeyError", "KeyError"], out
        assert out["dynamic " + big] == [0, 1, "KeyError"], out
    assert out["dependent"] == "KeyError", out
    assert out["no_retry"] == [0, "Flaky"], out
    assert out["retried"] == [0, 1, 2], out


def test_generator_with_num_returns_1_returns_its_value(run_script):
    world = run_script(PRELUDE + """
ray.init(num_cpus=1)

@ray.remote
def gen(n):
    for i in range(n):
        yield [i]

@ray.remote
class G:
    def gen(self, n):
        for i in range(n):
            yield [i]

g = G.remote()
out = [ray.get(gen.options(num_returns=1).remote(1)), ray.get(g.gen.options(num_returns=1).remote(1)),
       ray.get(gen.options(num_returns=1).remote(3))]
print("RESULT " + json.dumps(out))
""", timeout=60)
    assert world.returncode == 0, world
    assert last_json(world.stdout) == [[0], [0], [0]]


def test_actor_generator_values_before_its_error_and_retries(run_script):
    # Generator methods (sync and async) that raise midway: the values so far, then the
    # error; with retry_exceptions the method runs again on the same instance while its
    # max_task_retries last, and the last try gives its values then the error.
    world = run_script(PRELUDE + """
ray.init(num_cpus=2)

class MyError(Exception):
    pass

@ray.remote(max_task_retries=2)
class Maker:
    def __init__(self):
        self.calls = 0
    async def agen(self, actions):
        self.calls += 1
        for a in actions[self.calls - 1]:
            if a == "raise":
                raise MyError(str(self.calls))
            yield a
    def sgen(self, actions):
        self.calls += 1
        for a in actions[self.calls - 1]:
            if a == "raise":
                raise MyError(str(self.calls))
            yield a
    def count(self):
        return self.calls

def drain(gen):
    out = []
    for ref in gen:
        try:
            out.append(ray.get(ref, timeout=30))
        except MyError as e:
            out.append("MyError " + e.args[0])
    return out

out = {}
for method in ("agen", "sgen"):
    m = Maker.remote()
    out[method + " no retry"] = [drain(getattr(m, method).remote([[1, "raise"]])), ray.get(m.count.remote())]
    m = Maker.remote()
    runs = [[1, "raise"], [1, "raise"], [1, 2, 3]]
    out[method + " retried"] = [drain(getattr(m, method).options(retry_exceptions=[MyError]).remote(runs)),
                                ray.get(m.count.remote())]
    m = Maker.remote()
    runs = [[1, "raise"]] * 3 + [[1, 2]]
    out[method + " budget"] = [drain(getattr(m, method).options(retry_exceptions=[MyError]).remote(runs)),
                               ray.get(m.count.remote())]
print("RESULT " + json.dumps(out))
""", timeout=100)
    assert world.returncode == 0, world
    out = last_json(world.stdout)
    for method in ("agen", "sgen"):
        assert out[method + " no retry"] == [[1, "MyError 1"], 1], out
        assert out[method + " retried"] == [[1, 2, 3], 3], out
        assert out[method + " budget"] == [[1, "MyError 3"], 3], out
