"""Every Dataset operation against pandas/numpy on the same data: exact results."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import mpiray.data as rd
from mpiray.data.aggregate import AbsMax, AggregateFn, Count, Max, Mean, Quantile, Std, Sum, Unique

pytestmark = pytest.mark.usefixtures("ray_cluster")


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(42)
    n = 5000
    return pd.DataFrame({
        "k": rng.integers(0, 17, n),
        "s": rng.choice(["ant", "bee", "cat", "dog"], n),
        "v": rng.normal(10.0, 3.0, n),
        "i": rng.integers(-1000, 1000, n),
    })


def _df(ds):
    return ds.to_pandas()


def _sorted(df, by):
    return df.sort_values(by, kind="stable").reset_index(drop=True)


# ----------------------------------------------------------------------------- creation


def test_range_and_schema(capsys):
    ds = rd.range(100, override_num_blocks=7)
    assert ds.count() == 100
    assert ds.columns() == ["id"]
    assert str(ds.schema()) == "Column  Type\n------  ----\nid      int64"
    assert [r["id"] for r in ds.take_all()] == list(range(100))
    assert ds.take(3) == [{"id": 0}, {"id": 1}, {"id": 2}]
    assert ds.materialize().num_blocks() == 7
    ds.show(2)
    assert capsys.readouterr().out == "{'id': 0}\n{'id': 1}\n"
    b = ds.take_batch(5)
    assert list(b) == ["id"] and b["id"].tolist() == [0, 1, 2, 3, 4]
    assert isinstance(ds.take_batch(3, batch_format="pandas"), pd.DataFrame)
    assert isinstance(ds.take_batch(3, batch_format="pyarrow"), pa.Table)


def test_range_tensor_and_from_numpy():
    ds = rd.range_tensor(6, shape=(2, 3))
    b = ds.take_batch(6)
    assert b["data"].shape == (6, 2, 3)
    np.testing.assert_array_equal(b["data"][4], np.full((2, 3), 4))
    arr = np.arange(24, dtype=np.float32).reshape(6, 4)
    fn = rd.from_numpy([arr[:2], arr[2:]])
    assert fn.count() == 6
    np.testing.assert_array_equal(np.concatenate([x["data"] for x in fn.iter_batches(batch_size=4)]), arr)
    assert "numpy.ndarray(shape=(4,), dtype=float32)" in str(fn.schema())


def test_from_items_pandas_arrow_torch(frame):
    assert rd.from_items([1, 2, 3]).take_all() == [{"item": 1}, {"item": 2}, {"item": 3}]
    rows = frame.head(50).to_dict("records")
    pd.testing.assert_frame_equal(_df(rd.from_items(rows)), frame.head(50), check_dtype=False)
    pd.testing.assert_frame_equal(_df(rd.from_pandas([frame.iloc[:100], frame.iloc[100:300]])),
                                  frame.iloc[:300].reset_index(drop=True))
    t = pa.Table.from_pandas(frame.iloc[:200], preserve_index=False)
    assert rd.from_arrow(t, override_num_blocks=3).materialize().num_blocks() == 3
    pd.testing.assert_frame_equal(_df(rd.from_arrow(t)), frame.iloc[:200].reset_index(drop=True))
    torch = pytest.importorskip("torch")
    tds = torch.utils.data.TensorDataset(torch.arange(4))
    assert [r["item"][0].item() for r in rd.from_torch(tds).take_all()] == [0, 1, 2, 3]


# ----------------------------------------------------------------------------- consuming


def test_iter_batches_sizes_formats_and_drop_last():
    ds = rd.range(103, override_num_blocks=5)
    sizes = [len(b["id"]) for b in ds.iter_batches(batch_size=10)]
    assert sizes == [10] * 10 + [3]
    assert [len(b["id"]) for b in ds.iter_batches(batch_size=10, drop_last=True)] == [10] * 10
    allv = np.concatenate([b["id"] for b in ds.iter_batches(batch_size=7)])
    np.testing.assert_array_equal(allv, np.arange(103))
    assert all(isinstance(b, pd.DataFrame) for b in ds.iter_batches(batch_size=50, batch_format="pandas"))
    assert all(isinstance(b, pa.Table) for b in ds.iter_batches(batch_size=50, batch_format="pyarrow"))
    shuffled = np.concatenate([b["id"] for b in ds.iter_batches(batch_size=8, local_shuffle_buffer_size=20,
                                                                 local_shuffle_seed=3)])
    assert sorted(shuffled.tolist()) == list(range(103)) and shuffled.tolist() != list(range(103))
    assert [r["id"] for r in ds.iter_rows()] == list(range(103))
    with pytest.raises(ValueError, match="batch_size"):
        next(iter(ds.iter_batches(batch_size=0)))


def test_iter_torch_batches():
    torch = pytest.importorskip("torch")
    ds = rd.from_items([{"x": float(i), "y": i % 2} for i in range(10)])
    batches = list(ds.iter_torch_batches(batch_size=4, dtypes={"x": torch.float32, "y": torch.int64}))
    assert [b["x"].shape[0] for b in batches] == [4, 4, 2]
    assert batches[0]["x"].dtype == torch.float32 and batches[0]["y"].dtype == torch.int64
    assert torch.cat([b["x"] for b in batches]).tolist() == [float(i) for i in range(10)]
    batches[0]["x"] += 1  # writable: never a view of read-only store memory
    out = list(ds.iter_torch_batches(batch_size=5, collate_fn=lambda b: torch.tensor(b["y"]).sum()))
    assert [t.item() for t in out] == [2, 3]


def test_to_pandas_numpy_refs_and_materialize(frame):
    import mpiray as ray
    ds = rd.from_pandas(frame).map_batches(lambda b: b, batch_format="pandas")
    pd.testing.assert_frame_equal(ds.to_pandas(), frame)
    with pytest.raises(ValueError, match="limit"):
        ds.to_pandas(limit=10)
    refs = rd.range(10, override_num_blocks=2).to_numpy_refs()
    assert len(refs) == 2
    assert np.concatenate([ray.get(r)["id"] for r in refs]).tolist() == list(range(10))
    m = ds.materialize()
    assert m.count() == len(frame) and m.num_blocks() >= 1


# ----------------------------------------------------------------------------- transforms


def _double(batch, factor=2):
    return {"id": batch["id"] * factor}


class AddConst:
    def __init__(self, c):
        self.c = c

    def __call__(self, batch):
        batch = dict(batch)
        batch["id"] = batch["id"] + self.c
        return batch


def test_map_batches_formats_args_and_generators():
    ds = rd.range(20, override_num_blocks=3)
    assert [r["id"] for r in ds.map_batches(_double, fn_kwargs={"factor": 3}).take_all()] == [3 * i for i in range(20)]
    out = ds.map_batches(lambda df: df.assign(sq=df["id"] ** 2), batch_format="pandas").to_pandas()
    assert out["sq"].tolist() == [i * i for i in range(20)]
    out = ds.map_batches(lambda t: t.append_column("neg", pa.compute.negate(t["id"])), batch_format="pyarrow")
    assert [r["neg"] for r in out.take_all()] == [-i for i in range(20)]
    sizes = []

    def record(b):
        sizes.append(len(b["id"]))
        return {"n": np.array([len(b["id"])])}

    assert sum(r["n"] for r in ds.map_batches(record, batch_size=4).take_all()) == 20
    assert all(r["n"] <= 4 for r in ds.map_batches(record, batch_size=4).take_all())

    def gen(b):
        for x in b["id"]:
            yield {"id": np.array([x, x])}

    assert ds.map_batches(gen).count() == 40


def test_map_batches_callable_class_on_actors():
    ds = rd.range(50, override_num_blocks=5)
    out = ds.map_batches(AddConst, fn_constructor_args=(100,), concurrency=2).take_all()
    assert [r["id"] for r in out] == [i + 100 for i in range(50)]
    out = ds.map_batches(AddConst, fn_constructor_kwargs={"c": 1},
                         compute=rd.ActorPoolStrategy(min_size=1, max_size=2)).take_all()
    assert [r["id"] for r in out] == [i + 1 for i in range(50)]
    with pytest.raises(ValueError, match="callable class"):
        ds.map_batches(_double, fn_constructor_args=(1,))


def test_map_flat_map_filter_add_column_projection(frame):
    ds = rd.from_pandas(frame)
    got = _df(ds.map(lambda r: {"k": r["k"], "w": r["v"] * 2}))
    np.testing.assert_allclose(got["w"], frame["v"] * 2)
    got = _df(ds.flat_map(lambda r: [{"i": r["i"]}] * (r["k"] % 3)))
    assert got["i"].tolist() == [i for i, k in zip(frame["i"], frame["k"]) for _ in range(k % 3)]
    got = _df(ds.filter(lambda r: r["s"] == "cat"))
    pd.testing.assert_frame_equal(got, frame[frame["s"] == "cat"].reset_index(drop=True))
    got = _df(ds.filter(expr="v > 10 and s != 'dog'"))
    pd.testing.assert_frame_equal(got, frame[(frame.v > 10) & (frame.s != "dog")].reset_index(drop=True))
    from mpiray.data.expressions import col
    got = _df(ds.filter(expr=(col("k") * 2 >= 10) & col("s").is_in(["ant", "bee"])))
    pd.testing.assert_frame_equal(got, frame[(frame.k * 2 >= 10) & frame.s.isin(["ant", "bee"])].reset_index(drop=True))
    got = _df(ds.add_column("kv", lambda df: df["k"] * df["v"]))
    np.testing.assert_allclose(got["kv"], frame["k"] * frame["v"])
    assert ds.drop_columns(["v", "i"]).columns() == ["k", "s"]
    assert _df(ds.select_columns(["i", "k"])).equals(frame[["i", "k"]])
    assert ds.rename_columns({"k": "key"}).columns() == ["key", "s", "v", "i"]
    assert ds.rename_columns(["a", "b", "c", "d"]).columns() == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="not found"):
        ds.select_columns(["nope"]).take(1)


def test_limit_union_zip(frame):
    assert rd.range(1000, override_num_blocks=10).limit(15).take_all() == [{"id": i} for i in range(15)]
    assert rd.range(10).limit(0).count() == 0
    u = rd.range(3).union(rd.range(2), rd.from_items([{"id": 9}]))
    assert [r["id"] for r in u.take_all()] == [0, 1, 2, 0, 1, 9]
    a = rd.range(30, override_num_blocks=4)
    b = rd.range(30, override_num_blocks=3).map(lambda r: {"id": r["id"] * 10, "z": -r["id"]})
    z = a.zip(b).take_all()
    assert z[7] == {"id": 7, "id_1": 70, "z": -7} and len(z) == 30
    with pytest.raises(ValueError, match="different number of rows"):
        a.zip(rd.range(5)).take_all()


def test_random_shuffle_block_order_and_sample():
    ds = rd.range(1000, override_num_blocks=8)
    s1 = [r["id"] for r in ds.random_shuffle(seed=7).take_all()]
    s2 = [r["id"] for r in ds.random_shuffle(seed=7).take_all()]
    assert sorted(s1) == list(range(1000)) and s1 == s2 and s1 != list(range(1000))
    b = [r["id"] for r in ds.randomize_block_order(seed=1).take_all()]
    assert sorted(b) == list(range(1000)) and b != list(range(1000))
    samp = [r["id"] for r in ds.random_sample(0.2, seed=3).take_all()]
    assert samp == sorted(samp) and 120 < len(samp) < 280
    assert samp == [r["id"] for r in ds.random_sample(0.2, seed=3).take_all()]


def test_random_shuffle_of_large_blocks_keeps_rows_whole():
    # Reduce outputs of >= 1 MiB are scattered straight into the object store: rows stay whole
    # (every column of a row moves together), nothing is lost or doubled, a seed repeats.
    ds = rd.range_tensor(20_000, shape=(64,), override_num_blocks=5).map_batches(
        lambda b: {"id": b["data"][:, 0], "data": b["data"], "half": b["data"][:, :2].astype(np.float32) / 2})
    runs = []
    for _ in range(2):
        blocks = list(ds.random_shuffle(seed=11).iter_batches(batch_size=None))
        assert len(blocks) > 1 and all(b["data"].nbytes >= 1 << 20 for b in blocks)
        ids = np.concatenate([b["id"] for b in blocks])
        for b in blocks:
            np.testing.assert_array_equal(b["data"], np.repeat(b["id"][:, None], 64, axis=1))
            np.testing.assert_array_equal(b["half"], np.repeat(b["id"][:, None] / 2, 2, axis=1).astype(np.float32))
        runs.append(ids)
    assert sorted(runs[0].tolist()) == list(range(20_000))
    assert runs[0].tolist() != list(range(20_000))
    np.testing.assert_array_equal(runs[0], runs[1])
    # Rows of every input block end up spread over the output blocks.
    first = blocks[0]["id"]
    assert len(np.unique(first // 4000)) == 5


def test_sort(frame):
    ds = rd.from_pandas(frame, override_num_blocks=6)
    pd.testing.assert_frame_equal(_df(ds.sort("v")), frame.sort_values("v").reset_index(drop=True))
    pd.testing.assert_frame_equal(_df(ds.sort("v", descending=True)),
                                  frame.sort_values("v", ascending=False).reset_index(drop=True))
    got = _df(ds.sort(["s", "i"], descending=[False, True]))
    exp = frame.sort_values(["s", "i"], ascending=[True, False], kind="stable").reset_index(drop=True)
    assert got[["s", "i"]].equals(exp[["s", "i"]])
    with pytest.raises(ValueError, match="not found"):
        ds.sort("nope")


def test_groupby_aggregations(frame):
    ds = rd.from_pandas(frame, override_num_blocks=5)
    g = frame.groupby("k")
    got = _sorted(_df(ds.groupby("k").count()), "k")
    assert got.columns.tolist() == ["k", "count()"]
    assert got["count()"].tolist() == g.size().tolist()
    for name, fn in [("sum", "sum"), ("min", "min"), ("max", "max"), ("mean", "mean"), ("std", "std")]:
        got = _sorted(_df(getattr(ds.groupby("k"), name)("v")), "k")
        assert got.columns.tolist() == ["k", f"{name}(v)"]
        np.testing.assert_allclose(got[f"{name}(v)"], getattr(g["v"], fn)().to_numpy(), rtol=1e-10)
    got = _sorted(_df(ds.groupby(["k", "s"]).sum("i")), ["k", "s"])
    exp = frame.groupby(["k", "s"])["i"].sum().reset_index()
    assert got["sum(i)"].tolist() == exp["i"].tolist()
    got = _sorted(_df(ds.groupby("s").aggregate(Count(), Sum("i"), Mean("v", alias_name="m"), AbsMax("i"),
                                                 Std("v", ddof=0))), "s")
    gs = frame.groupby("s")
    assert got["count()"].tolist() == gs.size().tolist()
    assert got["sum(i)"].tolist() == gs["i"].sum().tolist()
    np.testing.assert_allclose(got["m"], gs["v"].mean())
    assert got["abs_max(i)"].tolist() == gs["i"].apply(lambda x: x.abs().max()).tolist()
    np.testing.assert_allclose(got["std(v)"], gs["v"].std(ddof=0))
    custom = AggregateFn(init=lambda k: 0, accumulate_row=lambda a, r: a + (r["i"] > 0), merge=lambda a, b: a + b,
                         name="positives")
    got = _sorted(_df(ds.groupby("k").aggregate(custom, Quantile("v", q=0.5), Unique("s"))), "k")
    assert got["positives"].tolist() == g["i"].apply(lambda x: int((x > 0).sum())).tolist()
    np.testing.assert_allclose(got["quantile(v)"], g["v"].quantile(0.5))
    assert [list(u) for u in got["unique(s)"]] == [sorted(set(x)) for _, x in g["s"]]


def test_dataset_level_aggregates(frame):
    ds = rd.from_pandas(frame, override_num_blocks=4)
    assert ds.sum("i") == frame["i"].sum()
    assert ds.min("v") == frame["v"].min() and ds.max("i") == frame["i"].max()
    assert ds.mean("v") == pytest.approx(frame["v"].mean(), rel=1e-12)
    assert ds.std("v") == pytest.approx(frame["v"].std(), rel=1e-10)
    assert ds.sum(["i", "k"]) == {"sum(i)": frame["i"].sum(), "sum(k)": frame["k"].sum()}
    assert ds.aggregate(Count(), Max("k")) == {"count()": len(frame), "max(k)": frame["k"].max()}
    assert ds.unique("s") == ["ant", "bee", "cat", "dog"]
    assert rd.range(0).sum("id") is None
    nulls = rd.from_items([{"x": 1.0}, {"x": None}, {"x": 3.0}])
    assert nulls.mean("x") == 2.0 and nulls.sum("x") == 4.0
    assert nulls.aggregate(Count("x", ignore_nulls=True))["count(x)"] == 2


def test_map_groups(frame):
    ds = rd.from_pandas(frame, override_num_blocks=4)

    def center(df):
        return df.assign(c=df["v"] - df["v"].mean())

    got = _sorted(_df(ds.groupby("k").map_groups(center, batch_format="pandas")), ["k", "i", "v"])
    exp = _sorted(frame.assign(c=frame["v"] - frame.groupby("k")["v"].transform("mean")), ["k", "i", "v"])
    np.testing.assert_allclose(got["c"], exp["c"], atol=1e-12)
    sizes = _sorted(_df(ds.groupby("s").map_groups(lambda b: {"s": b["s"][:1], "n": np.array([len(b["s"])])})), "s")
    assert sizes["n"].tolist() == frame.groupby("s").size().tolist()


def test_repartition_and_splits():
    ds = rd.range(100, override_num_blocks=3)
    r = ds.repartition(7).materialize()
    assert r.num_blocks() == 7 and [x["id"] for x in r.take_all()] == list(range(100))
    assert ds.repartition(target_num_rows_per_block=30).materialize().num_blocks() == 4
    parts = ds.split(3)
    assert [p.count() for p in parts] == [34, 33, 33]
    assert [x["id"] for p in parts for x in p.take_all()] == list(range(100))
    assert [p.count() for p in ds.split(3, equal=True)] == [33, 33, 33]
    a, b, c = ds.split_at_indices([10, 55])
    assert (a.count(), b.count(), c.count()) == (10, 45, 45)
    assert b.take(1) == [{"id": 10}]
    train, test = ds.train_test_split(0.25)
    assert train.count() == 75 and test.take(1) == [{"id": 75}]
    train, test = ds.train_test_split(10, shuffle=True, seed=1)
    assert train.count() == 90 and test.count() == 10
    assert sorted(x["id"] for x in train.take_all() + test.take_all()) == list(range(100))


def test_repr_and_stats():
    ds = rd.range(10).map_batches(_double)
    assert repr(ds) == "MapBatches(_double)\n+- Dataset(num_rows=10, schema={id: int64})"
    assert repr(rd.range(3)) == "Dataset(num_rows=3, schema={id: int64})"
    m = ds.materialize()
    assert repr(m).startswith("shape: (10, 1)")
    st = m.stats()
    assert st.startswith("Operator 1 ReadRange->MapBatches(_double): ")
    assert "* Output num rows per block:" in st and "Dataset throughput:" in st
