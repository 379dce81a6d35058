"""mpiray.data as users run it: scripts whose UDFs live in ``__main__``, a dataset larger than
the object store streamed through it (spilling, no ObjectStoreFullError), streaming_split
shards consumed by actors, HDF5 errors in read tasks without HDF5's error stack, and a
pipeline across virtual nodes under mpirun."""

import pytest

h5py = pytest.importorskip("h5py")


def test_larger_than_store_streams_and_spills(run_script):
    # 64 MiB store, ~320 MB of blocks streamed through it, 160 MB materialized (spilled).
    w = run_script("""
        import numpy as np, sys
        import mpiray as ray
        ray.init(num_cpus=2)
        import mpiray.data as rd
        rd.DataContext.get_current().enable_progress_bars = False
        ds = rd.range_tensor(40_000, shape=(1000,), override_num_blocks=40).map_batches(
            lambda b: {"data": b["data"] * 2})
        total = 0
        for b in ds.iter_batches(batch_size=1000):
            total += int(b["data"][:, 0].sum())
        assert total == 2 * sum(range(40_000)), total
        ex = ds._last_executor
        assert ex.peak_bytes <= ex.budget, (ex.peak_bytes, ex.budget)
        m = rd.range_tensor(20_000, shape=(1000,), override_num_blocks=20).materialize()  # 160 MB > store
        assert m.count() == 20_000
        assert sum(int(b["data"][:, 0].sum()) for b in m.iter_batches(batch_size=None)) == sum(range(20_000))
        g = m.map_batches(lambda b: {"k": b["data"][:, 0] % 3, "v": b["data"][:, 1]}).groupby("k").sum("v")
        assert sorted((r["k"], r["sum(v)"]) for r in g.take_all()) == \
            [(k, sum(range(k, 20_000, 3))) for k in range(3)]
        print("BIG OK", file=sys.stderr)
    """, env={"MPIRAY_OBJECT_STORE_MEMORY": "64M"}, timeout=180)
    assert w.returncode == 0, w
    assert "BIG OK" in w.stderr
    assert "ObjectStoreFull" not in w.stderr


def test_shuffle_larger_than_store(run_script):
    w = run_script("""
        import numpy as np, sys
        import mpiray as ray
        ray.init(num_cpus=2)
        import mpiray.data as rd
        rd.DataContext.get_current().enable_progress_bars = False
        sh = rd.range_tensor(12_000, shape=(1000,), override_num_blocks=12).random_shuffle(seed=3)
        # .copy(): a view would keep its whole block mapped (pinned) in the small store
        ids = np.concatenate([b["data"][:, 0].copy() for b in sh.iter_batches(batch_size=None)])
        assert sorted(ids.tolist()) == list(range(12_000)) and ids.tolist() != list(range(12_000))
        srt = rd.range_tensor(8_000, shape=(1000,), override_num_blocks=8).random_shuffle(seed=1).map_batches(
            lambda b: {"k": b["data"][:, 0], "data": b["data"]}).sort("k", descending=True)
        ks = np.concatenate([b["k"].copy() for b in srt.iter_batches(batch_size=None)])
        assert ks.tolist() == list(range(7_999, -1, -1))
        print("SHUFFLE OK", file=sys.stderr)
    """, env={"MPIRAY_OBJECT_STORE_MEMORY": "64M"}, timeout=180)
    assert w.returncode == 0, w
    assert "SHUFFLE OK" in w.stderr
    assert "ObjectStoreFull" not in w.stderr


def test_udfs_from_main_and_callable_classes(run_script):
    w = run_script("""
        import numpy as np
        import mpiray as ray
        ray.init(num_cpus=2)
        import mpiray.data as rd
        rd.DataContext.get_current().enable_progress_bars = False

        OFFSET = 1000

        def shift(batch):
            return {"id": batch["id"] + OFFSET}

        class Scale:
            def __init__(self, factor):
                self.factor = factor

            def __call__(self, batch):
                return {"id": batch["id"] * self.factor}

        ds = rd.range(100, override_num_blocks=4).map_batches(shift).map_batches(
            Scale, fn_constructor_args=(3,), concurrency=2).filter(lambda r: r["id"] % 2 == 0)
        got = [r["id"] for r in ds.take_all()]
        assert got == [(i + 1000) * 3 for i in range(100) if ((i + 1000) * 3) % 2 == 0], got
        print("MAIN OK", sum(got))
    """, timeout=120)
    assert w.returncode == 0, w
    assert "MAIN OK" in w.stdout


def test_streaming_split_shards_consumed_by_actors(run_script):
    w = run_script("""
        import numpy as np
        import mpiray as ray
        ray.init(num_cpus=2)
        import mpiray.data as rd
        rd.DataContext.get_current().enable_progress_bars = False

        @ray.remote
        class Trainer:
            def __init__(self, rank):
                self.rank = rank

            def epoch(self, shard):
                ids = []
                for batch in shard.iter_batches(batch_size=32, batch_format="numpy"):
                    ids.extend(batch["id"].tolist())
                return ids

        n = 3
        ds = rd.range(1000, override_num_blocks=10).map_batches(lambda b: {"id": b["id"]})
        shards = ds.streaming_split(n, equal=True)
        trainers = [Trainer.remote(i) for i in range(n)]
        for epoch in range(2):
            got = ray.get([t.epoch.remote(s) for t, s in zip(trainers, shards)])
            sizes = [len(g) for g in got]
            assert sizes == [333, 333, 333], sizes          # equal: the remainder (1 row) is dropped
            flat = [i for g in got for i in g]
            assert len(set(flat)) == 999 and set(flat) <= set(range(1000))
        print("SPLIT OK")
    """, timeout=150)
    assert w.returncode == 0, w
    assert "SPLIT OK" in w.stdout


def test_hdf5_read_task_errors_without_hdf5_stack(run_script):
    w = run_script("""
        import os, sys
        import numpy as np, h5py
        import mpiray as ray
        ray.init(num_cpus=2)
        import mpiray.data as rd
        rd.DataContext.get_current().enable_progress_bars = False
        with h5py.File("bad.h5", "w") as f:
            f.create_dataset("x", data=np.arange(100_000.0), chunks=(5000,), compression="gzip")
        ds = rd.read_hdf5("bad.h5")
        size = os.path.getsize("bad.h5")
        with open("bad.h5", "r+b") as fh:
            fh.seek(size // 3)
            fh.write(b"\\xff" * (size // 3))
        try:
            ds.take_all()
        except Exception as e:
            msg = str(e)
            assert "bad.h5" in msg and "'x'" in msg, msg
            print("CAUGHT", type(e).__name__)
    """, timeout=120)
    assert w.returncode == 0, w
    assert "CAUGHT" in w.stdout
    assert "HDF5-DIAG" not in w.stderr and "HDF5-DIAG" not in w.stdout


def test_pipeline_across_virtual_nodes_under_mpirun(run_mpi):
    w = run_mpi("""
        import numpy as np
        import mpiray as ray
        ray.init()
        import mpiray.data as rd
        rd.DataContext.get_current().enable_progress_bars = False
        ds = rd.range(20_000, override_num_blocks=8).map_batches(
            lambda b: {"k": b["id"] % 5, "v": b["id"].astype(np.float64)})
        rows = sorted(ds.groupby("k").sum("v").take_all(), key=lambda r: r["k"])
        assert [r["sum(v)"] for r in rows] == [float(sum(range(k, 20_000, 5))) for k in range(5)], rows
        s = [r["v"] for r in ds.sort("v", descending=True).take(3)]
        assert s == [19999.0, 19998.0, 19997.0]
        print("MPI OK")
    """, n=3, env={"MPIRAY_RANKS_PER_NODE": "1"}, timeout=150)
    assert w.returncode == 0, w
    assert "MPI OK" in w.stdout


def test_example_hdf5_to_training_learns(run_script):
    import os
    example = os.path.join(os.path.dirname(__file__), "..", "..", "..", "examples", "python", "data_hdf5_train.py")
    w = run_script(f"""
        import runpy, sys
        sys.argv = [{os.path.abspath(example)!r}, "work", "--rows", "10000", "--epochs", "3"]
        runpy.run_path(sys.argv[0], run_name="__main__")
    """, env={"MPIRAY_DATA_PROGRESS_BARS": "0"}, timeout=300)
    assert w.returncode == 0, w
    line = [ln for ln in w.stdout.splitlines() if ln.startswith("final loss")][-1]
    final, first = float(line.split()[2]), float(line.split()[4].rstrip(")"))
    assert final < 0.25 * first, line
    assert "layout virtual" in w.stdout


def test_import_mpiray_data_needs_no_pandas_or_pyarrow(run_script):
    w = run_script("""
        import sys
        import mpiray
        import mpiray.data as rd
        from mpiray.data import Dataset, read_hdf5, DataContext
        assert "pandas" not in sys.modules and "pyarrow" not in sys.modules, "imported too early"
        print("IMPORT OK")
    """, timeout=60)
    assert w.returncode == 0, w
    assert "IMPORT OK" in w.stdout
