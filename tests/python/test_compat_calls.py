"""Call-time argument checks and actor method options (issue 10): wrong arguments raise
TypeError at .remote() (Ray binds the signature), Ray's _remote(args=, kwargs=, ...),
@ray.method(num_returns, max_task_retries, retry_exceptions) and the same on .options(),
the built-in __ray_ready__/__ray_call__/__ray_terminate__, inheritance, class and static
attributes. Remote functions and classes are defined in the script (__main__)."""

import pytest

from test_lifecycle import PRELUDE, last_json

pytestmark = pytest.mark.timeout(120)


def test_wrong_arguments_raise_type_error_at_the_call(run_script):
    world = run_script(PRELUDE + """
ray.init(num_cpus=2)

@ray.remote
def f(a, b=1, *, c):
    return a + b + c

@ray.remote
def anything(*args, **kwargs):
    return len(args) + len(kwargs)

@ray.remote
class Acc:
    def __init__(self, start):
        self.total = start
    def add(self, x, y=0):
        self.total += x + y
        return self.total

errors = {}
acc = Acc.remote(10)
calls = {
    "missing_kw": lambda: f.remote(1),
    "too_many": lambda: f.remote(1, 2, 3, c=1),
    "unknown_kw": lambda: f.remote(1, c=1, d=2),
    "ctor_missing": lambda: Acc.remote(),
    "method_extra": lambda: acc.add.remote(1, 2, 3),
    "method_kw": lambda: acc.add.remote(1, z=2),
    "options_call": lambda: f.options(num_cpus=1).remote(),
}
for name, call in calls.items():
    try:
        call()
        errors[name] = None
    except TypeError as e:
        errors[name] = str(e)
out = {
    "errors": errors,
    "ok": ray.get([f.remote(1, c=2), anything.remote(1, 2, x=3), acc.add.remote(1, y=2)], timeout=60),
    "_remote": ray.get(f._remote(args=[1], kwargs={"c": 5})),
    "_remote_returns": ray.get(anything._remote(args=[(1, 2)], num_returns=1)),
    "method_remote": ray.get(acc.add._remote(args=[1])),
    "ctor_remote": ray.get(Acc._remote(args=[5], num_cpus=0).add.remote(1)),
}
print("RESULT " + json.dumps(out))
""", timeout=100)
    assert world.returncode == 0, world
    out = last_json(world.stdout)
    e = out["errors"]
    assert all(e.values()), e
    assert "missing a required argument: 'c'" in e["missing_kw"] and "f.remote()" in e["missing_kw"]
    assert "too many positional arguments" in e["too_many"]
    assert "unexpected keyword argument 'd'" in e["unknown_kw"]
    assert "Acc.remote()" in e["ctor_missing"] and "Acc.add.remote()" in e["method_extra"]
    assert out["ok"] == [4, 3, 13]
    assert out["_remote"] == 7 and out["_remote_returns"] == 1
    assert out["method_remote"] == 14 and out["ctor_remote"] == 6


def test_actor_method_options_builtins_and_inheritance(run_script):
    world = run_script(PRELUDE + """
ray.init(num_cpus=2)

class Grandparent:
    GRANDPARENT = 2
    def grand(self):
        return "grand"

class Parent(Grandparent):
    PARENT = 5
    @staticmethod
    def static_double(x):
        return 2 * x

@ray.remote
class Child(Parent):
    X = 3
    def __init__(self):
        self.fails_left = 2
        self.tries = 0
    @classmethod
    def from_class(cls, y):
        return cls.X + y
    def constants(self):
        return Child.X + Child.GRANDPARENT + Child.PARENT   # through the decorated name
    @ray.method(num_returns=2)
    def pair(self):
        return 1, 2
    @ray.method(max_task_retries=3, retry_exceptions=True)
    def flaky(self):
        self.tries += 1
        if self.tries <= 2:
            raise ValueError("not yet")
        return self.tries
    def fails_twice(self):
        self.fails_left -= 1
        if self.fails_left >= 0:
            raise KeyError("once more")
        return "done"
    def value(self):
        return "alive"

c = Child.remote()
a, b = c.pair.remote()
one = c.pair.options(num_returns=1).remote()
try:
    ray.get(c.fails_twice.remote())
    plain = "no error"
except KeyError:
    plain = "raised"
retried = ray.get(c.fails_twice.options(max_task_retries=2, retry_exceptions=[KeyError]).remote())
out = {
    "pair": ray.get([a, b]), "one": ray.get(one), "flaky": ray.get(c.flaky.remote()),
    "plain": plain, "retried": retried,
    "inherited": ray.get([c.grand.remote(), c.static_double.remote(4), c.from_class.remote(1),
                          c.constants.remote()]),
    "class_attr": Child.X + Child.GRANDPARENT,
    "ready": ray.get(c.__ray_ready__.remote()),
    "call": ray.get(c.__ray_call__.remote(lambda self, k: self.tries + k, 10)),
}
c.__ray_terminate__.remote()
try:
    ray.get(c.value.remote(), timeout=30)
    out["terminated"] = False
except ray.exceptions.ActorDiedError:
    out["terminated"] = True
try:
    @ray.method(num_returns=-1)
    def bad(self):
        pass
    out["bad_option"] = None
except ValueError as e:
    out["bad_option"] = str(e)
print("RESULT " + json.dumps(out))
""", timeout=100)
    assert world.returncode == 0, world
    out = last_json(world.stdout)
    assert out["pair"] == [1, 2] and out["one"] == [1, 2] and out["flaky"] == 3, out
    assert out["plain"] == "raised" and out["retried"] == "done", out
    assert out["inherited"] == ["grand", 8, 4, 10] and out["class_attr"] == 5, out
    assert out["ready"] is True and out["call"] == 13 and out["terminated"] is True, out
    assert out["bad_option"] and "num_returns" in out["bad_option"], out
