"""`import mpiray` does not need the native kernels; `import mpiray.kernels` says clearly what is
missing when they were not built, and does not import Gymnasium."""

import subprocess
import sys
import textwrap

import pytest


def _run(code):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60)


def test_import_mpiray_without_the_kernels_module():
    r = _run("""
        import sys
        sys.modules["mpiray._kernels"] = None   # as if the build had no libs/kernels
        import mpiray
        try:
            import mpiray.kernels
        except ImportError as e:
            print("ERR", e)
    """)
    assert r.returncode == 0, r.stderr
    assert "mpiray.kernels needs the native module mpiray._kernels" in r.stdout


def test_import_kernels_does_not_load_gymnasium_or_the_kernels_eagerly():
    pytest.importorskip("mpiray.kernels")
    r = _run("""
        import sys
        import mpiray
        assert "mpiray._kernels" not in sys.modules
        import mpiray.kernels
        assert "gymnasium" not in sys.modules
        from mpiray.kernels import envs
        assert "gymnasium" in sys.modules
        print("OK")
    """)
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr
