"""Object spilling: numpy arrays well beyond a 64 MB object store go to disk when the store is
full and come back, bit for bit, on ``ray.get`` and as task arguments; freeing them removes the
spill files, and shutdown leaves nothing behind. Embedded (one node, spilling into the session
directory) and under mpirun with two virtual nodes and MPIRAY_SPILL_DIR."""

import json
from pathlib import Path

import numpy as np
import pytest

import mpiray as ray
from conftest import wait_for

pytestmark = pytest.mark.timeout(180)


def make(seed, nbytes):
    """A distinct array of ``nbytes`` bytes for every seed (cheap to rebuild for checking)."""
    return np.arange(nbytes // 8, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(seed)


def size_of(i):
    return (8 + 4 * (i % 7)) << 20  # 8 to 32 MB


def spill_files(*dirs):
    """Spill files (not the temporary ones being written) under the given directories."""
    return [p for d in dirs if Path(d).is_dir() for p in Path(d).rglob("*")
            if p.is_file() and not p.name.startswith(".")]


@ray.remote
def produce(seed, nbytes):
    return make(seed, nbytes)


@ray.remote
def check(arr, seed, nbytes):
    return bool(np.array_equal(arr, make(seed, nbytes)))


def test_spill_and_restore_embedded(private_dirs):
    ctx = ray.init(num_cpus=2, object_store_memory=64 << 20)
    spill_dir = Path(ctx.get()["session_dir"]) / "spill-n0"
    held = [(ray.put(make(i, size_of(i))), i, size_of(i)) for i in range(10)]
    held += [(produce.remote(i, size_of(i)), i, size_of(i)) for i in range(10, 22)]
    refs = [r for r, _, _ in held]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=120)
    assert len(ready) == len(refs)
    assert sum(n for _, _, n in held) > 400 << 20
    assert len(spill_files(spill_dir)) >= len(held) // 2

    # One at a time, oldest (most likely spilled) first, twice: each is restored on get.
    for _ in range(2):
        for ref, seed, n in held:
            got = ray.get(ref)
            assert got.nbytes == n
            assert np.array_equal(got, make(seed, n)), seed
            del got
    # As task arguments (restored by the worker that runs the task).
    assert ray.get([check.remote(ref, seed, n) for ref, seed, n in held]) == [True] * len(held)
    # All at once: more than the store holds while every array is in use, so the later ones
    # are read from their spill files in place.
    everything = ray.get(refs)
    for i, arr in enumerate(everything):
        assert np.array_equal(arr, make(held[i][1], held[i][2])), i
    del everything, arr

    # Freeing the objects (every handle, loop variables included) removes their spill files.
    del held, refs, ready, ref
    assert wait_for(lambda: not spill_files(spill_dir), timeout=30), spill_files(spill_dir)
    ray.shutdown()
    assert not spill_dir.exists()


SPILL_MPI = """
import json, os
from pathlib import Path
import numpy as np
import mpiray as ray

def make(seed, nbytes):
    return np.arange(nbytes // 8, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(seed)

def size_of(i):
    return (8 + 4 * (i % 7)) << 20

ray.init()
spill_root = Path(os.environ["MPIRAY_SPILL_DIR"])

def spilled():
    return sum(1 for p in spill_root.rglob("*") if p.is_file() and not p.name.startswith("."))

def on(i):
    return {"resources": {f"node:{i}": 0.01}}

@ray.remote
def produce(seed, nbytes):
    return make(seed, nbytes)

@ray.remote
def check(arr, seed, nbytes):
    return bool(np.array_equal(arr, make(seed, nbytes)))

held = [(ray.put(make(i, size_of(i))), i, size_of(i), 0) for i in range(8)]
held += [(produce.options(**on(i % 2)).remote(i, size_of(i)), i, size_of(i), i % 2)
         for i in range(8, 20)]
ray.wait([h[0] for h in held], num_returns=len(held), timeout=120)
on_disk = spilled()
# Read on the other node (copied from the holder's memory or its spill file) ...
across = ray.get([check.options(**on(1 - node)).remote(ref, seed, n)
                  for ref, seed, n, node in held])
# ... and by the driver, one at a time.
driver = []
for ref, seed, n, _ in held:
    got = ray.get(ref)
    driver.append(bool(np.array_equal(got, make(seed, n))))
    del got
del ref, held
deadline = __import__("time").monotonic() + 30
while spilled() and __import__("time").monotonic() < deadline:
    __import__("time").sleep(0.05)
print("RESULT " + json.dumps({
    "nodes": len(ray.nodes()),
    "spilled": on_disk,
    "across": across,
    "driver": driver,
    "left_after_free": spilled(),
    "node_dirs": sorted(p.name for p in spill_root.iterdir()),
}))
ray.shutdown()
"""


@ray.remote
def split(seed, parts):
    return tuple(make(seed * 10 + j, 2 << 20) for j in range(parts))


@ray.remote
def concat(*parts):
    return np.concatenate(parts)


def test_tasks_whose_arguments_and_results_overflow_memory(private_dirs):
    """Two reduce tasks at once each read 24 MB of arguments (restored from disk) and write a
    24 MB result into a 64 MB store: memory is full of objects in use, so the results are
    written straight to the spill directory (as Ray's fallback allocation) instead of failing
    with ObjectStoreFull, and read back bit for bit."""
    ray.init(num_cpus=2, object_store_memory=64 << 20)
    parts = 4
    maps = [split.options(num_returns=parts).remote(i, parts) for i in range(12)]
    outs = [concat.remote(*[m[j] for m in maps]) for j in range(parts)]
    del maps
    ready, _ = ray.wait(outs, num_returns=parts, timeout=120)
    assert len(ready) == parts
    for j, ref in enumerate(outs):
        got = ray.get(ref)
        want = np.concatenate([make(i * 10 + j, 2 << 20) for i in range(12)])
        assert np.array_equal(got, want), j
        del got
    ray.shutdown()


def test_spill_across_virtual_nodes_mpirun(run_mpi, tmp_path):
    spill_root = tmp_path / "spill"
    spill_root.mkdir()
    world = run_mpi(SPILL_MPI, n=4, timeout=150,
                    env={"MPIRAY_RANKS_PER_NODE": "2", "MPIRAY_OBJECT_STORE_MEMORY": "64M",
                         "MPIRAY_SPILL_DIR": str(spill_root)})
    assert world.returncode == 0, world
    lines = [l for l in world.stdout.splitlines() if l.startswith("RESULT ")]
    assert len(lines) == 1, world
    r = json.loads(lines[0][len("RESULT "):])
    assert r["nodes"] == 2
    assert r["spilled"] >= 10, r
    assert r["across"] == [True] * 20
    assert r["driver"] == [True] * 20
    assert r["left_after_free"] == 0
    assert all(name.startswith("mpiray-") for name in r["node_dirs"]), r
    # Shutdown removed the node spill directories, and nothing else was left there.
    assert list(spill_root.iterdir()) == []
