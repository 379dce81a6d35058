"""ray.init() options, is_initialized, shutdown and re-initialisation in one process.

Each test starts and stops its own embedded cluster (``private_dirs`` gives it a private
session root / shm dir and checks that nothing is left afterwards)."""

import glob
import logging
import os
import shutil

import numpy as np
import pytest

import mpiray as ray
from mpiray import exceptions as rex
from conftest import wait_for

pytestmark = pytest.mark.timeout(120)


def test_not_initialized_before_init():
    assert not ray.is_initialized()
    ray.shutdown()  # a no-op without a cluster
    assert not ray.is_initialized()


def test_init_num_cpus_and_shutdown(private_dirs):
    ctx = ray.init(num_cpus=2)
    assert ray.is_initialized()
    assert isinstance(ctx, ray.RayContext)  # Ray's: the address information, a dict
    assert ctx.rank == 0
    assert ctx.task_id is None and ctx.actor_id is None
    nodes = ray.nodes()
    assert len(nodes) == 1 and nodes[0]["Alive"]
    assert len(nodes[0]["Workers"]) == 2  # one local worker per CPU
    assert ray.cluster_resources()["CPU"] == 2.0

    @ray.remote
    def pid():
        return os.getpid()

    pids = set(ray.get([pid.remote() for _ in range(8)]))
    assert os.getpid() not in pids and 1 <= len(pids) <= 2

    session_dir = ctx.get()["session_dir"]
    assert os.path.isdir(session_dir)
    ray.shutdown()
    assert not ray.is_initialized()
    assert not os.path.exists(session_dir)
    ray.shutdown()  # twice is fine
    private_dirs.assert_clean()


def test_init_after_shutdown_in_same_process(private_dirs):
    sessions = []
    for round_ in range(3):
        ctx = ray.init(num_cpus=1)
        sessions.append(ctx.get()["session_dir"])

        # Defined per round: a remote function exported in this cluster.
        @ray.remote
        def add(a, b):
            return a + b

        assert ray.get(add.remote(round_, 10)) == round_ + 10
        assert ray.get(ray.put([round_])) == [round_]
        ray.shutdown()
        assert not ray.is_initialized()
        private_dirs.assert_clean()
    assert len(set(sessions)) == 3


@ray.remote
def _module_level_square(x):
    return x * x


def test_remote_function_survives_reinit(private_dirs):
    ray.init(num_cpus=1)
    assert ray.get(_module_level_square.remote(3)) == 9
    ray.shutdown()
    ray.init(num_cpus=1)
    assert ray.get(_module_level_square.remote(4), timeout=30) == 16


def test_num_gpus_and_custom_resources(private_dirs):
    ray.init(num_cpus=2, num_gpus=1, resources={"licence": 2})
    total = ray.cluster_resources()
    assert total["CPU"] == 2.0
    assert total["GPU"] == 1.0
    assert total["licence"] == 2.0
    assert ray.nodes()[0]["Resources"]["GPU"] == 1.0

    @ray.remote(resources={"licence": 1})
    def licensed(x):
        return x + 1

    @ray.remote(num_gpus=1)
    def on_gpu():
        return "gpu"

    assert ray.get([licensed.remote(i) for i in range(4)]) == [1, 2, 3, 4]
    assert ray.get(on_gpu.remote()) == "gpu"
    assert ray.get(licensed.options(resources={"licence": 2}).remote(5)) == 6
    # Requests no node can ever satisfy fail at submission.
    with pytest.raises(rex.InfeasibleError):
        on_gpu.options(num_gpus=2).remote()
    with pytest.raises(ValueError, match="licence"):
        licensed.options(resources={"licence": 3}).remote(0)
    with pytest.raises(ValueError):
        licensed.options(resources={"no_such_resource": 1}).remote(0)
    assert ray.available_resources() == total


def test_object_store_memory(private_dirs):
    ray.init(num_cpus=1, object_store_memory=32 << 20)
    small = ray.put(np.ones(4 << 20, dtype=np.uint8))
    with pytest.raises(rex.ObjectStoreFullError, match="object store"):
        ray.put(np.zeros(64 << 20, dtype=np.uint8))

    @ray.remote
    def too_big():
        return np.zeros(64 << 20, dtype=np.uint8)

    with pytest.raises(rex.ObjectStoreFullError):
        ray.get(too_big.remote())
    # Beyond the capacity, objects nobody is reading spill to disk instead of failing ...
    spilled = [ray.put(np.full(8 << 20, i, dtype=np.uint8)) for i in range(8)]
    assert [int(ray.get(r)[12345]) for r in spilled] == list(range(8))
    del spilled
    # ... and when the store is full of objects in use (arrays read in place pin their
    # memory), new objects are written straight to disk (Ray's fallback allocation): no error,
    # every one readable while the others stay pinned.
    refs, views = [], []
    for i in range(8):
        refs.append(ray.put(np.full(8 << 20, i, dtype=np.uint8)))
        views.append(ray.get(refs[-1]))
    assert [int(v[777]) for v in views] == list(range(8))
    assert all(int(v.sum()) == i * (8 << 20) for i, v in enumerate(views))
    del refs, views
    # Freeing is asynchronous (the head tells the node to delete the copies): retry briefly.
    again = []

    def put_again():
        try:
            again.append(ray.put(np.ones(8 << 20, dtype=np.uint8)))
            return True
        except rex.ObjectStoreFullError:
            return False

    assert wait_for(put_again, timeout=5, interval=0.05)
    assert int(ray.get(again[0]).sum()) == 8 << 20
    assert int(ray.get(small).sum()) == 4 << 20


def test_namespace(private_dirs):
    ctx = ray.init(num_cpus=1, namespace="team-a")
    assert ctx.namespace == "team-a"
    assert ray.get_runtime_context().namespace == "team-a"

    @ray.remote
    def task_namespace():
        return ray.get_runtime_context().namespace

    @ray.remote
    class Named:
        def ping(self):
            return "pong"

    assert ray.get(task_namespace.remote()) == "team-a"
    a = Named.options(name="svc").remote()
    assert ray.get(a.ping.remote()) == "pong"
    assert ray.get_actor("svc") == a
    assert ray.get_actor("svc", namespace="team-a") == a
    with pytest.raises(ValueError, match="svc"):
        ray.get_actor("svc", namespace="team-b")
    b = Named.options(name="svc", namespace="team-b").remote()
    assert ray.get(ray.get_actor("svc", namespace="team-b").ping.remote()) == "pong"
    assert ray.get_actor("svc", namespace="team-b") == b != a


def test_default_namespace_is_anonymous_and_per_job(private_dirs):
    ns1 = ray.init(num_cpus=1).namespace
    ray.shutdown()
    ns2 = ray.init(num_cpus=1).namespace
    assert ns1 and ns2 and ns1 != ns2


def _log_levels(session_dir):
    levels = set()
    for path in glob.glob(os.path.join(session_dir, "logs", "*.log")):
        with open(path) as f:
            for line in f:
                parts = line.split("] [")
                if len(parts) > 1:
                    levels.add(parts[1])
    return levels


@pytest.mark.parametrize("level,expect_info", [
    (logging.ERROR, False), ("error", False), ("info", True), (logging.INFO, True)])
def test_logging_level(private_dirs, level, expect_info):
    ctx = ray.init(num_cpus=1, logging_level=level)

    @ray.remote
    def one():
        return 1

    assert ray.get(one.remote()) == 1
    levels = _log_levels(ctx.get()["session_dir"])
    assert ("info" in levels) == expect_info, levels


def test_logging_level_invalid(private_dirs):
    with pytest.raises(ValueError, match="log_level"):
        ray.init(num_cpus=1, logging_level="chatty")
    assert not ray.is_initialized()


def test_ignore_reinit_error(private_dirs):
    ctx = ray.init(num_cpus=1)
    session = ctx.get()["session_dir"]
    with pytest.raises(RuntimeError, match="ignore_reinit_error"):
        ray.init(num_cpus=1)
    assert ray.is_initialized()
    again = ray.init(num_cpus=4, ignore_reinit_error=True)
    assert again.get()["session_dir"] == session  # the running cluster, unchanged
    assert ray.cluster_resources()["CPU"] == 1.0


def test_invalid_init_option_lists_valid_ones(private_dirs):
    with pytest.raises(ValueError) as info:
        ray.init(num_cpu=2)
    msg = str(info.value)
    assert "num_cpu" in msg
    for valid in ("num_cpus", "num_gpus", "resources", "object_store_memory", "namespace"):
        assert valid in msg
    assert not ray.is_initialized()


def test_ray_only_init_options_are_accepted(private_dirs):
    ray.init(num_cpus=1, include_dashboard=False, configure_logging=False, runtime_env={})
    assert ray.is_initialized()


def test_worker_output_kept_in_session_logs(private_dirs):
    # log_to_driver=False: not on the console, but still in logs/worker-N.out.
    ctx = ray.init(num_cpus=1, log_to_driver=False)
    session_dir = ctx.get()["session_dir"]

    @ray.remote
    def chatty():
        for i in range(20):
            print(f"logged line {i}")
        return True

    assert ray.get(chatty.remote())

    def lines():
        text = ""
        for path in glob.glob(os.path.join(session_dir, "logs", "worker-*.out")):
            with open(path) as f:
                text += f.read()
        return text

    assert wait_for(lambda: "logged line 19" in lines(), timeout=5)
    text = lines()
    assert [f"logged line {i}" for i in range(20)] == [l for l in text.splitlines() if l.startswith("logged line")]


def test_keep_session_keeps_logs(private_dirs):
    ctx = ray.init(num_cpus=1, keep_session=True)
    session_dir = ctx.get()["session_dir"]

    @ray.remote
    def chatty():
        print("kept line")
        return 1

    try:
        assert ray.get(chatty.remote()) == 1
        ray.shutdown()
        outs = glob.glob(os.path.join(session_dir, "logs", "worker-*.out"))
        assert outs, f"{session_dir} is gone after shutdown"
        assert any("kept line" in open(p).read() for p in outs)
    finally:
        ray.shutdown()
        shutil.rmtree(session_dir, ignore_errors=True)
