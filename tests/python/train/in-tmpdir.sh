#!/usr/bin/env bash
# in-tmpdir.sh cmd... : runs cmd with a fresh temporary directory as its last argument (the
# run's storage path) and removes the directory afterwards; exits with cmd's status.
d=$(mktemp -d /tmp/mpiray-train-test.XXXXXX)
"$@" "$d"
rc=$?
rm -rf "$d"
exit $rc
