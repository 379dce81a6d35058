"""Recursive remote functions defined in the user's script (issue 10): a function that calls
itself (`fib`, `factorial`), one defined inside a function, mutually recursive ones, and
recursion far deeper than the cluster has workers (blocked parents lend their CPU)."""

import pytest

from test_lifecycle import PRELUDE, last_json

pytestmark = pytest.mark.timeout(150)


def test_recursive_and_mutually_recursive_functions_in_main(run_script):
    world = run_script(PRELUDE + """
ray.init(num_cpus=3)

@ray.remote
def fib(n):
    if n < 2:
        return n
    return sum(ray.get([fib.remote(n - 1), fib.remote(n - 2)]))

def make_factorial():
    @ray.remote
    def fact(n):
        return 1 if n <= 1 else n * ray.get(fact.remote(n - 1))
    return fact

@ray.remote
def is_even(n):
    return True if n == 0 else ray.get(is_odd.remote(n - 1))

@ray.remote
def is_odd(n):
    return False if n == 0 else ray.get(is_even.remote(n - 1))

@ray.remote
class Tree:                          # an actor whose method starts recursive tasks
    def size(self, depth):
        return ray.get(nodes.remote(depth))

@ray.remote
def nodes(depth):
    return 1 if depth == 0 else 1 + sum(ray.get([nodes.remote(depth - 1) for _ in range(2)]))

t0 = time.monotonic()
small = [ray.get(fib.remote(10), timeout=60), ray.get(make_factorial().remote(10), timeout=60),
         ray.get(is_even.remote(9), timeout=60), ray.get(Tree.remote().size.remote(4), timeout=60)]
t1 = time.monotonic()
big = ray.get(fib.remote(15), timeout=100)   # ~2,000 tasks, hundreds blocked at once, 3 workers
print("RESULT " + json.dumps({"small": small, "big": big, "small_s": t1 - t0,
                              "big_s": time.monotonic() - t1}))
""", timeout=140)
    assert world.returncode == 0, world
    out = last_json(world.stdout)
    assert out["small"] == [55, 3628800, False, 31] and out["big"] == 610, world
    assert out["big_s"] < 60, world  # "fast": seconds here, not a crawl through timeouts


def test_recursive_function_passed_to_a_task_and_oversized_export(run_script):
    world = run_script(PRELUDE + """
import numpy as np
ray.init(num_cpus=2)

@ray.remote
def countdown(n):
    return 0 if n == 0 else ray.get(countdown.remote(n - 1))

@ray.remote
def call(f, n):                      # the remote function travels as an argument
    return ray.get(f.remote(n))

big = np.ones(20 * 2**20 // 8)       # 20 MiB captured by accident

@ray.remote
def captures():
    return big.sum()

try:
    captures.remote()
    oversized = None
except ValueError as e:
    oversized = str(e)
print("RESULT " + json.dumps({"call": ray.get(call.remote(countdown, 5), timeout=60),
                              "oversized": oversized}))
""", env={"MPIRAY_MAX_EXPORT_BYTES": str(10 * 2**20)}, timeout=120)
    assert world.returncode == 0, world
    out = last_json(world.stdout)
    assert out["call"] == 0, world
    assert out["oversized"] and "captures" in out["oversized"] and "too large" in out["oversized"], world
