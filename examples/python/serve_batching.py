"""A model served with mpiray.serve (Ray Serve's API): requests from many callers, over HTTP
and through handles, are batched into one matrix product per batch, on two replicas.

    python examples/python/serve_batching.py                  # local workers
    scripts/mpirun -n 4 python examples/python/serve_batching.py
    srun --mpi=pmix python examples/python/serve_batching.py  # inside a Slurm allocation
    SERVE_PORT=8123 python examples/python/serve_batching.py --forever   # keep serving

Over HTTP: curl -d '{"x": [1,2,3,4,5,6,7,8]}' http://127.0.0.1:8000/linear
"""
import asyncio
import concurrent.futures
import json
import os
import sys
import urllib.request

import numpy as np

import mpiray as ray                 # was: import ray
from mpiray import serve             # was: from ray import serve


@serve.deployment(num_replicas=2, max_ongoing_requests=32,
                  ray_actor_options={"num_cpus": 0.5})
class LinearModel:
    """y = W x + b for one feature vector per request; W and b come from user_config, so a
    new model is rolled out with reconfigure (no replica restart)."""

    def __init__(self, dim):
        self.dim = dim
        self.batch_sizes = []

    def reconfigure(self, config):
        rng = np.random.default_rng(config["seed"])
        self.w = rng.standard_normal((self.dim, self.dim))
        self.b = rng.standard_normal(self.dim)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.02)
    async def predict(self, xs):
        self.batch_sizes.append(len(xs))
        ys = np.stack(xs) @ self.w.T + self.b     # one product for the whole batch
        return list(ys)

    async def __call__(self, request):            # HTTP: a Starlette Request
        x = np.asarray((await request.json())["x"], dtype=float)
        return {"y": (await self.predict(x)).tolist()}

    def stats(self):
        return serve.get_replica_context().replica_tag, self.batch_sizes


def expected(seed, dim, x):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((dim, dim))
    b = rng.standard_normal(dim)
    return w @ x + b


async def query(handle, xs):
    return await asyncio.gather(*[handle.predict.remote(x) for x in xs])


def post(port, x):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/linear",
                                 data=json.dumps({"x": list(x)}).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return np.asarray(json.loads(r.read())["y"])


def main():
    ray.init()
    port = int(os.environ.get("SERVE_PORT") or 8000)
    serve.start(http_options={"port": port})      # loopback only (http_options host to widen)
    dim = 8
    handle = serve.run(LinearModel.options(user_config={"seed": 1}).bind(dim), name="linear",
                       route_prefix="/linear")
    xs = [np.full(dim, i, dtype=float) for i in range(128)]
    ys = asyncio.run(query(handle, xs))
    ok = all(np.allclose(y, expected(1, dim, x)) for x, y in zip(xs, ys))

    # the same model over HTTP, 32 clients at once: their requests share batches too
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        http_ys = list(pool.map(lambda x: post(port, x), xs[:64]))
    ok = ok and all(np.allclose(y, expected(1, dim, x)) for x, y in zip(xs, http_ys))
    print(f"HTTP: {len(http_ys)} answers from http://127.0.0.1:{port}/linear")

    # roll out new weights on the live replicas
    handle = serve.run(LinearModel.options(user_config={"seed": 2}).bind(dim), name="linear")
    ys2 = asyncio.run(query(handle, xs[:16]))
    ok = ok and all(np.allclose(y, expected(2, dim, x)) for x, y in zip(xs, ys2))

    per_replica = dict(handle.stats.remote().result() for _ in range(20))
    sizes = [s for batches in per_replica.values() for s in batches]
    print(f"{sum(sizes)} requests in {len(sizes)} batches on {len(per_replica)} replicas "
          f"(largest {max(sizes)}, mean {sum(sizes) / len(sizes):.1f})")
    ok = ok and sum(sizes) == len(xs) + 64 + 16 and max(sizes) > 1
    print(serve.status().applications["linear"].status)
    if "--forever" in sys.argv:
        print(f"serving on http://127.0.0.1:{port}/linear until Ctrl-C")
        try:
            while True:
                asyncio.run(asyncio.sleep(3600))
        except KeyboardInterrupt:
            pass
    serve.shutdown()
    if not ok:
        print("serve example FAILED: wrong results")
        sys.exit(1)
    print("serve batching example OK")


if __name__ == "__main__":
    main()
