#!/usr/bin/env bash
# A real time limit: `#SBATCH --time=1 --signal=USR1@50` makes Slurm send the early warning
# about 10 s (up to ~40 s, Slurm checks periodically) after the job starts; the driver must
# checkpoint and end cleanly before the limit. Usage: timelimit-checkpoint.sh <mpiray_itest>
set -euo pipefail
bin=$1
work=$(mktemp -d /tmp/mpiray-timelimit.XXXXXX)
trap 'rm -rf "$work"' EXIT
cat > "$work/job.sh" <<JOB
#!/bin/bash
#SBATCH --job-name=mpiray-timelimit
#SBATCH --ntasks=3
#SBATCH --time=1
#SBATCH --signal=USR1@50
#SBATCH --output=$work/out.txt
export MPIRAY_TEST_CHECKPOINT=$work/checkpoint
srun $bin checkpoint
echo "job step ended with \$?"
JOB
id=$(sbatch --parsable "$work/job.sh")
start=$(date +%s)
for _ in $(seq 1200); do
  [ -z "$(squeue -h -j "$id" -o %T)" ] && break
  sleep 0.1
done
cat "$work/out.txt"
echo "job $id ran $(( $(date +%s) - start )) s"
grep -q "checkpoint saved 1005" "$work/out.txt"
grep -q "job step ended with 0" "$work/out.txt"   # a clean end, before the limit
[ "$(cat "$work/checkpoint")" = 1005 ]
