#!/usr/bin/env python3
"""The chaos killer: SIGKILLs random worker processes of one run at random moments.

Bounded (at most --kills kills, never the last --keep workers alive), seeded (--seed: the same
seed, or MPIRAY_CHAOS_SEED when set, gives the same gaps and the same choice among the live workers, sorted by rank) and
logged (one line per kill in --log: "kill t=<s since start> pid=<pid> rank=<rank>").

Workers are the processes named --comm that carry MPIRAY_TEST_TAG=--tag in their environment
and are not rank 0: OMPI_COMM_WORLD_RANK (mpirun) or SLURM_PROCID (srun) > 0, or
MPIRAY_WORKER_INDEX set (local workers of a standalone driver). The killer begins when the
--start file appears and ends after its last kill, or when --timeout seconds have passed.
"""

import argparse
import os
import random
import signal
import sys
import time


def environ(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    out = {}
    for item in raw.split(b"\0"):
        k, sep, v = item.partition(b"=")
        if sep:
            out[k.decode(errors="replace")] = v.decode(errors="replace")
    return out


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def workers(tag, comm):
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != comm:
                    continue
        except OSError:
            continue
        env = environ(pid)
        if not env or env.get("MPIRAY_TEST_TAG") != tag or not alive(pid):
            continue
        if "MPIRAY_WORKER_INDEX" in env:
            rank = 1000 + int(env["MPIRAY_WORKER_INDEX"])
        else:
            rank = int(env.get("OMPI_COMM_WORLD_RANK", env.get("SLURM_PROCID", "0")))
        if rank > 0:
            found.append((rank, pid))
    return sorted(found)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tag", required=True)
    p.add_argument("--comm", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--kills", type=int, required=True)
    p.add_argument("--keep", type=int, default=2)
    p.add_argument("--min-gap", type=float, default=0.1)
    p.add_argument("--max-gap", type=float, default=0.5)
    p.add_argument("--start", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--timeout", type=float, default=120)
    a = p.parse_args()
    if os.environ.get("MPIRAY_CHAOS_SEED"):  # explore other seeds without editing the tests
        a.seed = int(os.environ["MPIRAY_CHAOS_SEED"])
    rng = random.Random(a.seed)
    log = open(a.log, "a", buffering=1)
    log.write(f"seed {a.seed} kills<={a.kills} keep>={a.keep} gaps {a.min_gap}-{a.max_gap} s\n")
    deadline = time.monotonic() + a.timeout
    while not os.path.exists(a.start):
        if time.monotonic() > deadline:
            log.write("the run never started\n")
            return 1
        time.sleep(0.005)
    t0 = time.monotonic()
    done = 0
    while done < a.kills and time.monotonic() < deadline:
        time.sleep(rng.uniform(a.min_gap, a.max_gap))
        live = workers(a.tag, a.comm)
        choice = rng.randrange(1 << 30)  # drawn every round, so the seed fixes the sequence
        if len(live) <= a.keep:
            log.write(f"skip t={time.monotonic() - t0:.3f} live={len(live)}\n")
            continue
        rank, pid = live[choice % len(live)]
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        done += 1
        log.write(f"kill t={time.monotonic() - t0:.3f} pid={pid} rank={rank}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
