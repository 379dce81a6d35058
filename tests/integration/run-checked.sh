#!/usr/bin/env bash
# run-checked.sh [--expect-exit N|nonzero] [--signal SIG --after-line TEXT [--exit-within S]]
#                [--kill-head TEXT [--gone-within S]] [--expect-output TEXT]... -- cmd...
#
# Runs one integration scenario in a private session root and shared-memory directory, then
# fails if anything is left behind: a process of this run, a file under /dev/shm, a session
# directory, or a spill file (MPIRAY_SPILL_DIR points at a private directory too). Optionally
# interrupts the launcher with a signal once it printed a given line, or SIGKILLs the head (the
# pid after "head_pid=" on the first line containing TEXT) and fails unless every process of
# the run is gone within S seconds (default 5).
set -uo pipefail
expect_exit=0
signal=""
after_line=""
kill_head=""
gone_within=5
exit_within=""
expect_output=()
while [ $# -gt 0 ]; do
  case "$1" in
    --expect-exit) expect_exit=$2; shift 2 ;;
    --signal) signal=$2; shift 2 ;;
    --after-line) after_line=$2; shift 2 ;;
    --kill-head) kill_head=$2; after_line=$2; shift 2 ;;
    --gone-within) gone_within=$2; shift 2 ;;
    --exit-within) exit_within=$2; shift 2 ;;
    --expect-output) expect_output+=("$2"); shift 2 ;;
    --) shift; break ;;
    *) echo "run-checked: unknown option $1" >&2; exit 2 ;;
  esac
done
tag="itest-$$-$RANDOM$RANDOM"
root=$(mktemp -d "/tmp/mpiray-itest.XXXXXX")
shm=$(mktemp -d "/dev/shm/mpiray-itest.XXXXXX")
spill=$(mktemp -d "/tmp/mpiray-itest-spill.XXXXXX")
out="$root.out"
export MPIRAY_SESSION_ROOT="$root" MPIRAY_SHM_DIR="$shm" MPIRAY_SPILL_DIR="$spill" \
  MPIRAY_TEST_TAG="$tag"

# Live (non-zombie) processes carrying this run's tag, except this script and its output tee.
tagged() {
  for e in /proc/[0-9]*/environ; do
    p=${e#/proc/}; p=${p%/environ}
    [ "$p" = "$$" ] && continue
    tr '\0' '\n' 2>/dev/null < "$e" | grep -qx "MPIRAY_TEST_TAG=$tag" || continue
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "tee" ] && continue
    alive "$p" && echo "$p"
  done
}
alive() {
  local stat
  read -r stat 2>/dev/null < "/proc/$1/stat" || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != "Z" ] && [ "${stat%% *}" != "X" ]
}

fail=0
if [ -n "$signal" ] || [ -n "$kill_head" ]; then
  "$@" > >(tee "$out") 2>&1 &
  pid=$!
  for _ in $(seq 600); do
    grep -q "$after_line" "$out" 2>/dev/null && break
    sleep 0.1
  done
  grep -q "$after_line" "$out" || { echo "run-checked: never saw '$after_line'"; kill -9 $pid; }
  if [ -n "$kill_head" ]; then
    head_pid=$(grep -m1 "$kill_head" "$out" | sed -n 's/.*head_pid=\([0-9]*\).*/\1/p')
    [ -n "$head_pid" ] || { echo "run-checked: no head_pid= on the '$kill_head' line"; fail=1; }
    procs=$(tagged)
    start=$EPOCHREALTIME
    [ -n "$head_pid" ] && kill -KILL "$head_pid"
    left=$procs
    while [ -n "$left" ]; do
      still=""
      for p in $left; do alive "$p" && still="$still $p"; done
      left=$still
      [ -z "$left" ] && break
      # Give up (and report) well after the limit rather than hang.
      (( $(awk -v s="$start" -v n="$EPOCHREALTIME" 'BEGIN { print (n - s > 30) }') )) && break
      sleep 0.02
    done
    took=$(awk -v s="$start" -v n="$EPOCHREALTIME" 'BEGIN { printf "%.2f", n - s }')
    echo "run-checked: $(echo $procs | wc -w) processes of the job; all gone ${took} s after SIGKILL of the head (pid $head_pid)"
    if [ -n "$left" ] || awk -v t="$took" -v m="$gone_within" 'BEGIN { exit !(t > m) }'; then
      echo "run-checked: still running more than ${gone_within} s after the head died:"
      for p in $left; do echo "  $p $(tr '\0' ' ' < /proc/$p/cmdline 2>/dev/null)"; done
      fail=1
    fi
  else
    start=$EPOCHREALTIME
    kill "-$signal" "$pid"
  fi
  wait "$pid"
  rc=$?
  if [ -n "$exit_within" ] && [ -z "$kill_head" ]; then
    took=$(awk -v s="$start" -v n="$EPOCHREALTIME" 'BEGIN { printf "%.2f", n - s }')
    echo "run-checked: exited ${took} s after SIG$signal"
    if awk -v t="$took" -v m="$exit_within" 'BEGIN { exit !(t > m) }'; then
      echo "run-checked: took longer than ${exit_within} s to exit"; fail=1
    fi
  fi
else
  "$@" 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
fi

if [ "$expect_exit" = "nonzero" ]; then
  [ "$rc" -ne 0 ] || { echo "run-checked: expected a non-zero exit, got 0"; fail=1; }
elif [ "$rc" -ne "$expect_exit" ]; then
  echo "run-checked: exit status $rc, expected $expect_exit"; fail=1
fi
for text in ${expect_output[@]+"${expect_output[@]}"}; do
  grep -q -- "$text" "$out" || { echo "run-checked: output lacks '$text'"; fail=1; }
done

# Leftovers: processes of this run (by the tag in their environment; zombies do not count),
# shared-memory files, session directories. Give exiting processes a moment.
leftovers() {
  local found=""
  for e in /proc/[0-9]*/environ; do
    p=${e#/proc/}; p=${p%/environ}
    [ "$p" = "$$" ] && continue
    if tr '\0' '\n' 2>/dev/null < "$e" | grep -qx "MPIRAY_TEST_TAG=$tag"; then
      state=$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)
      [ "$state" = "Z" ] || [ -z "$state" ] || found="$found process $p ($(tr '\0' ' ' < /proc/$p/cmdline 2>/dev/null))\n"
    fi
  done
  [ -n "$(ls -A "$shm" 2>/dev/null)" ] && found="$found shared memory: $(ls -A "$shm")\n"
  [ -n "$(ls -A "$root" 2>/dev/null)" ] && found="$found session files: $(ls -A "$root")\n"
  [ -n "$(ls -A "$spill" 2>/dev/null)" ] && found="$found spill files: $(ls -AR "$spill")\n"
  printf "%b" "$found"
}
left=""
for _ in $(seq 100); do
  left=$(leftovers)
  [ -z "$left" ] && break
  sleep 0.1
done
if [ -n "$left" ]; then
  echo "run-checked: left behind after the run:"; echo "$left"; fail=1
  for e in /proc/[0-9]*/environ; do
    p=${e#/proc/}; p=${p%/environ}
    tr '\0' '\n' 2>/dev/null < "$e" | grep -qx "MPIRAY_TEST_TAG=$tag" && kill -9 "$p" 2>/dev/null
  done
fi
rm -rf "$root" "$shm" "$spill" "$out"
exit $fail
