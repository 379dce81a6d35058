"""A driver that blocks in one mpiray call until Ctrl-C (tests/python/test_ctrl_c.py and
tests/slurm's srun Ctrl-C test run it as a script, so its remote functions live in __main__).

    python ctrl_c_driver.py <call> [raise|continue]

<call>: get, wait, generator, await, actor_creation, queue_get, pool_map, placement_group.
It prints "READY <pid>" once the work it waits for is running, then blocks in <call>. On
KeyboardInterrupt it prints "KeyboardInterrupt at <time.time()>", then re-raises it ("raise",
the default) or shows that mpiray still works and exits 0 ("continue").
"""
import asyncio
import os
import sys
import time

import mpiray as ray
from mpiray.util.multiprocessing import Pool
from mpiray.util.placement_group import placement_group
from mpiray.util.queue import Queue

LONG = 120  # seconds: far longer than any test waits


@ray.remote
def slow(x):
    time.sleep(LONG)
    return x


@ray.remote
def quick(x):
    return x + 1


@ray.remote(num_returns="streaming")
def items():
    yield 0
    time.sleep(LONG)
    yield 1


@ray.remote
class SlowToStart:
    def __init__(self):
        time.sleep(LONG)

    def ping(self):
        return "pong"


def sleep_and_return(x):
    time.sleep(LONG)
    return x


def announce():
    print(f"READY {os.getpid()}", flush=True)


def blocked_call(call):
    """Start the work, then return the function that blocks on it."""
    if call == "get":
        ref = slow.remote(1)
        return lambda: ray.get(ref)
    if call == "wait":
        refs = [slow.remote(1), slow.remote(2)]
        return lambda: ray.wait(refs, num_returns=2)
    if call == "generator":
        gen = items.remote()
        assert ray.get(next(gen)) == 0

        def rest():
            for ref in gen:
                ray.get(ref)
        return rest
    if call == "await":
        ref = slow.remote(1)

        async def main():
            # Ready once the loop runs (asyncio.run turns a Ctrl-C during its own start-up
            # into CancelledError rather than KeyboardInterrupt).
            await asyncio.sleep(0)
            announce()
            return await ref
        return lambda: asyncio.run(main())
    if call == "actor_creation":
        actor = SlowToStart.remote()
        return lambda: ray.get(actor.ping.remote())
    if call == "queue_get":
        q = Queue()
        return lambda: q.get()
    if call == "pool_map":
        pool = Pool(1)
        return lambda: pool.map(sleep_and_return, [1, 2])
    if call == "placement_group":
        # A first group holds every CPU, so the second waits for resources.
        cpus = int(ray.cluster_resources().get("CPU", 1))
        holder = placement_group([{"CPU": 1}] * cpus)
        ray.get(holder.ready())
        pg = placement_group([{"CPU": 1}])
        return lambda: ray.get(pg.ready())
    raise SystemExit(f"unknown call {call!r}")


def main():
    call = sys.argv[1]
    after = sys.argv[2] if len(sys.argv) > 2 else "raise"
    ray.init()
    block = blocked_call(call)
    time.sleep(0.3)  # the work is running on a worker
    if call != "await":
        announce()
    try:
        block()
    except KeyboardInterrupt:
        print(f"KeyboardInterrupt at {time.time():.6f}", flush=True)
        if after != "continue":
            raise
    else:
        print("the call returned without an interrupt", flush=True)
        sys.exit(3)
    # The program caught it: mpiray goes on working.
    assert ray.get(quick.remote(41)) == 42
    ready, _ = ray.wait([quick.remote(1)], timeout=30)
    assert len(ready) == 1
    print("mpiray still works after the interrupt", flush=True)
    ray.shutdown()


if __name__ == "__main__":
    main()
