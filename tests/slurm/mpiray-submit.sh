#!/usr/bin/env bash
# `mpiray submit` writes a batch script and submits it; the job runs and succeeds.
set -euo pipefail
cli=$1
bin=$2
work=$(mktemp -d /tmp/mpiray-submit-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
out=$("$cli" submit --nodes 2 --ntasks-per-node 2 --time 00:05:00 --output "$work/out.txt" -- "$bin")
echo "$out"
id=$(echo "$out" | awk '/submitted job/ {print $3}')
[ -n "$id" ]
for _ in $(seq 600); do [ -z "$(squeue -h -j "$id" -o %T)" ] && break; sleep 0.1; done
cat "$work/out.txt"
grep -q "quickstart OK" "$work/out.txt"
