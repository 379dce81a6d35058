"""read_hdf5 / write_hdf5 against h5py on real files: chunked, compressed, compound, strings,
virtual datasets, external links, attributes, parallel writes into one logical dataset, and
errors that name the file and the dataset without HDF5's error stack."""

import os

import numpy as np
import pytest

import mpiray.data as rd
from mpiray.data import hdf5

h5py = pytest.importorskip("h5py")
pytestmark = pytest.mark.usefixtures("ray_cluster")


def _all(ds, col):
    return np.concatenate([b[col] for b in ds.iter_batches(batch_size=None)])


def test_chunked_compressed_read_in_chunk_aligned_blocks(tmp_path, capfd):
    x = np.random.default_rng(1).random((10_000, 8)).astype(np.float32)
    y = np.arange(10_000, dtype=np.int64)
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=x, chunks=(700, 8), compression="gzip", shuffle=True)
        f.create_dataset("grp/y", data=y, chunks=(350,))
    ds = rd.read_hdf5(str(path), datasets=["x", "grp/y"], override_num_blocks=6)
    tasks = ds._plan.datasource.get_read_tasks(6, rd.DataContext.get_current())
    starts = [t.fn.start for t in tasks]
    assert len(tasks) > 1 and all(s % 700 == 0 for s in starts)      # chunk-aligned splits
    assert sum(t.fn.count for t in tasks) == 10_000
    assert ds.columns() == ["x", "grp/y"] and ds.count() == 10_000
    np.testing.assert_array_equal(_all(ds, "x"), x)
    np.testing.assert_array_equal(_all(ds, "grp/y"), y)
    b = next(iter(ds.iter_batches(batch_size=100)))
    assert not b["x"].flags.writeable  # a view of the block in the object store
    assert "HDF5-DIAG" not in capfd.readouterr().err


def test_large_read_blocks_go_straight_into_the_store_and_split(tmp_path):
    # A read with nothing after it reads its rows straight into the object store (several
    # blocks when one would pass 1.5 target_max_block_size); a fused map reads into memory.
    # Both give h5py's values, next to a string column read the ordinary way.
    x = np.random.default_rng(2).random((40_000, 64))            # 20 MB of float64
    s = np.array([f"r{i}" for i in range(40_000)], dtype=object)
    path = tmp_path / "big.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=x, chunks=(1000, 64))
        f.create_dataset("s", data=s, dtype=h5py.string_dtype())
    ctx = rd.DataContext.get_current()
    old = ctx.target_max_block_size
    ctx.target_max_block_size = 4 << 20
    try:
        ds = rd.read_hdf5(str(path), override_num_blocks=1)
        blocks = list(ds.iter_batches(batch_size=None))
        assert len(blocks) >= 4 and all(b["x"].nbytes <= 6 << 20 for b in blocks)
        np.testing.assert_array_equal(np.concatenate([b["x"] for b in blocks]), x)
        assert np.concatenate([b["s"] for b in blocks]).tolist() == s.tolist()
        assert not blocks[0]["x"].flags.writeable
        stats = ds.stats()
        assert "ReadHDF5" in stats and "1 tasks executed" in stats
        mapped = rd.read_hdf5(str(path), datasets=["x"], override_num_blocks=3).map_batches(
            lambda b: {"x": b["x"] * 2})
        np.testing.assert_array_equal(_all(mapped, "x"), x * 2)
    finally:
        ctx.target_max_block_size = old


def test_compound_strings_bool_and_attributes(tmp_path):
    dt = np.dtype([("id", "<i4"), ("pos", "<f8", (3,)), ("tag", "S4")])
    rec = np.zeros(50, dt)
    rec["id"] = np.arange(50)
    rec["pos"] = np.arange(150).reshape(50, 3) / 2
    rec["tag"] = [b"t%d" % (i % 3) for i in range(50)]
    path = tmp_path / "c.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("rec", data=rec, chunks=(16,))
        f.create_dataset("name", data=[f"n{i}" for i in range(50)], dtype=h5py.string_dtype())
        f.create_dataset("ok", data=np.arange(50) % 2 == 0)
        f.attrs["title"] = "run 7"
        f.attrs["dt"] = 0.25
        f["rec"].attrs["units"] = np.array([b"m", b"s"])
    ds = rd.read_hdf5(str(path))
    assert ds.columns() == ["ok", "name", "id", "pos", "tag"] or set(ds.columns()) == {"id", "pos", "tag", "name", "ok"}
    rows = ds.take_all()
    assert rows[7]["id"] == 7 and rows[7]["name"] == "n7" and rows[7]["tag"] == b"t1" and rows[7]["ok"] is False
    np.testing.assert_array_equal(rows[7]["pos"], [10.5, 11.0, 11.5])
    assert "pos" in str(ds.schema()) and "numpy.ndarray(shape=(3,), dtype=float64)" in str(ds.schema())
    attrs = hdf5.read_attributes(str(path))
    assert attrs == {"dt": 0.25, "title": "run 7"}
    np.testing.assert_array_equal(hdf5.read_attributes(str(path), "rec")["units"], [b"m", b"s"])
    info = hdf5.describe(str(path), "rec")
    assert info["layout"] == "chunked" and info["chunks"] == (16,) and info["dtype"].names == ("id", "pos", "tag")
    assert hdf5.list_datasets(str(path)) == ["name", "ok", "rec"]


def test_virtual_dataset_external_link_and_many_files(tmp_path):
    parts = []
    for i in range(3):
        p = tmp_path / f"src{i}.h5"
        with h5py.File(p, "w") as f:
            f.create_dataset("v", data=np.arange(i * 100, i * 100 + 100, dtype=np.float64))
        parts.append(p)
    layout = h5py.VirtualLayout(shape=(300,), dtype=np.float64)
    for i, p in enumerate(parts):
        layout[i * 100:(i + 1) * 100] = h5py.VirtualSource(str(p), "v", shape=(100,))
    with h5py.File(tmp_path / "vds.h5", "w") as f:
        f.create_virtual_dataset("v", layout)
        f["linked"] = h5py.ExternalLink("src1.h5", "/v")
    np.testing.assert_array_equal(_all(rd.read_hdf5(str(tmp_path / "vds.h5"), datasets=["v"]), "v"),
                                  np.arange(300, dtype=np.float64))
    assert hdf5.describe(str(tmp_path / "vds.h5"), "v")["layout"] == "virtual"
    np.testing.assert_array_equal(_all(rd.read_hdf5(str(tmp_path / "vds.h5"), datasets=["linked"]), "linked"),
                                  np.arange(100, 200, dtype=np.float64))
    many = rd.read_hdf5([str(p) for p in parts], include_paths=True)
    rows = many.take_all()
    assert [r["v"] for r in rows] == list(np.arange(300, dtype=np.float64))
    assert rows[150]["path"] == str(parts[1])
    glob = rd.read_hdf5(str(tmp_path / "src*.h5"))
    assert glob.count() == 300


def test_write_hdf5_is_one_logical_dataset(tmp_path):
    out = tmp_path / "out.h5"
    ds = rd.range(1000, override_num_blocks=4).map_batches(
        lambda b: {"id": b["id"], "vec": np.stack([b["id"], -b["id"]], axis=1).astype(np.float32),
                   "s": np.array([f"r{i}" for i in b["id"]], dtype=object)})
    ds.write_hdf5(str(out), chunks=(64, 2), compression="gzip", compression_opts=3)
    assert len(os.listdir(str(out) + ".parts")) == 4
    with h5py.File(out, "r") as f:
        assert set(f) == {"id", "vec", "s"}
        assert f["vec"].is_virtual and f["vec"].shape == (1000, 2) and f["vec"].dtype == np.float32
        np.testing.assert_array_equal(f["id"][:], np.arange(1000))
        np.testing.assert_array_equal(f["vec"][500], [500, -500])
        assert f["s"][999].decode() == "r999"
    back = rd.read_hdf5(str(out))
    assert back.count() == 1000 and back.sum("id") == 499500
    # A structured column becomes a compound dataset, and dataset names can be chosen.
    rec = np.zeros(10, np.dtype([("a", "<i8"), ("b", "<f4")]))
    rec["a"] = np.arange(10)
    rd.from_numpy(rec).write_hdf5(str(tmp_path / "rec.h5"), datasets={"data": "records"})
    with h5py.File(tmp_path / "rec.h5") as f:
        assert f["records"].dtype.names == ("a", "b") and f["records"]["a"].tolist() == list(range(10))
    with pytest.raises(FileExistsError):
        rd.range(3).write_hdf5(str(out), mode="error")
    rd.range(3).write_hdf5(str(out))  # overwrite (the default) replaces file and parts
    with h5py.File(out) as f:
        assert f["id"].shape == (3,)
    assert len(os.listdir(str(out) + ".parts")) >= 1


def test_errors_name_file_and_dataset(tmp_path, capfd):
    path = tmp_path / "e.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.arange(10))
        f.create_dataset("short", data=np.arange(5))
        f.create_dataset("scalar", data=3.0)
        f.create_dataset("lzf", data=np.arange(100), chunks=(10,), compression="lzf")
        refs = f.create_dataset("refs", (2,), dtype=h5py.ref_dtype)
        refs[0] = f["x"].ref
    with pytest.raises(FileNotFoundError, match="nothere.h5"):
        rd.read_hdf5(str(tmp_path / "nothere.h5"))
    with pytest.raises(rd.HDF5DatasetNotFoundError) as e:
        rd.read_hdf5(str(path), datasets=["y"])
    assert "'y'" in str(e.value) and "e.h5" in str(e.value) and "x" in str(e.value)
    with pytest.raises(rd.HDF5ValueError, match="different numbers of rows"):
        rd.read_hdf5(str(path), datasets=["x", "short"])
    with pytest.raises(rd.HDF5ValueError, match="scalar"):
        rd.read_hdf5(str(path), datasets=["scalar"])
    with pytest.raises(rd.HDF5ValueError, match="lzf"):
        rd.read_hdf5(str(path), datasets=["lzf"])
    with pytest.raises(rd.HDF5ValueError, match="'refs'.*reference type"):  # a dtype numpy cannot hold
        rd.read_hdf5(str(path), datasets=["refs"])
    (tmp_path / "text.h5").write_text("not hdf5 at all")
    with pytest.raises(rd.HDF5Error, match="text.h5.*is not an HDF5 file"):
        rd.read_hdf5(str(tmp_path / "text.h5"))
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("x", data=np.arange(10, dtype=np.float32))
    with pytest.raises(rd.HDF5ValueError) as e:
        rd.read_hdf5([str(path), str(other)], datasets=["x"])
    assert "e.h5" in str(e.value) and "other.h5" in str(e.value) and "int64 vs float32" in str(e.value)
    assert "HDF5-DIAG" not in capfd.readouterr().err


def test_corrupted_data_fails_in_the_read_task(tmp_path):
    path = tmp_path / "cut.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.arange(200_000, dtype=np.float64), chunks=(10_000,), compression="gzip")
    ds = rd.read_hdf5(str(path))  # planning reads only the metadata
    size = os.path.getsize(path)
    with open(path, "r+b") as fh:  # overwrite compressed chunks in the middle of the file
        fh.seek(size // 2)
        fh.write(os.urandom(size // 4))
    with pytest.raises(Exception) as e:
        ds.take_all()
    msg = str(e.value)
    assert "cut.h5" in msg and "'x'" in msg
