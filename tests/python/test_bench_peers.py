"""The benchmark's mpi4py.futures peer (issue 12: no-op tasks >= 10x mpi4py.futures)."""

import pytest

from mpiray import bench


@pytest.mark.timeout(120)
def test_mpi4py_futures_peer_measures_tasks_under_mpirun():
    peer = bench._mpi4py_child(0.3, 2)
    assert peer is not None, "mpi4py and mpirun are installed here: the peer must run"
    rate = peer["mpi4py_futures_tasks_async"]
    # 1,000 submits per batch and at least one batch in the window: a real, finite rate.
    assert 100 < rate < 10_000_000
