"""Readers and writers on real files: round trips against pandas/pyarrow, partitioning, paths,
globs, column and filter push-down, and the errors for missing paths and mismatched schemas."""

import json
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import mpiray.data as rd
from mpiray.data._internal import plan as P

pytestmark = pytest.mark.usefixtures("ray_cluster")


@pytest.fixture
def table():
    rng = np.random.default_rng(0)
    n = 3000
    return pd.DataFrame({"a": np.arange(n), "b": rng.random(n), "c": rng.choice(["x", "y", "z"], n)})


def _files(d, ext):
    return sorted(f for f in os.listdir(d) if f.endswith(ext))


def test_parquet_round_trip_and_row_group_splits(tmp_path, table):
    d = tmp_path / "pq"
    rd.from_pandas(table, override_num_blocks=3).write_parquet(str(d))
    assert len(_files(d, ".parquet")) == 3
    pd.testing.assert_frame_equal(rd.read_parquet(str(d)).to_pandas(), table)
    # One file with many row groups is split into several blocks along row groups.
    one = tmp_path / "one.parquet"
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), one, row_group_size=300)
    ds = rd.read_parquet(str(one), override_num_blocks=5)
    assert ds.count() == 3000  # from the footer, without reading
    assert ds.materialize().num_blocks() == 5
    pd.testing.assert_frame_equal(ds.to_pandas(), table)
    # pandas writes its strings as Arrow (large_)string
    assert str(ds.schema()) == ("Column  Type\n------  ----\na       int64\nb       double\nc       "
                                + str(pq.read_schema(one).field("c").type))


def test_parquet_column_and_filter_push_down(tmp_path, table):
    f = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), f, row_group_size=500)
    ds = rd.read_parquet(str(f)).select_columns(["c", "a"])
    opt = P.optimize(ds._plan)
    assert isinstance(opt, P.Read) and opt.datasource.columns == ["c", "a"]
    pd.testing.assert_frame_equal(ds.to_pandas(), table[["c", "a"]])
    ds = rd.read_parquet(str(f)).filter(expr="b > 0.5 and c == 'y'")
    opt = P.optimize(ds._plan)
    assert isinstance(opt, P.Read) and opt.datasource.filter is not None
    exp = table[(table.b > 0.5) & (table.c == "y")].reset_index(drop=True)
    pd.testing.assert_frame_equal(ds.to_pandas(), exp)
    pd.testing.assert_frame_equal(rd.read_parquet(str(f), columns=["b"]).to_pandas(), table[["b"]])
    with pytest.raises(ValueError, match="filter"):
        rd.read_parquet(str(f), filter="b > 1")


def test_hive_partitioning_include_paths_and_globs(tmp_path):
    for year, vals in ((2020, [1, 2]), (2021, [3])):
        p = tmp_path / "data" / f"year={year}"
        p.mkdir(parents=True)
        pq.write_table(pa.table({"v": vals}), p / "part.parquet")
    (tmp_path / "data" / "_SUCCESS").write_text("")
    ds = rd.read_parquet(str(tmp_path / "data"), include_paths=True)
    rows = sorted(ds.take_all(), key=lambda r: r["v"])
    assert [(r["v"], r["year"]) for r in rows] == [(1, "2020"), (2, "2020"), (3, "2021")]
    assert rows[2]["path"].endswith(os.path.join("year=2021", "part.parquet"))
    assert ds.columns() == ["v", "year", "path"]
    typed = rd.read_parquet(str(tmp_path / "data"),
                            partitioning=rd.Partitioning("hive", field_types={"year": int}))
    assert sorted(r["year"] for r in typed.take_all()) == [2020, 2020, 2021]
    glob = rd.read_parquet(str(tmp_path / "data" / "year=202*" / "*.parquet"))
    assert glob.count() == 3
    assert sorted(glob.input_files()) == sorted(str(p) for p in (tmp_path / "data").rglob("*.parquet"))


def test_missing_paths_name_what_was_tried(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        rd.read_parquet([str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")])
    assert "a.parquet" in str(e.value) and "tried" in str(e.value) and "b.parquet" in str(e.value)
    with pytest.raises(FileNotFoundError, match="no files"):
        rd.read_json(str(tmp_path))  # a directory without .json files
    with pytest.raises(FileNotFoundError, match="no such file"):
        rd.read_parquet(str(tmp_path / "nothing*.parquet"))
    with pytest.raises(ValueError, match="local"):
        rd.read_parquet("s3://bucket/key.parquet")


def test_schema_mismatch_between_files(tmp_path):
    d = tmp_path / "mix"
    d.mkdir()
    pq.write_table(pa.table({"a": [1, 2], "b": [1.0, 2.0]}), d / "f1.parquet")
    pq.write_table(pa.table({"a": ["x", "y"], "c": [1.0, 2.0]}), d / "f2.parquet")
    with pytest.raises(ValueError) as e:
        rd.read_parquet(str(d))
    msg = str(e.value)
    assert "f1.parquet" in msg and "f2.parquet" in msg and "a: int64 vs string" in msg
    c = tmp_path / "csv"
    c.mkdir()
    (c / "f1.csv").write_text("a,b\n1,2\n")
    (c / "f2.csv").write_text("a,z\nx,3\n")
    with pytest.raises(ValueError) as e:
        rd.read_csv(str(c)).take_all()
    assert "f1.csv" in str(e.value) and "f2.csv" in str(e.value) and "different schemas" in str(e.value)


def test_csv_json_numpy_text_binary(tmp_path, table):
    rd.from_pandas(table, override_num_blocks=2).write_csv(str(tmp_path / "csv"))
    pd.testing.assert_frame_equal(rd.read_csv(str(tmp_path / "csv")).to_pandas(), table)
    rd.from_pandas(table).write_json(str(tmp_path / "json"))
    files = _files(tmp_path / "json", ".json")
    first = (tmp_path / "json" / files[0]).read_text().splitlines()[0]
    assert json.loads(first) == {"a": 0, "b": table.b[0], "c": table.c[0]}
    pd.testing.assert_frame_equal(rd.read_json(str(tmp_path / "json")).to_pandas(), table)
    (tmp_path / "array.json").write_text(json.dumps([{"p": 1, "q": "a"}, {"p": 2, "q": "b"}]))
    assert rd.read_json(str(tmp_path / "array.json")).take_all() == [{"p": 1, "q": "a"}, {"p": 2, "q": "b"}]
    rd.range_tensor(10, shape=(3,), override_num_blocks=2).write_numpy(str(tmp_path / "npy"), column="data")
    back = rd.read_numpy(str(tmp_path / "npy"))
    np.testing.assert_array_equal(np.concatenate([b["data"] for b in back.iter_batches(batch_size=4)]),
                                  np.repeat(np.arange(10), 3).reshape(10, 3))
    (tmp_path / "t.txt").write_text("hello\n\nworld\n")
    assert rd.read_text(str(tmp_path / "t.txt")).take_all() == [{"text": "hello"}, {"text": "world"}]
    assert rd.read_text(str(tmp_path / "t.txt"), drop_empty_lines=False).count() == 3
    b = rd.read_binary_files(str(tmp_path / "t.txt"), include_paths=True).take_all()
    assert b == [{"bytes": b"hello\n\nworld\n", "path": str(tmp_path / "t.txt")}]


def test_read_images(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    d = tmp_path / "img"
    d.mkdir()
    arrs = [np.full((4, 5, 3), i * 20, dtype=np.uint8) for i in range(3)]
    for i, a in enumerate(arrs):
        Image.fromarray(a).save(d / f"{i}.png")
    ds = rd.read_images(str(d), include_paths=True)
    rows = ds.take_all()
    assert len(rows) == 3 and rows[1]["image"].shape == (4, 5, 3)
    assert sorted(int(r["image"][0, 0, 0]) for r in rows) == [0, 20, 40]
    small = rd.read_images(str(d), size=(2, 2), mode="L").take_batch(3)
    assert small["image"].shape == (3, 2, 2)


def test_write_modes(tmp_path):
    d = tmp_path / "out"
    rd.range(10).write_parquet(str(d))
    rd.range(10).write_parquet(str(d))  # append (Ray's default): more files
    assert rd.read_parquet(str(d)).count() == 20
    rd.range(5).write_parquet(str(d), mode="overwrite")
    assert rd.read_parquet(str(d)).count() == 5
    with pytest.raises(FileExistsError):
        rd.range(5).write_parquet(str(d), mode="error")
