"""Checks for tests/slurm/tune-walltime.sh.

snapshot <exp> <file>: after the interrupted first run, record each trial's logged iterations
    (every trial directory holds its results; the journal its state) and require that the run
    was interrupted with trials running and trials that never started.
final <exp> <file>: after the requeued run, every trial has iterations 1..20 exactly once;
    trials finished in the first run did not run again; interrupted ones resumed from their
    checkpoint (in the second run, from the iteration of their last checkpoint), the others
    ran once, in the second run."""
import json
import os
import sys

ITERS = 20


def trials(exp):
    """trial id -> directory, from the journal."""
    out = {}
    with open(os.path.join(exp, "experiment_journal.jsonl")) as f:
        for line in f:
            e = json.loads(line)
            if e.get("ev") == "trial":
                out[e["id"]] = os.path.join(exp, e["path"])
    return out


def iterations(d):
    try:
        with open(os.path.join(d, "result.json")) as f:
            return [json.loads(line)["training_iteration"] for line in f]
    except FileNotFoundError:
        return []


def journal(exp):
    with open(os.path.join(exp, "experiment_journal.jsonl")) as f:
        return [json.loads(line) for line in f]


def starts(d):
    try:
        with open(os.path.join(d, "starts.txt")) as f:
            return [line.split() for line in f]
    except FileNotFoundError:
        return []


def snapshot(exp, out):
    ev = journal(exp)
    assert any(e.get("ev") == "interrupted" for e in ev), "no 'interrupted' event in the journal"
    interrupted = {e["id"] for e in ev if e.get("status") == "INTERRUPTED"}
    done = {e["id"] for e in ev if e.get("status") == "TERMINATED"}
    snap = {d: {"iters": iterations(d), "interrupted": tid in interrupted, "done": tid in done}
            for tid, d in trials(exp).items()}
    print("after the first run:", {os.path.basename(d): (len(s["iters"]), "done" if s["done"] else
                                                          "interrupted" if s["interrupted"] else "-")
                                   for d, s in snap.items()})
    assert interrupted, "no trial was running at the early warning"
    assert len(snap) < 8 or any(not s["iters"] for s in snap.values()), \
        "every trial had started: nothing left for the restore to start"
    for d, s in snap.items():
        assert s["iters"] == list(range(1, len(s["iters"]) + 1)), (d, s["iters"])
    with open(out, "w") as f:
        json.dump(snap, f)


def final(exp, snap_file):
    with open(snap_file) as f:
        snap = json.load(f)
    all_trials = trials(exp)
    assert len(all_trials) == 8, all_trials
    for tid, d in all_trials.items():
        its = iterations(d)
        assert its == list(range(1, ITERS + 1)), (d, its)          # none repeated, none lost
        st = starts(d)
        before = snap.get(d)
        if before and before["done"]:
            assert len(st) == 1 and st[0][1] == "0", (d, st)        # finished: never ran again
        elif before and before["iters"]:
            # interrupted mid-way: resumed in the requeued run from its last checkpoint
            assert len(st) == 2 and st[1][1] != "0" and int(st[1][3]) > 0, (d, st)
            assert int(st[1][3]) <= len(before["iters"]), (d, st, before)
        else:
            # never started (or never reported) before the warning: ran in the requeued run
            assert st and st[-1][1] != "0" and st[-1][3] == "0", (d, st)
    print("every trial: iterations 1..20 once; finished ones kept, interrupted ones resumed, "
          "never-started ones run")


if __name__ == "__main__":
    {"snapshot": snapshot, "final": final}[sys.argv[1]](*sys.argv[2:])
