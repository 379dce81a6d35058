#!/usr/bin/env bash
# Submits a batch script that runs the quickstart with srun, waits for the job, checks its
# output. Usage: sbatch-quickstart.sh <quickstart binary>
set -euo pipefail
bin=$1
work=$(mktemp -d /tmp/mpiray-sbatch.XXXXXX)
trap 'rm -rf "$work"' EXIT
cat > "$work/job.sh" <<JOB
#!/bin/bash
#SBATCH --job-name=mpiray-quickstart
#SBATCH --nodes=2
#SBATCH --ntasks=4
#SBATCH --time=00:05:00
#SBATCH --output=$work/out.txt
srun $bin
JOB
id=$(sbatch --parsable "$work/job.sh")
echo "submitted job $id"
for _ in $(seq 600); do
  state=$(squeue -h -j "$id" -o %T 2>/dev/null || true)
  [ -z "$state" ] && break
  sleep 0.1
done
cat "$work/out.txt"
grep -q "quickstart OK" "$work/out.txt"
