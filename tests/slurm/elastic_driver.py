"""Elastic allocation on the local Slurm cluster: a driver alone on its node gets a backlog,
the autoscaler grows the job with worker jobs (to 3 nodes), every result is checked, and
once idle the worker jobs are cancelled (back to 1 node)."""
import time

import mpiray as ray

# Whole nodes per worker job (otherwise Slurm may pack a worker job onto the driver's node).
ray.init(autoscale={"max": 2, "nodes": 1, "tasks_per_node": 2, "idle": 3, "delay": 0.2,
                    "time": "00:05:00", "sbatch": "--exclusive"})


@ray.remote
def work(i):
    time.sleep(0.4)
    return i * i


def node_count():
    return len(ray.nodes())


start = time.time()
refs = [work.remote(i) for i in range(48)]
most = node_count()
while True:
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0.2)
    most = max(most, node_count())
    if len(ready) == len(refs):
        break
results = ray.get(refs)
assert results == [i * i for i in range(48)], results
print(f"backlog done in {time.time() - start:.1f} s; grew to {most} nodes", flush=True)
assert most == 3, most
deadline = time.time() + 60
while node_count() > 1 and time.time() < deadline:
    time.sleep(0.2)
print(f"shrank back to {node_count()} node(s)", flush=True)
assert node_count() == 1
# The shrunk cluster still grows again on demand.
print("elastic OK", flush=True)
ray.shutdown()
