#!/usr/bin/env bash
# run-chaos.sh --seed S --kills K [--keep N] [--min-gap S] [--max-gap S] -- launcher args...
#
# Runs one chaos job: killer.py in the background (seeded, bounded, logged) SIGKILLs random
# workers of the run once the driver has created $MPIRAY_CHAOS_START; the launcher runs the
# job. Prints the killer's log and returns the driver's exit status (under srun, whose own
# status is 137 after a killed task, the one the head wrote to MPIRAY_EXIT_STATUS_FILE).
# Meant to run inside tests/integration/run-checked.sh, which sets MPIRAY_TEST_TAG and checks
# that nothing is left behind.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
killer_args=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  killer_args+=("$1" "$2")
  shift 2
done
shift
: "${MPIRAY_TEST_TAG:?run-chaos.sh runs inside run-checked.sh (MPIRAY_TEST_TAG)}"
work=$(mktemp -d "${TMPDIR:-/tmp}/mpiray-chaos.XXXXXX")
export MPIRAY_CHAOS_START=$work/start MPIRAY_CHAOS_LOG=$work/killer.log
export MPIRAY_EXIT_STATUS_FILE=$work/status
python3 "$here/killer.py" --tag "$MPIRAY_TEST_TAG" --comm mpiray_chaos \
  --start "$MPIRAY_CHAOS_START" --log "$MPIRAY_CHAOS_LOG" "${killer_args[@]}" &
killer=$!
"$@"
rc=$?
kill "$killer" 2>/dev/null
wait "$killer" 2>/dev/null
echo "--- killer log"
cat "$MPIRAY_CHAOS_LOG" 2>/dev/null
echo "--- launcher exit status $rc"
status=$(cat "$MPIRAY_EXIT_STATUS_FILE" 2>/dev/null)
case "$status" in [0-9]*) rc=$status ;; esac
rm -rf "$work"
exit "$rc"
