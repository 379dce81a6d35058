"""A parameter sweep with actors: each actor keeps a (simulated) model in memory and
evaluates the parameter sets it is given; the driver keeps the best result.

    python parameter_sweep.py [actors] [points]
"""
import itertools
import sys

import numpy as np

import mpiray as ray


@ray.remote
class Evaluator:
    def __init__(self, seed):
        rng = np.random.default_rng(seed)
        self.data = rng.normal(size=(2000, 8))  # stays in the actor between calls
        self.target = self.data @ np.linspace(1, 2, 8) + 0.1 * rng.normal(size=2000)
        self.evaluated = 0

    def score(self, alpha, scale):
        # Ridge regression with regularisation alpha on scaled features: lower error is better.
        x = self.data * scale
        w = np.linalg.solve(x.T @ x + alpha * np.eye(x.shape[1]), x.T @ self.target)
        self.evaluated += 1
        return float(np.mean((x @ w - self.target) ** 2)), alpha, scale

    def count(self):
        return self.evaluated


if __name__ == "__main__":
    n_actors = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    points = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    ray.init()
    actors = [Evaluator.remote(seed=0) for _ in range(n_actors)]
    grid = list(itertools.product(np.logspace(-3, 2, points), np.linspace(0.5, 2.0, points)))
    refs = [actors[i % n_actors].score.remote(a, s) for i, (a, s) in enumerate(grid)]
    ready, remaining = [], refs
    best = (float("inf"), None, None)
    while remaining:  # consume results as they arrive
        done, remaining = ray.wait(remaining, num_returns=min(8, len(remaining)))
        for err, alpha, scale in ray.get(done):
            best = min(best, (err, alpha, scale))
    counts = ray.get([a.count.remote() for a in actors])
    print(f"evaluated {sum(counts)} points on {n_actors} actors {counts}")
    print(f"best: mse={best[0]:.5f} alpha={best[1]:.4g} scale={best[2]:.3g}")
    ray.shutdown()
    sys.exit(0 if sum(counts) == len(grid) else 1)
