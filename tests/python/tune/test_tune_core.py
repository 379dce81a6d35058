"""mpiray.tune with real trainables on an embedded cluster (num_cpus=2)."""

import json
import os
import random
import struct
import time

import pytest

import mpiray as ray
from mpiray import train, tune
from mpiray.tune.schedulers import ASHAScheduler
from mpiray.tune.search import BasicVariantGenerator, ConcurrencyLimiter, Repeater

pytestmark = pytest.mark.usefixtures("ray_cluster")


def rc(tmp_path, **kw):
    kw.setdefault("verbose", 0)
    return tune.RunConfig(storage_path=str(tmp_path), name=kw.pop("name", "exp"), **kw)


def quadratic(config):
    for i in range(3):
        tune.report({"loss": (config["x"] - 2) ** 2 + 1.0 / (i + 1), "y": config["y"]})


def read_events(path):
    """Scalars of a TensorBoard event file: {tag: [(step, value)]}."""
    from tensorboardX.proto.event_pb2 import Event
    out = {}
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos < len(data):
        (n,) = struct.unpack("Q", data[pos:pos + 8])
        ev = Event()
        ev.ParseFromString(data[pos + 12:pos + 12 + n])
        pos += 12 + n + 4
        for v in ev.summary.value:
            if v.HasField("simple_value"):
                out.setdefault(v.tag, []).append((ev.step, v.simple_value))
    return out


def test_grid_search_results_and_trial_files(tmp_path):
    grid = tune.Tuner(quadratic, param_space={"x": tune.grid_search([0, 1, 2]), "y": tune.uniform(5, 6),
                                              "nested": {"z": tune.choice(["a", "b"])}},
                      tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=2),
                      run_config=rc(tmp_path)).fit()
    assert len(grid) == 6 and grid.num_terminated == 6 and grid.num_errors == 0
    assert sorted(r.config["x"] for r in grid) == [0, 0, 1, 1, 2, 2]
    assert all(5 <= r.config["y"] <= 6 and r.config["nested"]["z"] in "ab" for r in grid)
    best = grid.get_best_result()
    assert best.config["x"] == 2 and best.metrics["loss"] == pytest.approx(1 / 3)
    assert best.metrics["training_iteration"] == 3 and best.metrics["done"] is True
    worst = grid.get_best_result(metric="loss", mode="max")
    assert worst.config["x"] == 0
    df = grid.get_dataframe()
    assert len(df) == 6 and "config/x" in df.columns and "loss" in df.columns
    files = sorted(os.listdir(best.path))
    assert {"params.json", "params.pkl", "progress.csv", "result.json"} <= set(files)
    with open(os.path.join(best.path, "params.json")) as f:
        assert json.load(f)["x"] == 2
    with open(os.path.join(best.path, "result.json")) as f:
        lines = [json.loads(l) for l in f]
    assert [l["training_iteration"] for l in lines] == [1, 2, 3] and lines[0]["config"]["x"] == 2
    assert len(best.metrics_dataframe) == 3 and list(best.metrics_dataframe["loss"])[-1] == pytest.approx(1 / 3)
    events = [f for f in files if f.startswith("events.out.tfevents")]
    assert events
    scalars = read_events(os.path.join(best.path, events[0]))
    assert [s for s, _ in scalars["ray/tune/loss"]][:3] == [1, 2, 3]   # then the hparams summary
    assert os.path.exists(os.path.join(str(tmp_path), "exp", "experiment_journal.jsonl"))
    assert tune.Tuner.can_restore(os.path.join(str(tmp_path), "exp"))


def test_search_space_primitives():
    rng = random.Random(0)
    for _ in range(200):
        assert 1 <= tune.randint(1, 4).sample(random_state=rng) <= 3
        assert tune.qrandint(0, 10, 5).sample(random_state=rng) in (0, 5, 10)
        v = tune.loguniform(1e-4, 1e-1).sample(random_state=rng)
        assert 1e-4 <= v <= 1e-1
        assert tune.quniform(0, 1, 0.25).sample(random_state=rng) in (0, 0.25, 0.5, 0.75, 1.0)
        assert 1 <= tune.lograndint(1, 100).sample(random_state=rng) < 100
        assert tune.choice([3, 4]).sample(random_state=rng) in (3, 4)
    from mpiray.tune.search.variant_generator import generate_variants
    space = {"a": tune.grid_search([1, 2]), "b": {"c": tune.sample_from(lambda spec: spec.config.a * 10)},
             "d": tune.randn(0, 1)}
    variants = [cfg for _, cfg in generate_variants(space, random.Random(1))]
    assert [v["b"]["c"] for v in variants] == [10, 20]
    with pytest.raises(ValueError):
        tune.loguniform(0, 1)


@pytest.mark.parametrize("which", ["optuna", "hyperopt"])
def test_model_based_searchers_suggest(tmp_path, which):
    def objective(config):
        tune.report({"loss": (config["x"] - 3) ** 2 + (config["k"] != "good")})

    space = {"x": tune.uniform(-10, 10), "k": tune.choice(["good", "bad"])}
    if which == "optuna":
        from mpiray.tune.search.optuna import OptunaSearch
        searcher = OptunaSearch(seed=1)
    else:
        from mpiray.tune.search.hyperopt import HyperOptSearch
        searcher = HyperOptSearch(n_initial_points=5, random_state_seed=1)
    grid = tune.Tuner(objective, param_space=space,
                      # one at a time: each suggestion sees every earlier result (deterministic)
                      tune_config=tune.TuneConfig(metric="loss", mode="min", search_alg=searcher, num_samples=24,
                                                  max_concurrent_trials=1),
                      run_config=rc(tmp_path, name=which)).fit()
    assert len(grid) == 24 and grid.num_terminated == 24
    if which == "optuna":
        assert len(searcher.study.trials) == 24
        assert all(t.state.name == "COMPLETE" for t in searcher.study.trials)
    else:
        assert len(searcher._trials.trials) == 24
    best = grid.get_best_result()
    assert best.metrics["loss"] < 1.5, best.metrics
    xs = [r.config["x"] for r in grid]
    late = [abs(x - 3) for x in xs[-8:]]
    early = [abs(x - 3) for x in xs[:8]]
    assert sum(late) < sum(early)             # the model moved toward the optimum


def test_trainable_that_raises_is_an_errored_trial(tmp_path):
    def train_fn(config):
        tune.report({"a": 1})
        if config["x"] == 1:
            raise ValueError("boom in trial")
        tune.report({"a": 2})

    grid = tune.Tuner(train_fn, param_space={"x": tune.grid_search([0, 1, 2])}, run_config=rc(tmp_path)).fit()
    assert grid.num_errors == 1 and grid.num_terminated == 2
    (err,) = grid.errors
    assert isinstance(err, ValueError) and "boom in trial" in str(err) and "train_fn" in str(err)
    bad = [r for r in grid if r.error is not None][0]
    assert bad.metrics["a"] == 1
    assert "boom in trial" in open(os.path.join(bad.path, "error.txt")).read()


def test_metric_never_reported_names_the_reported_keys(tmp_path):
    def train_fn(config):
        tune.report({"accuracy": 0.5, "loss_value": 1.0})

    with pytest.raises(ValueError, match="'loss'.*accuracy.*loss_value"):
        tune.Tuner(train_fn, tune_config=tune.TuneConfig(metric="loss", mode="min", scheduler=ASHAScheduler()),
                   run_config=rc(tmp_path)).fit()


def test_bad_options_and_bad_restore(tmp_path):
    with pytest.raises(ValueError, match="reduction_factr"):
        ASHAScheduler(reduction_factr=3)
    with pytest.raises(ValueError, match="sead"):
        from mpiray.tune.search.optuna import OptunaSearch
        OptunaSearch(sead=1)
    with pytest.raises(ValueError, match="bogus"):
        tune.run(quadratic, bogus=1)
    with pytest.raises(ValueError, match="mode"):
        tune.TuneConfig(mode="maximum")
    with pytest.raises(ValueError, match="needs a metric"):
        tune.Tuner(quadratic, tune_config=tune.TuneConfig(scheduler=ASHAScheduler()), run_config=rc(tmp_path)).fit()
    assert not tune.Tuner.can_restore(str(tmp_path))
    with pytest.raises(ValueError, match="experiment_journal.jsonl"):
        tune.Tuner.restore(str(tmp_path), quadratic)


class Counter(tune.Trainable):
    def setup(self, config):
        self.total = 0
        self.step_size = config["step"]

    def step(self):
        self.total += self.step_size
        return {"total": self.total}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "total.txt"), "w") as f:
            f.write(str(self.total))

    def load_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "total.txt")) as f:
            self.total = int(f.read())


def test_class_trainable_checkpoints_and_stop(tmp_path):
    grid = tune.Tuner(Counter, param_space={"step": tune.grid_search([1, 3])},
                      run_config=rc(tmp_path, stop={"training_iteration": 5},
                                    checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=2, num_to_keep=2,
                                                                            checkpoint_at_end=True))).fit()
    for r in grid:
        assert r.metrics["training_iteration"] == 5
        assert r.metrics["total"] == 5 * r.config["step"]
        ckpts = sorted(d for d in os.listdir(r.path) if d.startswith("checkpoint_"))
        assert len(ckpts) == 2, ckpts
        with open(os.path.join(r.checkpoint.path, "total.txt")) as f:
            assert int(f.read()) == 5 * r.config["step"]


def test_searcher_wrappers_callbacks_and_tune_run(tmp_path):
    events = []

    class Rec(tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            events.append(("start", trial.trial_id))

        def on_trial_result(self, iteration, trials, trial, result, **info):
            events.append(("result", trial.trial_id))

        def on_trial_complete(self, iteration, trials, trial, **info):
            events.append(("complete", trial.trial_id))

    from mpiray.tune.search.optuna import OptunaSearch
    rep = Repeater(OptunaSearch(seed=0), repeat=2)
    g = tune.Tuner(quadratic, param_space={"x": tune.uniform(0, 4), "y": 1},
                   tune_config=tune.TuneConfig(metric="loss", mode="min", search_alg=rep, num_samples=6),
                   run_config=rc(tmp_path, name="rep", callbacks=[Rec()])).fit()
    xs = sorted(r.config["x"] for r in g)
    assert len(set(xs)) == 3 and all(r.config["__trial_index__"] in (0, 1) for r in g)
    assert sum(1 for e in events if e[0] == "start") == 6 and sum(1 for e in events if e[0] == "result") == 18
    assert sum(1 for e in events if e[0] == "complete") == 6
    analysis = tune.run(quadratic, config={"x": tune.grid_search([1, 2, 3]), "y": 0}, metric="loss", mode="min",
                        storage_path=str(tmp_path), name="run", verbose=0)
    assert analysis.best_config["x"] == 2 and len(analysis.trials) == 3
    assert analysis.best_result["loss"] == pytest.approx(1 / 3)
    assert len(analysis.dataframe()) == 3
    again = tune.ExperimentAnalysis(os.path.join(str(tmp_path), "run"), default_metric="loss", default_mode="min")
    assert again.best_config["x"] == 2


def test_with_parameters_resources_and_reuse(tmp_path):
    import numpy as np
    data = np.arange(100000.0)

    def train_fn(config, data=None):
        t0 = time.time()
        time.sleep(0.2)
        tune.report({"sum": float(data.sum()), "t0": t0, "t1": time.time(), "pid": os.getpid()})

    fn = tune.with_resources(tune.with_parameters(train_fn, data=data), {"cpu": 2})
    g = tune.Tuner(fn, param_space={"k": tune.grid_search([1, 2, 3])}, run_config=rc(tmp_path, name="wp")).fit()
    spans = sorted((r.metrics["t0"], r.metrics["t1"]) for r in g)
    assert all(r.metrics["sum"] == float(data.sum()) for r in g)
    assert all(a[1] <= b[0] + 0.02 for a, b in zip(spans, spans[1:])), spans   # 2 CPUs each: one at a time

    pgf = tune.PlacementGroupFactory([{"CPU": 0.5}, {"CPU": 1}])

    def pg_fn(config):
        res = tune.get_context().get_trial_resources()
        tune.report({"bundles": len(res.bundles)})

    g = tune.Tuner(tune.with_resources(pg_fn, pgf), run_config=rc(tmp_path, name="pg")).fit()
    assert g[0].metrics["bundles"] == 2

    class Reusable(tune.Trainable):
        setups = 0

        def setup(self, config):
            type(self).setups += 1
            self.n = type(self).setups

        def step(self):
            return {"setup_no": self.n, "done": True}

        def reset_config(self, new_config):
            return True

    g = tune.Tuner(Reusable, param_space={"k": tune.grid_search(list(range(6)))},
                   tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=1),
                   run_config=rc(tmp_path, name="reuse")).fit()
    assert g.num_terminated == 6
    assert {r.metrics["setup_no"] for r in g} == {1}       # one instance served all six trials


def _shaped(config):
    """q=1: 10 then 0s; q=2: always 2; q=3: 0s then 3 (10 results, a checkpoint each)."""
    q = config["q"]
    for i in range(1, 11):
        v = {1: 10.0 if i == 1 else 0.0, 2: 2.0, 3: 3.0 if i == 10 else 0.0}[q]
        d = os.path.join(tune.get_context().get_trial_dir(), "tmpck")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "it"), "w") as f:
            f.write(str(i))
        tune.report({"v": v, "nested": {"w": -v}}, checkpoint=train.Checkpoint.from_directory(d))


def test_result_grid_and_experiment_analysis_as_ray(tmp_path):
    g = tune.Tuner(_shaped, param_space={"q": tune.grid_search([1, 2, 3])},
                   tune_config=tune.TuneConfig(metric="v", mode="max"),
                   run_config=rc(tmp_path, name="shape", checkpoint_config=tune.CheckpointConfig(
                       num_to_keep=2, checkpoint_score_attribute="v"))).fit()
    q = lambda r: r.config["q"]   # noqa: E731
    assert q(g.get_best_result()) == 3                       # last: 0, 2, 3
    assert q(g.get_best_result(scope="avg")) == 2            # 1, 2, 0.3
    assert q(g.get_best_result(scope="all")) == 1            # best ever: 10, 2, 3
    assert q(g.get_best_result(scope="last-5-avg")) == 2     # 0, 2, 0.6
    assert q(g.get_best_result(metric="nested/w", mode="max")) == 1   # nested keys flattened with "/"
    with pytest.raises(ValueError, match="scope"):
        g.get_best_result(scope="best")
    last = g.get_dataframe().sort_values("config/q")
    assert list(last["training_iteration"]) == [10, 10, 10] and list(last["v"]) == [0.0, 2.0, 3.0]
    best = g.get_dataframe(filter_metric="v", filter_mode="max").sort_values("config/q")
    assert list(best["training_iteration"]) == [1, 1, 10] and list(best["v"]) == [10.0, 2.0, 3.0]
    assert "nested/w" in best.columns and "logdir" in best.columns
    with pytest.raises(ValueError, match="metric"):
        g.get_dataframe(filter_mode="max")

    def check(analysis):
        trials = {t.config["q"]: t for t in analysis.trials}
        assert analysis.get_best_trial("v", "max", scope="all") is trials[1]
        assert analysis.get_best_config("v", "min", scope="avg") == {"q": 3}
        ck = analysis.get_best_checkpoint(trials[1], "v", "max")     # kept: the best and the latest
        assert open(os.path.join(ck.path, "it")).read() == "1"
        ck = analysis.get_last_checkpoint(trials[1])
        assert open(os.path.join(ck.path, "it")).read() == "10"
        assert len(analysis.trial_dataframes[trials[3].trial_id]) == 10
        assert set(analysis.results_df.index) == set(t.trial_id for t in analysis.trials)
        assert set(analysis.get_all_configs(prefix=True)[trials[2].trial_id]) == {"config/q"}

    with pytest.raises(ValueError, match="metric"):
        tune.ExperimentAnalysis(g.experiment_path).best_config    # as Ray: no defaults from the run
    analysis = tune.ExperimentAnalysis(g.experiment_path, default_metric="v", default_mode="max")
    assert analysis.best_config == {"q": 3}
    check(analysis)
    check(g._analysis)
    # every trial kept exactly 2 checkpoint directories
    assert all(len([d for d in os.listdir(r.path) if d.startswith("checkpoint_")]) == 2 for r in g)


def test_default_storage_is_mpiray_results(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("MPIRAY_RESULTS_DIR", raising=False)
    g = tune.Tuner(quadratic, param_space={"x": 1, "y": 0},
                   run_config=tune.RunConfig(name="where", verbose=0)).fit()
    assert g.experiment_path == os.path.join(str(tmp_path), "mpiray_results", "where")
    assert os.path.exists(os.path.join(g[0].path, "result.json"))
    assert not os.path.exists(os.path.join(str(tmp_path), "ray_results"))
