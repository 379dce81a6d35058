"""Serve on the local Slurm cluster with the autoscaler on: the driver starts alone on its node
(no CPUs, no workers), so the controller and the replicas (num_cpus=1 each) do not fit;
pending actors are demand for the autoscaler, which submits worker jobs; serve.run returns
once the replicas run on the worker jobs' nodes, HTTP requests reach them, and after
serve.shutdown the idle worker jobs are cancelled (back to 1 node).

Run as: srun -N 1 -n 1 python3 serve_elastic.py (the CTest test slurm/serve_elastic)."""
import json
import os
import threading
import time
import urllib.request

import mpiray as ray
from mpiray import serve

# Whole nodes per worker job (otherwise Slurm may pack a worker job onto the driver's node).
ray.init(autoscale={"max": 2, "nodes": 1, "tasks_per_node": 2, "idle": 3, "delay": 0.2,
                    "time": "00:05:00", "sbatch": "--exclusive"})


@serve.deployment(num_replicas=3, ray_actor_options={"num_cpus": 1})
class Where:
    def __call__(self, request):
        return {"node": os.environ.get("SLURMD_NODENAME", "?"), "pid": os.getpid()}


def node_count():
    return len([n for n in ray.nodes() if n.get("Alive", True)])


most = [node_count()]
done = threading.Event()


def watch():
    while not done.is_set():
        most[0] = max(most[0], node_count())
        time.sleep(0.2)


threading.Thread(target=watch, daemon=True).start()
try:
    driver_node = os.environ.get("SLURMD_NODENAME", "?")
    assert ray.cluster_resources().get("CPU", 0) == 0, ray.cluster_resources()
    start = time.time()
    serve.start(http_options={"port": 0})
    serve.run(Where.bind(), name="where", route_prefix="/where")
    print(f"3 replicas running after {time.time() - start:.1f} s; the job has {node_count()} "
          f"nodes", flush=True)
    st = serve.status().applications["where"]
    assert st.status == "RUNNING", st
    assert st.deployments["Where"].replica_states.get("RUNNING") == 3, st
    from mpiray.serve._private.http_proxy import get_proxy
    port = get_proxy().port
    seen = set()
    for _ in range(60):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/where", timeout=30) as r:
            body = json.loads(r.read())
        seen.add((body["node"], body["pid"]))
    nodes = {n for n, _ in seen}
    print(f"replicas answered from nodes {sorted(nodes)} (driver on {driver_node})", flush=True)
    assert len({p for _, p in seen}) == 3, seen          # every replica answered
    assert driver_node not in nodes, (driver_node, nodes)  # all on worker jobs' nodes
    assert most[0] >= 2, most[0]
    serve.shutdown()
    deadline = time.time() + 60
    while node_count() > 1 and time.time() < deadline:
        time.sleep(0.2)
    print(f"after serve.shutdown: {node_count()} node(s) (most {most[0]})", flush=True)
    assert node_count() == 1
    print("serve elastic OK", flush=True)
finally:
    done.set()
    ray.shutdown()
