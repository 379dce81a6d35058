"""Fixtures of the mpiray.data tests: one embedded cluster per module (tests/python/conftest.py's
``ray_cluster``), progress bars off unless a test turns them on."""

import pytest

pytest.importorskip("pyarrow")
pytest.importorskip("pandas")


@pytest.fixture(autouse=True)
def _quiet_data_context():
    import mpiray.data as rd
    ctx = rd.DataContext.get_current()
    saved = ctx.copy()
    ctx.enable_progress_bars = False
    yield ctx
    rd.DataContext._set_current(saved)
