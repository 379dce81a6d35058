"""A Python driver that ends badly on purpose, for the exit-status tests under srun:
`driver_exit.py exit N` calls sys.exit(N), `driver_exit.py raise` raises, both while tasks run
on every worker and an object sits in shared memory."""
import sys
import time

import numpy as np

import mpiray as ray

ray.init()


@ray.remote
def long_task():
    time.sleep(120)


refs = [long_task.remote() for _ in range(3)]
big = ray.put(np.ones(1_000_000))
time.sleep(0.3)
print("SUBMITTED", flush=True)
if sys.argv[1] == "exit":
    sys.exit(int(sys.argv[2]))
raise RuntimeError("driver failed on purpose")
