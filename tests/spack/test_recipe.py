"""The Spack recipe (spack/packages/mpiray/package.py), loaded against a small stand-in for
`spack.package` that records its directives. Real `spack audit`/`spack spec` cannot run here:
Spack itself is not installable on this machine (no Debian or PyPI package)."""

import importlib.util
import pathlib
import re
import sys
import tomllib
import types

import pytest

pytestmark = pytest.mark.timeout(60)

RECIPE = pathlib.Path(__file__).resolve().parents[2] / "spack" / "packages" / "mpiray" / "package.py"


class _Recorder:
    def __init__(self):
        self.variants, self.depends, self.conflicts, self.versions = {}, [], [], []
        self.extends = []
        self.when_stack = []


def _load():
    rec = _Recorder()
    fake = types.ModuleType("spack.package")

    class CMakePackage:
        pass

    def variant(name, default=None, description=""):
        assert description, f"variant {name} needs a description"
        rec.variants[name] = default

    def depends_on(spec, type=None, when=None):
        w = when or (rec.when_stack[-1] if rec.when_stack else None)
        rec.depends.append((spec, type, w))

    def conflicts(spec, when=None, msg=""):
        assert msg, f"conflict {spec} needs a message"
        rec.conflicts.append((spec, when))

    class when:
        def __init__(self, cond):
            self.cond = cond

        def __enter__(self):
            rec.when_stack.append(self.cond)

        def __exit__(self, *a):
            rec.when_stack.pop()

    fake.CMakePackage = CMakePackage
    fake.variant = variant
    fake.depends_on = depends_on
    fake.conflicts = conflicts
    fake.when = when
    fake.version = lambda v, **kw: rec.versions.append(v)
    fake.extends = lambda spec, **kw: rec.extends.append(spec)
    fake.maintainers = lambda *a: None
    fake.license = lambda *a: None
    fake.run_after = lambda *a: (lambda f: f)
    fake.on_package_attributes = lambda **kw: (lambda f: f)
    fake.working_dir = None
    fake.ctest = None
    fake.which = None
    fake.SkipTest = Exception
    spack = types.ModuleType("spack")
    spack.package = fake
    sys.modules["spack"] = spack
    sys.modules["spack.package"] = fake
    try:
        spec = importlib.util.spec_from_file_location("mpiray_recipe", RECIPE)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        del sys.modules["spack.package"]
        del sys.modules["spack"]
    return mod, rec


def test_recipe_declares_the_variants_and_dependencies():
    mod, rec = _load()
    assert issubclass(mod.Mpiray, object) and mod.Mpiray.__doc__
    assert set(rec.variants) == {"python", "kokkos", "openmp", "hdf5", "cuda", "nccl"}
    names = {d[0].split("+")[0].split("@")[0] for d in rec.depends}
    for need in ["mpi", "ucx", "boost", "spdlog", "catch2", "py-pybind11", "kokkos", "hdf5",
                 "msgpack-c", "nlohmann-json", "libsodium", "cpp-httplib"]:
        assert need in names, need
    assert ("boost+program_options", None, None) in rec.depends
    assert ("hdf5+mpi", None, "+hdf5") in rec.depends
    assert ("catch2@2", "test", None) in rec.depends
    assert any(d[0].startswith("py-pybind11@") and d[2] == "+python" for d in rec.depends)
    assert rec.extends == ["python"]
    assert ("+nccl", "~cuda") in rec.conflicts  # impossible combinations are refused
    assert "main" in rec.versions


def test_recipe_passes_the_kokkos_backend_through():
    mod, rec = _load()
    assert ("kokkos+openmp", None, "+kokkos+openmp") in rec.depends
    assert ("kokkos+cuda+wrapper", None, "+kokkos+cuda") in rec.depends
    assert ("+openmp", "~kokkos") in rec.conflicts

    class Dep:
        prefix = "/opt/kokkos"

    class Spec:
        variants = {"+kokkos", "+openmp"}

        def __contains__(self, v):
            return v in self.variants

        def __getitem__(self, name):
            assert name == "kokkos"
            return Dep()

    pkg = mod.Mpiray.__new__(mod.Mpiray)
    pkg.run_tests = False
    pkg.spec = Spec()
    defined = {}
    pkg.define = lambda k, v: defined.setdefault(k, v) or f"-D{k}={v}"
    pkg.define_from_variant = lambda k, v: defined.setdefault(k, f"+{v}" in pkg.spec) or f"-D{k}"
    pkg.cmake_args()
    assert defined["MPIRAY_WITH_KOKKOS"] is True
    assert defined["Kokkos_ROOT"] == "/opt/kokkos"


def test_recipe_cmake_arguments_follow_the_variants():
    mod, _ = _load()

    class Spec:
        def __init__(self, variants):
            self.variants = variants

        def __contains__(self, v):
            return v in self.variants

    pkg = mod.Mpiray.__new__(mod.Mpiray)
    pkg.run_tests = False
    pkg.spec = Spec({"+python"})
    defined = {}
    pkg.define = lambda k, v: defined.setdefault(k, v) or f"-D{k}={v}"
    pkg.define_from_variant = lambda k, v: defined.setdefault(k, f"+{v}" in pkg.spec) or f"-D{k}"
    args = pkg.cmake_args()
    assert len(args) == 7
    assert defined["MPIRAY_WITH_KOKKOS"] is False and defined["MPIRAY_WITH_NCCL"] is False
    assert defined["MPIRAY_PYTHON"] is True
    assert defined["MPIRAY_BUILD_TESTS"] is False
    assert defined["MPIRAY_WERROR"] is False


def test_recipe_pybind11_range_matches_pyproject():
    """pip and Spack build with the same tested pybind11 versions (docs/install.md)."""
    _, rec = _load()
    pyproject = tomllib.loads((RECIPE.parents[3] / "pyproject.toml").read_text())
    req = next(r for r in pyproject["build-system"]["requires"] if r.startswith("pybind11"))
    m = re.fullmatch(r"pybind11>=([\d.]+),<(\d+)\.(\d+)", req.replace(" ", ""))
    low, major, minor = m.group(1), int(m.group(2)), int(m.group(3))
    assert minor > 0, "an upper bound X.0 has no Spack spelling here; use <X.Y with Y > 0"
    spec = next(d[0] for d in rec.depends if d[0].startswith("py-pybind11"))
    assert spec == f"py-pybind11@{low}:{major}.{minor - 1}"
