"""The scale envelope of issue 5, next to Ray's published single-node numbers
(https://docs.ray.io/ ... "Scalability envelope": 1M queued tasks 184 s, 10k args 17.2 s,
3,000 returns 5.7 s, 10k gets 23.5 s). Prints JSON; each item is timed end to end.

    python -m mpiray.bench_scale                       # the single-driver items
    python -m mpiray.bench_scale --tasks 1000000       # with 1M queued tasks (about a minute)
    scripts/mpirun -n 64 python -m mpiray.bench_scale --actors 10000 --only actors
    MPIRAY_RANKS_PER_NODE=1 scripts/mpirun -n 8 python -m mpiray.bench_scale --only broadcast
"""

import argparse
import json
import os
import sys
import time

import numpy as np


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m mpiray.bench_scale")
    p.add_argument("--tasks", type=int, default=100000, help="tasks queued at once")
    p.add_argument("--actors", type=int, default=0, help="actors to create (0: skip)")
    p.add_argument("--only", default="", help="comma list: queued,args,returns,get,containing,actors,broadcast")
    a = p.parse_args(argv)
    import mpiray as ray
    only = set(filter(None, a.only.split(",")))

    def want(name):
        return not only or name in only

    ray.init()
    out = {"cores": os.cpu_count(), "workers": sum(len(n["Workers"]) for n in ray.nodes())}

    @ray.remote
    def noop(*args):
        return 0

    def timed(name, fn):
        t0 = time.perf_counter()
        check = fn()
        out[name + "_s"] = round(time.perf_counter() - t0, 3)
        if check is not None:
            out[name + "_check"] = check
        print(f"  {name}: {out[name + '_s']} s", file=sys.stderr, flush=True)

    if want("queued"):
        def queued():
            refs = [noop.remote() for _ in range(a.tasks)]
            return sum(ray.get(refs)) == 0 and len(refs) == a.tasks
        out["queued_tasks"] = a.tasks
        timed("queued_tasks", queued)
    if want("args"):
        refs = [ray.put(i) for i in range(10000)]

        @ray.remote
        def count(*xs):
            return len(xs), sum(xs)

        timed("args_10k", lambda: ray.get(count.remote(*refs)) == (10000, sum(range(10000))))
    if want("returns"):
        @ray.remote(num_returns=3000)
        def many():
            return list(range(3000))

        timed("returns_3000", lambda: ray.get(many.remote()) == list(range(3000)))
    if want("get"):
        def get_10k():
            refs = [ray.put(i) for i in range(10000)]
            return ray.get(refs) == list(range(10000))
        timed("get_10k_refs", get_10k)
    if want("containing"):
        @ray.remote
        def container():
            return [ray.put(i) for i in range(10000)]

        def containing():
            inner = ray.get(container.remote())
            return len(inner) == 10000 and ray.get(inner[-1]) == 9999
        timed("object_containing_10k_refs", containing)
    if want("actors") and a.actors:
        @ray.remote(num_cpus=0)
        class Tiny:
            def ping(self):
                return 1

        def actors():
            hs = [Tiny.remote() for _ in range(a.actors)]
            ok = sum(ray.get([h.ping.remote() for h in hs])) == a.actors
            for h in hs:
                ray.kill(h)
            return ok
        out["actors"] = a.actors
        timed("actors", actors)
    if want("broadcast"):
        nodes = [n["NodeID"] for n in ray.nodes() if n["Workers"]]
        from mpiray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        @ray.remote
        def touch(x):
            return int(x[::1 << 20].sum())

        def broadcast():
            big = ray.put(np.ones(1 << 27, dtype=np.int64))   # 1 GiB
            got = ray.get([touch.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote(big)
                           for n in nodes])
            return all(g == 128 for g in got)
        out["broadcast_nodes"] = len(nodes)
        timed("broadcast_1gib", broadcast)
    print(json.dumps(out, indent=2))
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
