"""The packaging pieces that run in every install, tested from the build tree: the extras helper
(mpiray._extras), the loader's errors for missing libraries (mpiray._native) and the `mpiray`
console script (mpiray._cli). Installing for real is tests/install/ (`make test-install`)."""

import subprocess
import sys
import textwrap
import tomllib

import pytest

from mpiray import _extras, _native
from conftest import REPO, base_env

pytestmark = pytest.mark.timeout(120)

# Makes the named top-level modules unimportable, as if they were not installed.
BLOCK = textwrap.dedent("""
    import sys
    class _Blocker:
        blocked = set({blocked!r})
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.blocked:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
    sys.meta_path.insert(0, _Blocker())
""")


def _python(code, tmp_path, env=None):
    env = base_env("packaging", tmp_path, tmp_path, env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=100)


# ------------------------------------------------------------------ extras


def test_extras_match_pyproject():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {extra: sorted(req.split(">")[0].split("=")[0].split("[")[0].strip() for req in reqs)
             for extra, reqs in declared.items()}
    assert names == {extra: sorted(mods) for extra, mods in _extras.EXTRAS.items()}
    assert set(_extras.EXTRAS["all"]) == {m for k, v in _extras.EXTRAS.items() if k != "all" for m in v}


def test_require_returns_the_modules(monkeypatch):
    monkeypatch.setitem(_extras.EXTRAS, "data", ("json", "csv"))
    import csv
    import json
    assert _extras.require("data", "json") is json
    assert _extras.require("data", "json", "csv") == (json, csv)


def test_require_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(_extras.EXTRAS, "train", ("mpiray_no_such_module_xyz",))
    with pytest.raises(_extras.MissingExtraError) as e:
        _extras.require("train", "mpiray_no_such_module_xyz.sub")
    assert isinstance(e.value, ModuleNotFoundError) and isinstance(e.value, ImportError)
    assert e.value.name == "mpiray_no_such_module_xyz"
    assert str(e.value) == ("mpiray.train needs mpiray_no_such_module_xyz, which is not installed. "
                            'Install the extra: pip install "mpiray[train]" (or install '
                            "mpiray_no_such_module_xyz yourself)")


def test_require_does_not_hide_a_broken_package(monkeypatch, tmp_path):
    (tmp_path / "mpiray_broken_pkg").mkdir()
    (tmp_path / "mpiray_broken_pkg" / "__init__.py").write_text("import mpiray_missing_inner_dep\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(_extras.EXTRAS, "serve", ("mpiray_broken_pkg",))
    with pytest.raises(ModuleNotFoundError) as e:
        _extras.require("serve", "mpiray_broken_pkg")
    assert not isinstance(e.value, _extras.MissingExtraError)
    assert e.value.name == "mpiray_missing_inner_dep"


def test_require_rejects_unknown_extras_and_modules():
    with pytest.raises(ValueError, match="unknown extra 'trian'"):
        _extras.require("trian", "torch")
    with pytest.raises(ValueError, match=r"numpy is not in mpiray\[train\]"):
        _extras.require("train", "numpy")


def test_import_mpiray_needs_no_extra(tmp_path):
    """With every extra's package unimportable, `import mpiray` works and imports none of them;
    each library that exists either imports or says which extra to install."""
    code = BLOCK.format(blocked=sorted(_extras.EXTRAS["all"])) + textwrap.dedent("""
        import importlib, mpiray
        from mpiray._extras import EXTRAS, MissingExtraError
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in EXTRAS["all"])
        assert not leaked, leaked
        for lib in ("train", "tune", "rllib", "data", "serve"):
            try:
                importlib.import_module("mpiray." + lib)
            except MissingExtraError as e:
                assert 'pip install "mpiray[' in str(e), e
            except ModuleNotFoundError as e:
                assert e.name == "mpiray." + lib, e  # not written yet
        print("OK")
    """)
    p = _python(code, tmp_path)
    assert p.returncode == 0 and p.stdout.strip() == "OK", p.stderr


def test_tune_names_its_extra(tmp_path):
    """mpiray.tune's optional pieces, used without their packages, say `mpiray[tune]`."""
    code = BLOCK.format(blocked=sorted(_extras.EXTRAS["tune"])) + textwrap.dedent("""
        from mpiray import tune
        from mpiray._extras import MissingExtraError
        from mpiray.tune.logger import TBXLoggerCallback, default_logger_callbacks
        from mpiray.tune.search.hyperopt import HyperOptSearch
        from mpiray.tune.search.optuna import OptunaSearch
        for make in (OptunaSearch, HyperOptSearch, TBXLoggerCallback):
            try:
                make()
            except MissingExtraError as e:
                assert 'pip install "mpiray[tune]"' in str(e), e
            else:
                raise AssertionError(f"{make.__name__} without its package")
        # without tensorboardX the default loggers are JSON and CSV only
        assert len(default_logger_callbacks()) == 2
        print("OK")
    """)
    p = _python(code, tmp_path)
    assert p.returncode == 0 and p.stdout.strip() == "OK", p.stderr


# ------------------------------------------------------------------ missing libraries


@pytest.mark.parametrize("message, library", [
    ("libucp.so.0: cannot open shared object file: No such file or directory", "libucp.so.0"),
    ("/x/libmpiray_core.so: libmpi.so.40: cannot open shared object file: No such file", "libmpi.so.40"),
    ("libmpiray_core.so: cannot open shared object file: No such file or directory", "libmpiray_core.so"),
    ("/x/_core.so: undefined symbol: _ZN6mpiray4InitEv", None),
])
def test_missing_library_parses_the_loader_message(message, library):
    assert _native.missing_library(message) == library


def test_explain_names_the_provider():
    text = _native.explain("libucp.so.0", "libucp.so.0: cannot open shared object file")
    assert text.startswith("mpiray cannot load its native runtime: the system library libucp.so.0 "
                           "(UCX) was not found. Install it (Debian/Ubuntu: apt-get install libucx0; "
                           "Spack: spack load ucx;")
    assert "LD_LIBRARY_PATH" in text and text.endswith(
        "[the loader said: libucp.so.0: cannot open shared object file]")
    assert "libsodium23" in _native.explain("libsodium.so.23")
    assert "(a system library) was not found. Install it or add" in _native.explain("libfoo.so.1")
    assert "reinstall mpiray" in _native.explain("libmpiray_mpi.so")


# The extension fails to load as the dynamic loader would fail it when UCX is absent (a fake
# loader for this unit test; tests/install hides the real library in a mount namespace).
FAIL_CORE = textwrap.dedent("""
    import sys
    class _FailCore:
        def find_spec(self, name, path=None, target=None):
            if name == "mpiray._core":
                raise ImportError("libucp.so.0: cannot open shared object file: No such file or directory")
    sys.meta_path.insert(0, _FailCore())
""")


def test_missing_library_fails_at_first_use_not_at_import(tmp_path):
    code = FAIL_CORE + textwrap.dedent("""
        import mpiray
        print(mpiray.__version__, isinstance(None, mpiray.ObjectRef))
        try:
            mpiray.init()
        except ImportError as e:
            print(type(e).__name__, e)
    """)
    p = _python(code, tmp_path)
    assert p.returncode == 0, p.stderr
    first, second = p.stdout.strip().splitlines()
    assert first == "0.1.0 False"
    assert second.startswith("MissingLibraryError mpiray cannot load its native runtime: the "
                             "system library libucp.so.0 (UCX) was not found."), second


def test_cli_prints_the_missing_library(tmp_path):
    p = _python(FAIL_CORE + "from mpiray._cli import main; sys.exit(main(['--version']))", tmp_path)
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.startswith("mpiray: mpiray cannot load its native runtime: the system library "
                               "libucp.so.0 (UCX) was not found."), p.stderr


def test_unbuilt_extension_says_how_to_build(tmp_path):
    p = _python("import mpiray", tmp_path, {"MPIRAY_BUILD_DIR": str(tmp_path / "no-build")})
    assert p.returncode == 1
    assert "mpiray's native extension (mpiray._core) is not built: run `make build`" in p.stderr


# ------------------------------------------------------------------ the mpiray command


def test_cli_runs_the_build_tree_program(tmp_path):
    p = _python("from mpiray._cli import main; main(['--version'])", tmp_path)
    assert p.returncode == 0 and p.stdout.split() == ["mpiray", "0.1.0"], p.stderr
    p = _python("from mpiray._cli import main; main(['no-such-command'])", tmp_path)
    assert p.returncode == 2 and "usage: mpiray" in p.stderr + p.stdout
