"""Monte-Carlo estimate of pi with many sampling tasks.

    python monte_carlo_pi.py [tasks] [samples_per_task]
"""
import math
import sys

import numpy as np

import mpiray as ray


@ray.remote
def sample(n, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.random(n), rng.random(n)
    return int(np.count_nonzero(x * x + y * y <= 1.0))


if __name__ == "__main__":
    tasks = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    per_task = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    ray.init()
    inside = sum(ray.get([sample.remote(per_task, seed) for seed in range(tasks)]))
    pi = 4.0 * inside / (tasks * per_task)
    print(f"pi ~= {pi:.6f} from {tasks * per_task} samples (error {abs(pi - math.pi):.2e})")
    ray.shutdown()
    sys.exit(0 if abs(pi - math.pi) < 0.01 else 1)
