#!/usr/bin/env bash
# The recipe of docs/fault-tolerance.md for a job whose exit status must be the driver's under
# srun: a worker dies mid-job (srun itself then reports 137), the driver finishes, and the job
# returns the status the head wrote to MPIRAY_EXIT_STATUS_FILE.
# Usage: exit-status-file.sh <mpiray_itest binary>
set -uo pipefail
itest=$1
export MPIRAY_EXIT_STATUS_FILE=$(mktemp /tmp/mpiray-exit.XXXXXX)
srun -n 4 "$itest" worker_death
rc=$?
echo "srun's own exit status: $rc"
status=$(cat "$MPIRAY_EXIT_STATUS_FILE" 2>/dev/null)
rm -f "$MPIRAY_EXIT_STATUS_FILE"
case "$status" in [0-9]*) rc=$status ;; esac
echo "the job's exit status: $rc"
exit "$rc"
