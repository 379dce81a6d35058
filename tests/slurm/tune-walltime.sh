#!/usr/bin/env bash
# Tune under a real Slurm time limit. slurmctld checks time limits every 30 s and sends the
# early warning at the first check where `now + warn + 30 >= end`, so `#SBATCH --time=2
# --signal=USR1@70` delivers it 20-50 s after the start, while the sweep (tune_sweep.py: 8
# trials of 20 one-second iterations, 2 at a time, ~80 s of work) runs: the experiment saves
# its state, the running trials stop at a report and the job ends cleanly. Requeued (with a
# longer limit), Tuner.restore continues the interrupted trials from their checkpoints and
# starts the ones that never ran; tune_walltime_check.py asserts that no result was repeated
# or lost. Usage: tune-walltime.sh (SLURM_CONF etc. from the CTest environment)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/mpiray-tune-walltime.XXXXXX)
trap 'rm -rf "$work"' EXIT
cat > "$work/job.sh" <<JOB
#!/bin/bash
#SBATCH --job-name=mpiray-tune-walltime
#SBATCH --ntasks=3
#SBATCH --time=2
#SBATCH --signal=USR1@70
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=$work/out.txt
srun python3 $here/tune_sweep.py $work/results
echo "job step ended with \$? (restart \${SLURM_RESTART_COUNT:-0})"
JOB
id=$(sbatch --parsable "$work/job.sh")
echo "job $id submitted"
wait_gone() {
  for _ in $(seq $(( $1 * 10 ))); do [ -z "$(squeue -h -j "$id" -o %T)" ] && return 0; sleep 0.1; done
  echo "job $id still in the queue after $1 s"; cat "$work/out.txt"; scancel "$id"; return 1
}
wait_gone 150
cat "$work/out.txt"
grep -q "Walltime signal: experiment state saved" "$work/out.txt"
grep -q "job step ended with 0 (restart 0)" "$work/out.txt"      # a clean end, before the limit
if grep -q "^RESULT" "$work/out.txt"; then
  echo "the sweep finished before the early warning: nothing was interrupted"; exit 1
fi
python3 "$here/tune_walltime_check.py" snapshot "$work/results/sweep" "$work/snapshot.json"
echo "first run ended; requeueing with a 5-minute limit"
scontrol requeue "$id"
scontrol update JobId="$id" TimeLimit=5
wait_gone 240
cat "$work/out.txt"
grep -q "^RESULT 8 0 8" "$work/out.txt"
python3 "$here/tune_walltime_check.py" final "$work/results/sweep" "$work/snapshot.json"
echo "tune walltime OK"
