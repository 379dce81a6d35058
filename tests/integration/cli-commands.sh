#!/usr/bin/env bash
# The mpiray CLI against a live job: status, timeline, logs, then stop (which must end the
# job cleanly). Usage: cli-commands.sh <mpiray cli> <mpiray_itest>
set -euo pipefail
cli=$1
itest=$2
export MPIRAY_SESSION_ROOT=${MPIRAY_SESSION_ROOT:-$(mktemp -d)}
export MPIRAY_NUM_WORKERS=2 MPIRAY_TEST_CHECKPOINT=$MPIRAY_SESSION_ROOT/ckpt
out=$MPIRAY_SESSION_ROOT/job.out
"$itest" checkpoint > "$out" 2>&1 &
job=$!
for _ in $(seq 300); do grep -q READY "$out" && break; sleep 0.1; done
grep -q READY "$out"
"$cli" status | tee "$MPIRAY_SESSION_ROOT/status.txt"
grep -q "2 workers" "$MPIRAY_SESSION_ROOT/status.txt"
grep -q "1 running" "$MPIRAY_SESSION_ROOT/status.txt"
"$cli" status --json | grep -q '"finished": *[0-9]'
"$cli" timeline -o "$MPIRAY_SESSION_ROOT/trace.json"
grep -q '"traceEvents"' "$MPIRAY_SESSION_ROOT/trace.json"
grep -q '"name":"Add"' "$MPIRAY_SESSION_ROOT/trace.json"
"$cli" logs --rank 0 | grep -q "listening for joining processes"
"$cli" logs --rank 1 | grep -q "worker 1 on host"
# The Prometheus endpoint (loopback, address in the session directory).
addr=$(cat "$MPIRAY_SESSION_ROOT"/mpiray-*/metrics.addr)
python3 -c "import urllib.request,sys; sys.stdout.write(urllib.request.urlopen('http://$addr/metrics').read().decode())" \
  > "$MPIRAY_SESSION_ROOT/metrics.txt"
grep -q '^mpiray_tasks_running{session="[0-9a-f]*"} 1$' "$MPIRAY_SESSION_ROOT/metrics.txt"
grep -q '^mpiray_workers{session="[0-9a-f]*",node="0"} 2$' "$MPIRAY_SESSION_ROOT/metrics.txt"
"$cli" stop
wait $job || rc=$?
echo "job exit: ${rc:-0}"
[ "${rc:-0}" = 143 ]
grep -q "checkpoint saved" "$out"
rm -f "$MPIRAY_SESSION_ROOT"/{job.out,status.txt,trace.json,ckpt,metrics.txt}
echo "cli OK"
