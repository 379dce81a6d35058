"""C++ users of an installed mpiray: `cmake --install` of the build tree into a temporary prefix
(what the Spack recipe runs), then an application outside the tree (app/) built with
find_package(mpiray) and with pkg-config, each run standalone and under `scripts/mpirun -n 3`.
The Python package that the same install puts under <prefix>/lib/pythonX.Y/site-packages runs
the user program too."""

import os
import re
import shutil
import sys

import pytest

from conftest import APP, BUILD_DIR, MPIRUN, clean_env, record_time, result_of, run, run_program

APP_LINE = re.compile(r"external app: sum=285 counter=6 worker_pids=\d+ remote=1 cpus=2\b")


@pytest.fixture(scope="module")
def prefix(root):
    if not (BUILD_DIR / "build.ninja").exists():
        pytest.fail(f"no build tree at {BUILD_DIR}: run `make build` first")
    prefix = root / "prefix"
    p = run(["cmake", "--install", BUILD_DIR, "--prefix", prefix], env=clean_env(root),
            cwd=root, timeout=300)
    record_time("cmake --install", p.elapsed)
    return prefix


def _check_app(root, exe, prefix, env):
    # The installed libraries, found through the RUNPATH: no LD_LIBRARY_PATH, not the build tree.
    ldd = run(["ldd", exe], env=env, cwd=exe.parent, timeout=60).stdout_text
    for lib in ("libmpiray_core.so", "libmpiray_mpi.so"):
        m = re.search(rf"{lib} => (\S+)", ldd)
        assert m and m.group(1).startswith(str(prefix) + "/"), ldd
    for launch in ([], [MPIRUN, "-n", "3"]):
        p = run_program(root, [*launch, exe], env=env, cwd=exe.parent, timeout=120)
        assert APP_LINE.search(p.stdout_text), (p.stdout_text, p.stderr_text)


def _launcher():
    return {"CMAKE_CXX_COMPILER_LAUNCHER": "ccache"} if shutil.which("ccache") else {}


@pytest.mark.timeout(900)
def test_find_package_app(root, prefix):
    src = root / "app-cmake"
    shutil.copytree(APP, src)
    build = src / "build"
    env = clean_env(root, extra={"CMAKE_PREFIX_PATH": str(prefix), "MPIRAY_NUM_WORKERS": "2"})
    args = [f"-D{k}={v}" for k, v in _launcher().items()]
    p = run(["cmake", "-S", src, "-B", build, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release", *args],
            env=env, cwd=src, timeout=300)
    assert f"{prefix}/lib/cmake/mpiray" in (build / "CMakeCache.txt").read_text(), p.stdout_text
    p = run(["cmake", "--build", build], env=env, cwd=src, timeout=600)
    record_time("find_package app build", p.elapsed)
    _check_app(root, build / "app", prefix, env)


@pytest.mark.timeout(900)
def test_pkg_config_app(root, prefix):
    src = root / "app-pkgconfig"
    shutil.copytree(APP, src)
    env = clean_env(root, extra={"PKG_CONFIG_PATH": str(prefix / "lib" / "pkgconfig"),
                                 "MPIRAY_NUM_WORKERS": "2"})
    flags = run(["pkg-config", "--cflags", "--libs", "mpiray"], env=env, cwd=src, timeout=60)
    assert f"-I{prefix}/lib/pkgconfig/../../include" in flags.stdout_text, flags.stdout_text
    cxx = "ccache c++" if _launcher() else "c++"
    p = run(["make", f"CXX={cxx}"], env=env, cwd=src, timeout=600)
    record_time("pkg-config app build", p.elapsed)
    _check_app(root, src / "app", prefix, env)


@pytest.mark.timeout(300)
def test_installed_python_package(root, prefix):
    """cmake --install also installs the Python package (Spack's `mpiray+python`)."""
    site = prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    env = clean_env(root, extra={"PYTHONPATH": str(site), "MPIRAY_NUM_WORKERS": "2",
                                 "PATH": f"{prefix / 'bin'}{os.pathsep}{os.environ['PATH']}"})
    for launch in ([sys.executable], [MPIRUN, "-n", "3", sys.executable]):
        r = result_of(run_program(root, [*launch, APP / "prog.py"], env=env, cwd=root))
        assert r["package"] == str(site / "mpiray") and r["core"].startswith(str(site / "mpiray")), r
        assert r["remote"] and r["counter"] == 16 and r["workers"] == 2, r
