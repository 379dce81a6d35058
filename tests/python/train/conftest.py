"""Fixtures of the mpiray.train tests: an embedded cluster of 3 local workers shared by a
module (training workers are actors; each needs a worker process of its own)."""

import os
import sys

import pytest


def _parent_conftest():
    """tests/python/conftest.py as a module (its helpers: PrivateDirs, assert_nothing_left)."""
    import importlib.util
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conftest.py")
    mod = sys.modules.get("_mpiray_tests_conftest")
    if mod is None:
        spec = importlib.util.spec_from_file_location("_mpiray_tests_conftest", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules["_mpiray_tests_conftest"] = mod
    return mod


@pytest.fixture(scope="module")
def train_cluster(tmp_path_factory):
    import mpiray as ray
    assert not ray.is_initialized(), "a previous test left a cluster running"
    with _parent_conftest().PrivateDirs(tmp_path_factory.mktemp("cluster")) as dirs:
        ray.init(num_cpus=3)
        try:
            yield dirs
        finally:
            ray.shutdown()
        dirs.assert_clean()
