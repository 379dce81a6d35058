"""Schedulers, stoppers and the report() semantics they rely on, with real trainables.

Every expectation here follows from the algorithm's definition and was checked against Ray
2.60 running the same script (the iteration each trial ends at, which trial PBT exploits).
None depends on timing: report() returns only after the driver decided on the result, and
where trials run side by side the scheduler's decision does not depend on their order
(synchronous PBT, HyperBand's rungs) or the trials run one at a time."""

import json
import os
import re
import time

import pytest

from mpiray import train, tune
from mpiray.tune.schedulers import (ASHAScheduler, HyperBandScheduler, MedianStoppingRule,
                                    PopulationBasedTraining, ResourceChangingScheduler)

pytestmark = pytest.mark.usefixtures("ray_cluster")


def rc(tmp_path, **kw):
    kw.setdefault("verbose", 0)
    return tune.RunConfig(storage_path=str(tmp_path), name=kw.pop("name", "exp"), **kw)


def iterations(grid):
    return {r.config["q"]: r.metrics["training_iteration"] for r in grid}


def logged_iterations(result):
    with open(os.path.join(result.path, "result.json")) as f:
        return [json.loads(line)["training_iteration"] for line in f]


def test_report_returns_after_the_drivers_decision(tmp_path):
    """Ray's semantics: a stop decided on iteration 3 ends the trial inside report(3); the
    trainable never computes iteration 4, and report(i) returns after the callbacks saw i."""
    seen = {}

    class Seen(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            seen[result["training_iteration"]] = time.time()

    def train_fn(config):
        log = os.path.join(tune.get_context().get_trial_dir(), "returned.txt")
        for i in range(1, 50):
            with open(log, "a") as f:
                f.write(f"computing {i}\n")
            tune.report({"i": i})
            with open(log, "a") as f:
                f.write(f"returned {i} {time.time()!r}\n")

    g = tune.Tuner(train_fn, run_config=rc(tmp_path, stop={"training_iteration": 3}, callbacks=[Seen()])).fit()
    (r,) = list(g)
    assert r.metrics["training_iteration"] == 3 and r.metrics["done"] is True
    lines = open(os.path.join(r.path, "returned.txt")).read().split("\n")
    computed = [int(line.split()[1]) for line in lines if line.startswith("computing")]
    returned = {int(line.split()[1]): float(line.split()[2]) for line in lines if line.startswith("returned")}
    assert computed == [1, 2, 3], computed        # nothing ran past the stop
    assert sorted(returned) == [1, 2]             # report(3) did not return: the trial ended there
    for i, t in returned.items():
        assert t >= seen[i], (i, t, seen[i])      # report(i) returned after the driver processed i
    assert logged_iterations(r) == [1, 2, 3]


def test_asha_stops_bad_trials_at_their_rungs(tmp_path):
    """Rungs at 2, 4, 8, 16 (grace 2, factor 2); one trial at a time, so each trial is
    compared with all earlier ones. q=3 reports a falling score (100 - i)."""
    def train_fn(config):
        for i in range(1, 21):
            tune.report({"score": config["q"] * i if config["q"] != 3 else 100 - i})

    sched = ASHAScheduler(max_t=20, grace_period=2, reduction_factor=2)
    g = tune.Tuner(train_fn, param_space={"q": tune.grid_search([4, 8, 2, 6, 3, 7, 1, 5])},
                   tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=sched, max_concurrent_trials=1),
                   run_config=rc(tmp_path)).fit()
    # q=8 is never below a rung's median; q=2, 1, 5 lose at the first rung; q=3 leads at 2,
    # 4 and 8 with 98, 96, 92 but 84 at 16 is below the median of (4, 8, 6, 7)*16 = 104
    assert iterations(g) == {4: 20, 8: 20, 2: 2, 6: 20, 3: 16, 7: 20, 1: 2, 5: 2}
    assert g.num_terminated == 8
    for r in g:
        assert logged_iterations(r) == list(range(1, r.metrics["training_iteration"] + 1))


def _resumable(config):
    """Counts to 9 and checkpoints every iteration; resumes from its checkpoint."""
    start = 0
    ckpt = tune.get_checkpoint()
    if ckpt:
        start = int(open(os.path.join(ckpt.path, "i")).read())
    for i in range(start, 9):
        d = os.path.join(tune.get_context().get_trial_dir(), "tmpck")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "i"), "w") as f:
            f.write(str(i + 1))
        score = config["q"] * (i + 1) if config["q"] != 5 else 60 - 5 * i
        tune.report({"score": score, "cpus": tune.get_context().get_trial_resources().required_resources["CPU"]},
                    checkpoint=train.Checkpoint.from_directory(d))


def test_hyperband_brackets_halve_at_their_milestones(tmp_path):
    """max_t=9, eta=3: Ray's band is bracket s=0 (3 trials straight to 9), s=1 (5 trials,
    milestone 3, the best ceil(5/3)=2 go on to 9), s=2 (9 slots, milestone 1; here 1 trial).
    Trials pause at the milestone until their bracket is complete and resume from their
    checkpoints. q=5 falls (60 - 5i): best at the milestone 3, it goes on."""
    hb = HyperBandScheduler(max_t=9, reduction_factor=3)
    g = tune.Tuner(_resumable, param_space={"q": tune.grid_search(list(range(1, 10)))},
                   tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=hb),
                   run_config=rc(tmp_path)).fit()
    assert iterations(g) == {1: 9, 2: 9, 3: 9, 4: 3, 5: 9, 6: 3, 7: 3, 8: 9, 9: 9}
    assert g.num_terminated == 9 and hb.state()["num_stopped"] == 3
    for r in g:    # paused and resumed trials log every iteration once
        assert logged_iterations(r) == list(range(1, r.metrics["training_iteration"] + 1))


def test_median_stopping_rule_compares_with_trials_that_got_that_far(tmp_path):
    """One at a time (min_time_slice keeps trials from yielding). A trial stops at t >= 2
    when its best score is below the median of the running means (over 2..t) of the trials
    that reached t; with fewer than 2 such trials it goes on."""
    def train_fn(config):
        for i in range(1, 9):
            tune.report({"score": config["q"] * i + (10 if i == 1 else 0)})

    msr = MedianStoppingRule(time_attr="training_iteration", grace_period=2, min_samples_required=2,
                             min_time_slice=100)
    g = tune.Tuner(train_fn, param_space={"q": tune.grid_search([5, 4, 3, 1, 6, 2])},
                   tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=msr, max_concurrent_trials=1),
                   run_config=rc(tmp_path)).fit()
    # q=3 at t=4: best 13 (t=1: 3+10) < median(mean 5*2..5*4=15, mean 4*2..4*4=12) = 13.5
    assert iterations(g) == {5: 8, 4: 8, 3: 4, 1: 4, 6: 8, 2: 5}


def _pbt_fn(config):
    value, origin, start = 0.0, tune.get_context().get_trial_id(), 0
    ckpt = tune.get_checkpoint()
    if ckpt:
        with open(os.path.join(ckpt.path, "state.json")) as f:
            st = json.load(f)
        value, origin, start = st["value"], st["origin"], st["iter"]
    for i in range(start, config.get("iters", 12)):
        value += config["lr"]
        d = os.path.join(tune.get_context().get_trial_dir(), f"tmp_{i}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "state.json"), "w") as f:
            json.dump({"value": value, "origin": origin, "iter": i + 1}, f)
        tune.report({"value": value, "origin": origin}, checkpoint=train.Checkpoint.from_directory(d))


def test_synchronous_pbt_copies_the_best_trials_checkpoint(tmp_path):
    """synch=True: every 4 iterations all trials wait for each other, then the worst
    (quantile 1/4 of 4 trials) continues from the best one's checkpoint. lr 2.0 (trial 2)
    leads throughout; lr 0.1, then 0.5, then 1.0 is the worst at 4, 8, 12."""
    pbt = PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=4, synch=True,
                                  hyperparam_mutations={"lr": [0.1, 0.5, 1.0, 2.0]}, quantile_fraction=0.25,
                                  resample_probability=0.0)
    g = tune.Tuner(tune.with_resources(_pbt_fn, {"cpu": 0.5}),
                   param_space={"lr": tune.grid_search([0.1, 0.5, 2.0, 1.0])},
                   tune_config=tune.TuneConfig(metric="value", mode="max", scheduler=pbt),
                   run_config=rc(tmp_path)).fit()
    by_lr0 = {}
    for r in g:
        by_lr0[float(r.path.rsplit("lr=", 1)[1])] = r
    ids = {lr: r.metrics["trial_id"] for lr, r in by_lr0.items()}
    donor = ids[2.0]
    assert [(a, b) for a, b, _ in pbt.exploits] == [(ids[0.1], donor), (ids[0.5], donor), (ids[1.0], donor)]
    assert [os.path.basename(p) for _, _, p in pbt.exploits] == [
        "checkpoint_000003", "checkpoint_000007", "checkpoint_000011"]   # the donor's at 4, 8, 12
    assert by_lr0[0.1].metrics["origin"] == donor          # continued from the donor's state
    assert by_lr0[0.1].metrics["value"] >= 8 + 8 * 1.0      # 8 at the copy, then lr >= 1.0
    assert by_lr0[2.0].metrics["value"] == pytest.approx(24.0)
    for r in g:
        assert logged_iterations(r) == list(range(1, 13))
    with open(os.path.join(g.experiment_path, "pbt_global.txt")) as f:
        assert len(f.readlines()) == 3


def _wait_file(path, timeout=60.0):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        if time.time() > deadline:
            raise TimeoutError(f"barrier {os.path.basename(path)} not reached in {timeout} s")
        time.sleep(0.01)


def _async_pbt_fn(config):
    """lr=0.1 (weak) or 2.0 (strong). File barriers fix the order of events that asynchronous
    PBT depends on (not their timing):
    - both trials pass iteration 1 before either goes on, so neither reaches a perturbation
      point while the other is still starting (PBT pauses a trial there to give a PENDING one
      its turn: the weak trial could otherwise run all 16 iterations before the strong one's
      actor is up, and nothing would be exploited);
    - the strong trial reports iteration 8 only once the weak one's score at 4 is known (so at
      8 the strong one is the upper quantile and keeps its checkpoint);
    - the weak trial reports 8 only after the strong one's 8 was decided (so the weak one is
      the lower quantile there and copies that checkpoint);
    - the strong trial goes past 11 only once the weak one was exploited (so it is still
      running, and ranked, when the weak one reaches 8).
    The roles come from the trial's directory (its original config), not from ``config``: an
    exploited weak trial runs on with the strong one's explored lr."""
    trial_dir = tune.get_context().get_trial_dir()
    exp = os.path.dirname(trial_dir)
    me = tune.get_context().get_trial_id()
    value, origin, start = 0.0, me, 0
    ckpt = tune.get_checkpoint()
    if ckpt:
        with open(os.path.join(ckpt.path, "state.json")) as f:
            st = json.load(f)
        value, origin, start = st["value"], st["origin"], st["iter"]
        if origin != me:
            open(os.path.join(exp, "exploited"), "w").close()
    strong = float(re.search(r"lr=([0-9.]+)", os.path.basename(trial_dir)).group(1)) == 2.0
    role, other = ("strong", "weak") if strong else ("weak", "strong")
    for i in range(start, 16):
        value += config["lr"]
        if strong and i + 1 == 8:
            _wait_file(os.path.join(exp, "weak_scored_4"))
        if strong and i + 1 == 12:
            _wait_file(os.path.join(exp, "exploited"))
        if not strong and i + 1 == 8:
            _wait_file(os.path.join(exp, "strong_scored_8"))
        d = os.path.join(trial_dir, f"tmp_{i}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "state.json"), "w") as f:
            json.dump({"value": value, "origin": origin, "iter": i + 1}, f)
        try:
            tune.report({"value": value, "origin": origin}, checkpoint=train.Checkpoint.from_directory(d))
        finally:
            # report(i) returned or ended the trial: either way the driver decided on result i
            if i + 1 == 1:
                open(os.path.join(exp, f"{role}_passed_1"), "w").close()
            if not strong and i + 1 == 4:
                open(os.path.join(exp, "weak_scored_4"), "w").close()
            if strong and i + 1 == 8:
                open(os.path.join(exp, "strong_scored_8"), "w").close()
        if i + 1 == 1:
            _wait_file(os.path.join(exp, f"{other}_passed_1"))


@pytest.mark.timeout(240)
def test_asynchronous_pbt_exploits_the_better_trial(tmp_path):
    """Two trials, quantile 1/2: the weak trial copies the strong one's checkpoint at its
    perturbation point 8 and then gains >= 1.0 a step."""
    pbt = PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=4,
                                  hyperparam_mutations={"lr": [0.1, 0.5, 1.0, 2.0]}, quantile_fraction=0.5,
                                  resample_probability=0.0)
    g = tune.Tuner(tune.with_resources(_async_pbt_fn, {"cpu": 0.5}),
                   param_space={"lr": tune.grid_search([0.1, 2.0])},
                   tune_config=tune.TuneConfig(metric="value", mode="max", scheduler=pbt),
                   run_config=rc(tmp_path)).fit()
    weak, strong = sorted(g, key=lambda r: r.path.rsplit("lr=", 1)[1])
    assert pbt.exploits and pbt.exploits[0][:2] == (weak.metrics["trial_id"], strong.metrics["trial_id"])
    with open(os.path.join(pbt.exploits[0][2], "state.json")) as f:
        assert json.load(f)["iter"] == 8       # the strong trial's checkpoint of iteration 8
    assert weak.metrics["origin"] == strong.metrics["trial_id"]
    assert weak.metrics["value"] > 10
    assert g.num_terminated == 2
    # the weak trial continues at the iteration of the copied checkpoint: its log is its own
    # iterations 1-8, then the donor's from 9 on. Later either trial may exploit the other
    # (the weak one runs on with an lr explored from 2.0, and the strong one's 12 may be
    # ranked below the weak one's 16): it then jumps back or ahead to the iteration of the
    # copied checkpoint, as in Ray. So only the part up to 12 is fixed.
    its = logged_iterations(weak)
    assert its[:12] == list(range(1, 13)), its
    assert logged_iterations(strong)[:12] == list(range(1, 13))


def test_resource_changing_scheduler_gives_a_lone_trial_the_cluster(tmp_path):
    rcs = ResourceChangingScheduler()
    g = tune.Tuner(tune.with_resources(_resumable, {"cpu": 0.5}), param_space={"q": tune.grid_search([1])},
                   tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=rcs),
                   run_config=rc(tmp_path)).fit()
    (r,) = list(g)
    assert len(rcs.changes) == 1 and r.metrics["cpus"] == 2.0 and r.metrics["training_iteration"] == 9
    assert logged_iterations(r) == list(range(1, 10))


def test_stoppers_stop_at_the_reported_iteration(tmp_path):
    from mpiray.tune.stopper import (CombinedStopper, ExperimentPlateauStopper, MaximumIterationStopper,
                                     TimeoutStopper, TrialPlateauStopper)

    def train_fn(config):
        for i in range(1000):
            tune.report({"v": 1.0 if i > 2 else float(i), "i": i, "w": 5.0 if i == 0 else 1.0})
            time.sleep(0.002)

    g = tune.Tuner(train_fn, run_config=rc(tmp_path, name="a", stop=MaximumIterationStopper(7))).fit()
    assert g[0].metrics["training_iteration"] == 7
    # v = 0, 1, 2, 1, 1, 1: the last 3 have std 0 at iteration 6
    g = tune.Tuner(train_fn, run_config=rc(tmp_path, name="b", stop=TrialPlateauStopper("v", num_results=3,
                                                                                        grace_period=3))).fit()
    assert g[0].metrics["training_iteration"] == 6
    g = tune.Tuner(train_fn, run_config=rc(tmp_path, name="c", stop=lambda tid, r: r["i"] >= 4)).fit()
    assert g[0].metrics["i"] == 4 and g[0].metrics["done"] is True
    g = tune.Tuner(train_fn, run_config=rc(tmp_path, name="d", stop={"i": 5})).fit()
    assert g[0].metrics["i"] == 5
    # w = 5, 1, 1, 1, 1: the 3 lowest are all 1 (std 0) from the 4th result on; patience 2
    # ends the experiment at the 2nd plateaued result (Ray counts patience with >=)
    eps = ExperimentPlateauStopper("w", top=3, mode="min", patience=2)
    g = tune.Tuner(train_fn, run_config=rc(tmp_path, name="e", stop=eps)).fit()
    assert g[0].metrics["training_iteration"] == 5
    start = time.time()
    g = tune.Tuner(train_fn, param_space={"k": tune.grid_search([1, 2])},
                   run_config=rc(tmp_path, name="f", stop=CombinedStopper(TimeoutStopper(1.0),
                                                                           MaximumIterationStopper(10 ** 6)))).fit()
    assert time.time() - start < 30 and g.num_terminated == 2
    assert all(r.metrics["training_iteration"] < 1000 for r in g)
