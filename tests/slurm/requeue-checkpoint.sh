#!/usr/bin/env bash
# Walltime/preemption under Slurm: a --requeue job receives the early-warning signal (what
# `#SBATCH --signal=USR1@120` delivers; sent here with scancel so the test need not wait for a
# time limit), checkpoints and ends cleanly; requeued, it resumes from its checkpoint.
# Usage: requeue-checkpoint.sh <mpiray_itest binary>
set -euo pipefail
bin=$1
work=$(mktemp -d /tmp/mpiray-requeue.XXXXXX)
trap 'rm -rf "$work"' EXIT
cat > "$work/job.sh" <<JOB
#!/bin/bash
#SBATCH --job-name=mpiray-requeue
#SBATCH --ntasks=3
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=$work/out.txt
export MPIRAY_TEST_CHECKPOINT=$work/checkpoint
srun $bin checkpoint
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
wait_for READY 60
scancel --signal=USR1 "$id"
wait_for "checkpoint saved 1005" 30
for _ in $(seq 300); do [ -z "$(squeue -h -j "$id" -o %T)" ] && break; sleep 0.1; done
echo "first run ended; requeueing"
scontrol requeue "$id"
wait_for "finished after resume" 120
grep -q "resumed from checkpoint 1005" "$work/out.txt"
for _ in $(seq 300); do [ -z "$(squeue -h -j "$id" -o %T)" ] && break; sleep 0.1; done
cat "$work/out.txt"
