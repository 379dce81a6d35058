#!/usr/bin/env bash
# mpiray.train and the Slurm walltime: a --requeue job gets the early-warning signal (what
# `#SBATCH --signal=USR1@120` delivers; sent here with scancel so the test need not wait for
# a time limit) in the middle of training. The loops see train.get_preemption_info(), save a
# checkpoint, the job ends cleanly; requeued, the unchanged script resumes from that checkpoint
# (not from the older periodic one) and finishes.
# Run by ctest -L slurm (tests/slurm/CMakeLists.txt: slurm/train_walltime_requeue).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/mpiray-train-walltime.XXXXXX)
trap 'rm -rf "$work"' EXIT
cat > "$work/job.sh" <<JOB
#!/bin/bash
#SBATCH --job-name=mpiray-train-walltime
#SBATCH --ntasks=3
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=$work/out.txt
export MPIRAY_TRAIN_WALLTIME_GRACE_S=20
srun python3 $here/scripts/walltime.py $work/results
JOB
id=$(sbatch --parsable "$work/job.sh")
echo "job $id submitted"
wait_for() {  # wait_for <pattern> <seconds>
  for _ in $(seq $(( $2 * 10 ))); do
    grep -q "$1" "$work/out.txt" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "timed out waiting for '$1'"; cat "$work/out.txt" 2>/dev/null; return 1
}
job_gone() {
  for _ in $(seq 600); do [ -z "$(squeue -h -j "$id" -o %T 2>/dev/null)" ] && return 0; sleep 0.1; done
  echo "job $id did not end"; return 1
}
wait_for "EPOCH 7" 120
scancel --signal=USR1 "$id"
wait_for "SAVED ON WARNING AT EPOCH" 30
job_gone
if grep -q "TRAINING DONE" "$work/out.txt"; then
  echo "the job should have stopped at the warning"; cat "$work/out.txt"; exit 1
fi
saved=$(grep -o "SAVED ON WARNING AT EPOCH [0-9]*" "$work/out.txt" | head -1 | awk '{print $NF}')
echo "first run ended after saving epoch $saved; requeueing"
scontrol requeue "$id"
wait_for "TRAINING DONE" 180
job_gone
cat "$work/out.txt"
grep -q "RESUMED FROM EPOCH $((saved + 1)) (checkpoint_" "$work/out.txt" || {
  echo "the requeued run did not resume from the checkpoint saved on the warning (epoch $saved)"; exit 1; }
grep -q "TRAINING DONE run=ray_train_run-slurm$id epoch=29 start=$((saved + 1))" "$work/out.txt"
# every epoch is in the run's progress.csv (epochs after the warning may appear twice: made again)
python3 - "$work/results/ray_train_run-slurm$id/progress.csv" "$saved" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
epochs = [int(r["epoch"]) for r in rows]
saved = int(sys.argv[2])
assert epochs[-1] == 29 and set(epochs) == set(range(30)), epochs
print("walltime requeue OK: saved at epoch", saved, "rows", len(rows))
PY
