"""Remote functions, options, get/put/wait/cancel, ObjectRef and cluster information on one
shared embedded cluster (``ray.init(num_cpus=2)``)."""

import asyncio
import os
import pickle
import time

import pytest

import mpiray as ray
from mpiray import exceptions as rex
from conftest import wait_for

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("ray_cluster")]


# ------------------------------------------------------------------ helpers (remote)

@ray.remote
def inc(x):
    return x + 1


@ray.remote
def add(a, b=0, *, c=0):
    return a + b + c


@ray.remote
def wait_file(path, value=None, limit=60.0):
    """Blocks (holding its CPU) until ``path`` exists."""
    deadline = time.time() + limit
    while not os.path.exists(path):
        if time.time() > deadline:
            raise TimeoutError(path)
        time.sleep(0.01)
    return value


@ray.remote
def sleep_return(t, value):
    time.sleep(t)
    return value


@pytest.fixture
def gate(tmp_path):
    """A file-based gate: tasks wait_file(gate.path) block until gate.open()."""
    class Gate:
        path = str(tmp_path / "gate")

        def open(self):
            with open(self.path, "w"):
                pass
    g = Gate()
    yield g
    g.open()  # never leave blocked tasks behind


# ------------------------------------------------------------------ remote functions

def test_remote_function_args_kwargs_and_refs():
    assert ray.get(inc.remote(1)) == 2
    assert ray.get(add.remote(1, 2, c=3)) == 6
    assert ray.get(add.remote(1, b=10)) == 11
    # Refs as top-level arguments are resolved before the call, also as keywords: a DAG.
    r = add.remote(inc.remote(1), b=inc.remote(2), c=ray.put(100))
    assert ray.get(r) == 2 + 3 + 100
    chain = ray.put(0)
    for _ in range(10):
        chain = inc.remote(chain)
    assert ray.get(chain) == 10


def test_remote_decorator_with_options():
    @ray.remote(num_returns=2, num_cpus=1, max_retries=0, name="pair_task")
    def pair(x):
        return x, -x

    a, b = pair.remote(3)
    assert isinstance(a, ray.ObjectRef) and isinstance(b, ray.ObjectRef)
    assert ray.get([a, b]) == [3, -3]


def test_options_num_returns():
    @ray.remote
    def triple(x):
        return x, x + 1, x + 2

    refs = triple.options(num_returns=3).remote(1)
    assert isinstance(refs, list) and len(refs) == 3
    assert ray.get(refs) == [1, 2, 3]
    # The original function is unchanged by .options().
    assert ray.get(triple.remote(1)) == (1, 2, 3)

    @ray.remote(num_returns=0)
    def nothing():
        return None

    assert nothing.remote() is None
    with pytest.raises(ValueError, match="num_returns"):
        ray.get(triple.options(num_returns=2).remote(0)[0])
    with pytest.raises(ValueError):
        triple.options(num_returns=-1).remote(0)


def test_options_num_cpus_holds_resources(gate):
    total = ray.cluster_resources()
    assert total["CPU"] == 2.0
    big = wait_file.options(num_cpus=2).remote(gate.path, "big")
    assert wait_for(lambda: ray.available_resources().get("CPU", 0.0) == 0.0, timeout=10)
    # A second task needing a CPU cannot start while the 2-CPU task runs.
    other = inc.remote(1)
    ready, not_ready = ray.wait([other], timeout=0.3)
    assert ready == [] and not_ready == [other]
    gate.open()
    assert ray.get([big, other]) == ["big", 2]
    assert wait_for(lambda: ray.available_resources() == total, timeout=10), ray.available_resources()


def test_options_num_gpus_and_resources_on_a_cpu_cluster():
    # This cluster has no GPU and no custom resource: such requests are infeasible at once.
    assert "GPU" not in ray.cluster_resources()
    with pytest.raises(rex.InfeasibleError, match="GPU"):
        inc.options(num_gpus=1).remote(1)
    with pytest.raises(ValueError, match="fpga"):
        inc.options(resources={"fpga": 1}).remote(1)
    assert ray.get(inc.options(num_gpus=0, resources={}).remote(1)) == 2
    # Per-node resources exist, as Ray's node:<ip>.
    node_key = [k for k in ray.cluster_resources() if k.startswith("node:")]
    assert len(node_key) == 1
    assert ray.get(inc.options(resources={node_key[0]: 0.01}).remote(5)) == 6
    with pytest.raises(ValueError, match="num_cpus"):
        inc.options(resources={"CPU": 1}).remote(1)


def test_options_name_shows_in_worker_output(capfd):
    @ray.remote
    def speak(token):
        print(f"speaking {token}")
        return token

    assert ray.get(speak.options(name="renamed_task").remote("tok-1")) == "tok-1"
    seen = []

    def arrived():
        seen.append(capfd.readouterr().out)
        return "speaking tok-1" in "".join(seen)

    assert wait_for(arrived, timeout=5)
    line = [l for l in "".join(seen).splitlines() if "speaking tok-1" in l][0]
    assert line.startswith("(renamed_task pid="), line
    assert ", rank=" in line


def _flaky_counter(path):
    with open(path) as f:
        return int(f.read())


@ray.remote
def flaky(path, failures):
    """Fails (ValueError) the first ``failures`` times, counting attempts in ``path``."""
    count = int(open(path).read()) if os.path.exists(path) else 0
    with open(path, "w") as f:
        f.write(str(count + 1))
    if count < failures:
        raise ValueError(f"attempt {count} fails")
    return count


def test_retry_exceptions_true(tmp_path):
    path = str(tmp_path / "true")
    assert ray.get(flaky.options(max_retries=3, retry_exceptions=True).remote(path, 2)) == 2
    assert _flaky_counter(path) == 3


def test_retry_exceptions_list_of_types(tmp_path):
    ok = str(tmp_path / "list")
    assert ray.get(flaky.options(max_retries=3, retry_exceptions=[ValueError]).remote(ok, 2)) == 2
    assert _flaky_counter(ok) == 3
    other = str(tmp_path / "other")
    with pytest.raises(ValueError, match="attempt 0 fails"):
        ray.get(flaky.options(max_retries=3, retry_exceptions=[KeyError]).remote(other, 2))
    assert _flaky_counter(other) == 1  # a ValueError is not in the list: no retry


def test_max_retries_bounds_exception_retries(tmp_path):
    path = str(tmp_path / "bounded")
    with pytest.raises(ValueError, match="attempt 1 fails"):
        ray.get(flaky.options(max_retries=1, retry_exceptions=True).remote(path, 5))
    assert _flaky_counter(path) == 2  # the first attempt and one retry


def test_application_errors_not_retried_by_default(tmp_path):
    path = str(tmp_path / "default")
    with pytest.raises(ValueError):
        ray.get(flaky.remote(path, 1))
    assert _flaky_counter(path) == 1


def test_calling_remote_function_directly_raises():
    with pytest.raises(TypeError, match=r"inc\.remote\(\)"):
        inc(1)

    def undecorated(x):
        return x

    with pytest.raises(AttributeError):
        undecorated.remote(1)


def test_invalid_task_options():
    with pytest.raises(ValueError, match="num_cpu"):
        inc.options(num_cpu=1)
    with pytest.raises(ValueError):
        ray.remote(num_cpu=1)(lambda: None)
    with pytest.raises(TypeError):
        ray.remote(42)


# ------------------------------------------------------------------ get / put

def test_get_single_list_and_tuple():
    refs = [inc.remote(i) for i in range(5)]
    assert ray.get(refs[0]) == 1
    assert ray.get(refs) == [1, 2, 3, 4, 5]
    assert ray.get(tuple(refs)) == [1, 2, 3, 4, 5]
    assert ray.get([]) == []


def test_get_timeout(gate):
    r = wait_file.remote(gate.path, "late")
    start = time.monotonic()
    with pytest.raises(rex.GetTimeoutError) as info:
        ray.get(r, timeout=0.5)
    elapsed = time.monotonic() - start
    assert 0.45 <= elapsed < 5, elapsed
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, rex.RayError)
    with pytest.raises(TimeoutError):
        ray.get([inc.remote(1), r], timeout=0.1)
    with pytest.raises(rex.GetTimeoutError):
        ray.get(r, timeout=0)
    gate.open()
    assert ray.get(r, timeout=30) == "late"


def test_get_timeout_message_reports_requested_timeout(gate):
    r = wait_file.remote(gate.path, "late")
    with pytest.raises(rex.GetTimeoutError) as info:
        ray.get(r, timeout=0.5)
    import re
    m = re.search(r"after (\d+) ms", str(info.value))
    assert m is None or int(m.group(1)) >= 500, str(info.value)


def test_get_rejects_non_refs():
    with pytest.raises(ValueError, match="ObjectRef"):
        ray.get(5)
    with pytest.raises(ValueError):
        ray.get("not a ref")
    with pytest.raises(TypeError, match="ObjectRef"):
        ray.get([ray.put(1), 2])
    with pytest.raises(ValueError):
        ray.get(ray.put(1), timeout=-1)


def test_put_round_trip():
    values = [None, 0, -1, 2 ** 70, 3.5, "text", b"bytes", [1, [2]], {"a": (1, 2)}, {1, 2},
              bytearray(b"xy"), ValueError("as a value")]
    refs = [ray.put(v) for v in values]
    got = ray.get(refs)
    for v, g in zip(values[:-1], got[:-1]):
        assert g == v and type(g) is type(v)
    assert isinstance(got[-1], ValueError) and got[-1].args == ("as a value",)
    # put values are usable as task arguments.
    assert ray.get(inc.remote(ray.put(41))) == 42
    with pytest.raises(TypeError, match="ObjectRef"):
        ray.put(ray.put(1))


# ------------------------------------------------------------------ wait

def test_wait_semantics(gate):
    fast0, blocked, fast2 = inc.remote(0), wait_file.remote(gate.path, "b"), inc.remote(2)
    refs = [fast0, blocked, fast2]
    assert wait_for(lambda: ray.wait([fast0, fast2], num_returns=2, timeout=0.05)[0] == [fast0, fast2])
    # num_returns=1: exactly one ready ref, the rest in not_ready.
    ready, not_ready = ray.wait(refs, num_returns=1)
    assert len(ready) == 1 and ready[0] in (fast0, fast2)
    assert len(not_ready) == 2 and set(ready) | set(not_ready) == set(refs)
    # timeout: whatever is ready, in input order.
    start = time.monotonic()
    ready, not_ready = ray.wait(refs, num_returns=3, timeout=0.4)
    assert 0.35 <= time.monotonic() - start < 5
    assert ready == [fast0, fast2] and not_ready == [blocked]
    ready, not_ready = ray.wait(refs, num_returns=2, timeout=0, fetch_local=False)
    assert ready == [fast0, fast2] and not_ready == [blocked]
    gate.open()
    ready, not_ready = ray.wait(refs, num_returns=3, timeout=30)
    assert ready == refs and not_ready == []
    ready, not_ready = ray.wait(list(reversed(refs)), num_returns=2)
    assert ready == [fast2, blocked] and not_ready == [fast0]


def test_wait_argument_errors():
    r = ray.put(1)
    with pytest.raises(TypeError):
        ray.wait(r)
    with pytest.raises(ValueError):
        ray.wait([r, r])
    with pytest.raises(ValueError):
        ray.wait([r], num_returns=2)
    with pytest.raises(ValueError):
        ray.wait([r], num_returns=0)
    with pytest.raises(TypeError):
        ray.wait([r, 3])


def test_task_of_a_deleted_remote_function_still_runs(gate):
    """Tasks carry only their function's export id: the export lives to the session's end, so
    a task queued when its RemoteFunction is deleted (and collected) still loads it."""
    import gc

    def make():
        @ray.remote
        def plus_one(x):
            return x + 1
        return plus_one

    blockers = [wait_file.remote(gate.path, i) for i in range(2)]
    assert wait_for(lambda: ray.available_resources().get("CPU", 0.0) == 0.0, timeout=10)
    f = make()
    queued = f.remote(41)  # waits behind the blockers
    del f
    gc.collect()
    gate.open()
    assert ray.get(queued, timeout=30) == 42
    assert ray.get(blockers, timeout=30) == [0, 1]


# ------------------------------------------------------------------ cancel

def test_cancel_queued_task(gate):
    blockers = [wait_file.remote(gate.path, i) for i in range(2)]
    assert wait_for(lambda: ray.available_resources().get("CPU", 0.0) == 0.0, timeout=10)
    queued = inc.remote(1)
    kept = inc.remote(2)
    time.sleep(0.1)
    ray.cancel(queued)
    gate.open()
    with pytest.raises(rex.TaskCancelledError):
        ray.get(queued, timeout=30)
    assert ray.get(kept, timeout=30) == 3
    assert ray.get(blockers, timeout=30) == [0, 1]
    with pytest.raises(TypeError):
        ray.cancel("not a ref")


# ------------------------------------------------------------------ cluster information

def test_nodes_and_resources():
    nodes = ray.nodes()
    assert len(nodes) == 1
    node = nodes[0]
    assert node["Alive"] is True and node["alive"] is True
    assert len(node["NodeID"]) == 32
    assert len(node["Workers"]) == 2
    assert node["Resources"]["CPU"] == 2.0
    total = ray.cluster_resources()
    assert total["CPU"] == 2.0 and total.get("memory", 0) > 0
    assert node["Resources"] == total
    assert wait_for(lambda: ray.available_resources() == total, timeout=10)


def test_available_resources_return_to_total_after_work(gate):
    total = ray.cluster_resources()
    refs = [wait_file.remote(gate.path, i) for i in range(2)]
    assert wait_for(lambda: ray.available_resources().get("CPU", 0.0) == 0.0, timeout=10)
    gate.open()
    more = [sleep_return.remote(0.01, i) for i in range(20)]
    assert ray.get(refs + more) == [0, 1] + list(range(20))
    assert wait_for(lambda: ray.available_resources() == total, timeout=10), ray.available_resources()


def test_runtime_context_in_driver_and_task():
    ctx = ray.get_runtime_context()
    assert ctx.rank == 0 and ctx.get_rank() == 0
    assert ctx.task_id is None and ctx.actor_id is None and ctx.get_actor_id() is None
    # As Ray: get_*() give hex strings, the older properties id objects (with a warning).
    assert ctx.get_job_id() and ctx.get_job_id() == ctx.job_id.hex()
    assert ctx.get_node_id() == ctx.node_id.hex() == ray.nodes()[0]["NodeID"]

    @ray.remote
    def inside():
        c = ray.get_runtime_context()
        return dict(job_id=c.get_job_id(), node_id=c.get_node_id(), task_id=c.get_task_id(),
                    actor_id=c.actor_id, rank=c.rank, namespace=c.namespace, pid=os.getpid())

    info = ray.get(inside.remote())
    assert info["job_id"] == ctx.get_job_id()
    assert info["node_id"] == ctx.get_node_id()
    assert info["task_id"] is not None
    assert info["actor_id"] is None
    assert info["rank"] >= 1
    assert info["namespace"] == ctx.namespace
    assert info["pid"] != os.getpid()
    other = ray.get(inside.remote())
    assert other["task_id"] != info["task_id"]


# ------------------------------------------------------------------ ObjectRef

def test_object_ref_hash_and_equality():
    a = ray.put(1)
    b = ray.put(1)
    assert a != b and a == a
    same = pickle.loads(pickle.dumps(a))
    assert same == a and hash(same) == hash(a) and same is not a
    d = {a: "a", b: "b"}
    assert d[same] == "a"
    assert len({a, b, same}) == 2
    assert a != "not a ref" and a.hex() == same.hex() and len(a.binary()) == 16
    assert "ObjectRef(" in repr(a)


@ray.remote
def sum_refs(refs):
    assert all(isinstance(r, ray.ObjectRef) for r in refs)
    return sum(ray.get(refs))


@ray.remote
def sum_nested(box):
    return sum(ray.get(box["refs"])) + ray.get(box["one"])


def test_refs_nested_in_arguments_are_passed_as_refs():
    refs = [ray.put(i) for i in range(5)] + [inc.remote(9)]
    assert ray.get(sum_refs.remote(refs)) == sum(range(5)) + 10
    box = {"refs": refs[:2], "one": inc.remote(0)}
    assert ray.get(sum_nested.remote(box)) == 0 + 1 + 1


@ray.remote
def make_refs(n):
    return [ray.put(i * 10) for i in range(n)]


def test_refs_nested_in_return_values():
    inner = ray.get(make_refs.remote(3))
    assert all(isinstance(r, ray.ObjectRef) for r in inner)
    time.sleep(0.2)  # the creating task is long done
    assert ray.get(inner) == [0, 10, 20]
    assert ray.get(sum_refs.remote(inner)) == 30


def test_object_ref_is_awaitable():
    async def main():
        one = await inc.remote(1)
        both = await asyncio.gather(sleep_return.remote(0.1, "a"), sleep_return.remote(0.05, "b"))
        return one, both

    assert asyncio.run(main()) == (2, ["a", "b"])


def test_object_ref_await_raises_task_error():
    @ray.remote
    def fails():
        raise KeyError("async failure")

    async def main():
        await fails.remote()

    with pytest.raises(KeyError, match="async failure"):
        asyncio.run(main())


def test_object_ref_future():
    fut = sleep_return.remote(0.05, "done").future()
    assert fut.result(timeout=30) == "done"

    @ray.remote
    def fails():
        raise ValueError("future failure")

    fut = fails.remote().future()
    with pytest.raises(ValueError, match="future failure"):
        fut.result(timeout=30)
    assert isinstance(fut.exception(), rex.RayTaskError)
