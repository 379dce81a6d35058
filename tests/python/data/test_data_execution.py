"""The streaming executor: fusion, actor pools, back-pressure within the memory budget, early
stop, progress output, stats, and errors that carry the UDF's traceback and the block."""

import os
import time

import numpy as np
import pytest

import mpiray as ray
import mpiray.data as rd
from mpiray.data._internal import plan as P
from mpiray.data._internal.executor import ActorMapOp, TaskMapOp

pytestmark = pytest.mark.usefixtures("ray_cluster")


def _physical(ds):
    return P.to_physical(P.optimize(ds._plan), ds.context)


def _inc(b):
    return {"id": b["id"] + 1}


class Tag:
    def __init__(self):
        self.pid = os.getpid()
        self.calls = 0

    def __call__(self, b):
        self.calls += 1
        return {"id": b["id"], "pid": np.full(len(b["id"]), self.pid), "calls": np.full(len(b["id"]), self.calls)}


def test_fusion_of_reads_maps_and_actor_stages():
    ds = rd.range(100).map_batches(_inc).filter(lambda r: r["id"] % 2 == 0).map(lambda r: r)
    root = _physical(ds)
    assert isinstance(root, TaskMapOp) and root.inputs == []
    assert root.name == "ReadRange->MapBatches(_inc)->Filter(<lambda>)->Map(<lambda>)"
    a = rd.range(100).map_batches(_inc).map_batches(Tag, concurrency=2)
    root = _physical(a)
    assert isinstance(root, ActorMapOp) and root.name == "ReadRange->MapBatches(_inc)->MapBatches(Tag)"
    # An actor stage is not fused into the task stage after it; different resources split too.
    b = rd.range(10).map_batches(Tag, concurrency=1).map_batches(_inc)
    root = _physical(b)
    assert isinstance(root, TaskMapOp) and isinstance(root.inputs[0], ActorMapOp)
    c = rd.range(10).map_batches(_inc).map_batches(_inc, num_cpus=0.5)
    assert isinstance(_physical(c).inputs[0], TaskMapOp)
    # Names show up in stats(), as in Ray.
    m = ds.materialize()
    assert "Operator 1 ReadRange->MapBatches(_inc)->Filter(<lambda>)->Map(<lambda>): " in m.stats()


def test_actor_pool_constructs_each_class_once_per_actor():
    rows = rd.range(400, override_num_blocks=20).map_batches(Tag, concurrency=2).take_all()
    pids = {r["pid"] for r in rows}
    assert 1 <= len(pids) <= 2
    # Each actor counted its calls from 1 upward: one instance per actor, reused for every block.
    per_pid = {p: max(r["calls"] for r in rows if r["pid"] == p) for p in pids}
    assert sum(per_pid.values()) == 20


def test_back_pressure_keeps_blocks_within_the_budget():
    ctx = rd.DataContext.get_current()
    ctx.execution_options.resource_limits.object_store_memory = 24 << 20
    ds = rd.range_tensor(4000, shape=(1000,), override_num_blocks=40).map_batches(lambda b: {"data": b["data"] + 1})
    n = 0
    for b in ds.iter_batches(batch_size=100):
        n += len(b["data"])
        time.sleep(0.002)  # a slow consumer: the producers must wait for it
    assert n == 4000
    ex = ds._last_executor
    assert ex.budget == 24 << 20
    assert 0 < ex.peak_bytes <= ex.budget
    assert "Peak object store use" in ds.stats()


def test_a_slow_consumer_holds_the_producers_to_a_few_blocks_ahead():
    # The budget (default: half the store) would allow every block at once; a consumer that is
    # behind holds the reads to two blocks handed to it and not taken (plus those in flight),
    # so that a first pass does not fill the store with fresh pages.
    ds = rd.range_tensor(3200, shape=(1000,), override_num_blocks=32).map_batches(lambda b: {"data": b["data"] * 2})
    n = total = 0
    for b in ds.iter_batches(batch_size=None):
        n += len(b["data"])
        total += int(b["data"][:, 0].sum())
        time.sleep(0.03)  # a slow consumer
    assert n == 3200 and total == 2 * sum(range(3200))
    ex = ds._last_executor
    block = 100 * 1000 * 8
    in_flight = ex.root.max_in_flight()
    assert ex.budget > 32 * block and in_flight + 3 < 20, (ex.budget, in_flight)
    # At most: the tasks in flight, two blocks waiting for the consumer and the one it reads.
    assert ex.peak_bytes <= (in_flight + 3) * block, (ex.peak_bytes, in_flight, block)


def test_limit_stops_the_upstream_early():
    ds = rd.range(100_000, override_num_blocks=100).map_batches(lambda b: {"id": b["id"]})
    assert ds.take(5) == [{"id": i} for i in range(5)]
    lim = ds.limit(5)
    assert lim.take_all() == [{"id": i} for i in range(5)]
    launched = lim._last_executor.ops[0].next_seq  # read tasks started of the 100
    assert launched < 100, launched


def test_progress_output_and_plan_log(capfd):
    ctx = rd.DataContext.get_current()
    ctx.enable_progress_bars = True
    ctx.progress_log_interval_s = 0.0
    rd.range(1000, override_num_blocks=4).map_batches(_inc).take_all()
    err = capfd.readouterr().err
    assert "Execution plan of Dataset dataset_" in err
    assert "InputDataBuffer[Input] -> TaskPoolMapOperator[ReadRange->MapBatches(_inc)]" in err
    assert "======= Running Dataset: dataset_" in err
    assert "- ReadRange->MapBatches(_inc): Tasks: " in err and "row/s]" in err
    assert "Dataset dataset_" in err and "execution finished in" in err


def _boom(b):
    if b["id"][0] >= 50:
        raise KeyError("bad block")
    return b


def test_udf_error_has_traceback_type_and_block():
    with pytest.raises(KeyError) as e:
        rd.range(100, override_num_blocks=4).map_batches(_boom).take_all()
    text = str(e.value)
    assert "bad block" in text and "_boom" in text                   # the UDF's traceback
    assert "rows 50..75 of range(100)" in text or "rows 75..100 of range(100)" in text  # where
    assert isinstance(e.value, ray.exceptions.RayTaskError)


def test_max_errored_blocks_leaves_failed_blocks_out():
    ctx = rd.DataContext.get_current()
    ctx.max_errored_blocks = 2
    rows = rd.range(100, override_num_blocks=4).map_batches(_boom).take_all()
    assert [r["id"] for r in rows] == list(range(50))


def test_bad_arguments_are_clear():
    ds = rd.range(10)
    with pytest.raises(ValueError, match="batch_size"):
        ds.map_batches(_inc, batch_size=-1)
    with pytest.raises(ValueError, match="batch_format"):
        ds.map_batches(_inc, batch_format="arrow2")
    with pytest.raises(TypeError, match="callable"):
        ds.map_batches(42)
    with pytest.raises(ValueError, match="exactly one"):
        ds.filter()
    with pytest.raises(ValueError, match="not a valid expression"):
        ds.filter(expr="id >>> 3")
    with pytest.raises(ValueError, match="ActorPoolStrategy"):
        ds.map_batches(_inc, compute=rd.ActorPoolStrategy(size=2))
    with pytest.raises(ValueError, match="max_size"):
        rd.ActorPoolStrategy(min_size=3, max_size=2)
    with pytest.raises(ValueError, match="limit"):
        ds.limit(-1)
    with pytest.raises(TypeError, match="iter_rows"):
        iter(ds)


def test_wrong_return_types_are_named():
    with pytest.raises(ValueError, match=r"returned a value of type <class 'int'>. This isn't allowed"):
        rd.range(10).map_batches(lambda b: 5).take_all()
    with pytest.raises(ValueError, match="Standalone Python objects are not allowed"):
        rd.range(10).map(lambda r: 5).take_all()
    with pytest.raises(ValueError, match="different lengths"):
        rd.range(10).map_batches(lambda b: {"a": b["id"], "b": b["id"][:2]}).take_all()
