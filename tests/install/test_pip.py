"""`pip install` as users run it: the README's lines, in a fresh virtual environment each, with
pip's build isolation (pip fetches scikit-build-core and pybind11 for the build, numpy and
cloudpickle for the package; after the first run they come from pip's cache). Then a user's
program (app/prog.py) under plain `python` and under `scripts/mpirun -n 3`, the `mpiray`
command, the extras' metadata, and clear errors when a library is missing."""

import json
import os
import re
import shutil
import subprocess
import tarfile
import tomllib

import pytest

from conftest import (APP, INSTALL_TIMEOUT, MPIRUN, REPO, checkout_copy, clean_env, record_time,
                      result_of, run, run_program)

VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]

# The README's install lines, run as they are written (test_readme_has_the_install_lines).
VENV = "python3 -m venv .venv && . .venv/bin/activate"
INSTALLS = {
    "checkout": ["pip install ."],
    "editable": ["pip install -e ."],
    "sdist": ["pip install build && python -m build --sdist",
              f"pip install dist/mpiray-{VERSION}.tar.gz"],
}
EXTRAS = ("all", "data", "rllib", "serve", "train", "tune")

_installed = {}


def install(root, kind):
    """A checkout copy with a fresh .venv in which `kind` was installed (once per session)."""
    if kind not in _installed:
        try:
            src = checkout_copy(root / kind)
            env = clean_env(root)
            run(VENV, env=env, cwd=src, timeout=120)
            for line in INSTALLS[kind]:
                p = run(f". .venv/bin/activate && {line}", env=env, cwd=src, timeout=INSTALL_TIMEOUT)
                record_time(f"{kind}: {line}", p.elapsed)
            _installed[kind] = src
        except BaseException as e:
            _installed[kind] = e
            raise
    if isinstance(_installed[kind], BaseException):
        pytest.fail(f"installing ({kind}) failed earlier: {_installed[kind]}")
    return _installed[kind]


def site_packages(venv):
    return next((venv / "lib").glob("python3*/site-packages"))


def test_readme_has_the_install_lines():
    readme = (REPO / "README.md").read_text()
    for line in [VENV] + [line for lines in INSTALLS.values() for line in lines]:
        assert line in readme, f"README.md does not show the tested install line {line!r}"


@pytest.mark.timeout(INSTALL_TIMEOUT * 2)
@pytest.mark.parametrize("kind", ["sdist", "checkout", "editable"])
def test_install_and_run(root, kind):
    src = install(root, kind)
    venv = src / ".venv"
    env = clean_env(root, venv, {"MPIRAY_NUM_WORKERS": "2"})
    sp = site_packages(venv)
    # Where the package came from: the venv, or for an editable install the checkout's Python
    # files with the compiled parts (extension, libraries, program) in the venv.
    package = src / "python" / "mpiray" if kind == "editable" else sp / "mpiray"

    # Not from the source tree by accident: no build tree in the copy, no PYTHONPATH.
    assert not (src / "build").exists()
    if kind == "sdist":  # the sources, without the venv, build trees or caches beside them
        with tarfile.open(src / "dist" / f"mpiray-{VERSION}.tar.gz") as tar:
            names = [n.split("/", 1)[1] for n in tar.getnames() if "/" in n]
        for need in ("pyproject.toml", "CMakeLists.txt", "python/src/module.cpp",
                     "python/mpiray/__init__.py", "mpi/include/mpiray/mpiray.h", "README.md"):
            assert need in names, need
        junk = [n for n in names if re.match(r"(\.venv|build|dist|\.git)(/|$)", n) or "__pycache__" in n]
        assert not junk, junk[:10]
    for launch in (["python"], [MPIRUN, "-n", "3", "python"]):
        p = run_program(root, [*launch, APP / "prog.py"], env=env, cwd=src / "tests" / "install")
        r = result_of(p)
        assert r["package"] == str(package), r
        assert r["core"].startswith(str(sp / "mpiray") + os.sep), r
        assert r["remote"] and r["counter"] == 16 and r["cpus"] == 2.0, r
        assert r["status_rc"] == 0 and r["workers"] == 2, r  # `mpiray status` saw the job

    # The command-line tool and the Slurm helpers.
    p = run(["mpiray", "--version"], env=env, cwd=src, timeout=60)
    assert p.stdout_text.split() == ["mpiray", VERSION], p.stdout_text
    p = run(["mpiray", "submit", "--dry-run", "--nodes", "2", "--ntasks-per-node", "4", "--time",
             "0:10:00", "--", "python", "app.py"], env=env, cwd=src, timeout=60)
    assert "#SBATCH --nodes=2" in p.stdout_text and re.search(r"srun .*python app\.py", p.stdout_text), \
        p.stdout_text

    # Dependencies are consistent; the extras are declared; a missing one is named.
    run(["pip", "check"], env=env, cwd=src, timeout=120)
    meta = run(["python", "-c", "import importlib.metadata as m, json; d = m.metadata('mpiray');"
                "print(json.dumps([d.get_all('Provides-Extra'), d.get_all('Requires-Dist')]))"],
               env=env, cwd=src, timeout=60)
    provides, requires = json.loads(meta.stdout_text)
    assert sorted(provides) == sorted(EXTRAS), provides
    assert any(r.startswith("torch") and 'extra == "train"' in r for r in requires), requires
    p = run(["python", "-c", "from mpiray._extras import require; require('train', 'torch')"],
            env=env, cwd=src, timeout=60, check=False)
    assert p.returncode == 1 and 'pip install "mpiray[train]"' in p.stderr_text, p.stderr_text


def _hide(libraries_glob, library_dir, root):
    """A bash prefix that runs a command in a private mount namespace where the files matching
    `libraries_glob` in `library_dir` do not exist (an overlay with whiteouts)."""
    over = root / "overlay"
    over.mkdir(exist_ok=True)
    return ("unshare -m --propagation private bash -ec '"
            f"mount -t tmpfs none {over} && mkdir {over}/up {over}/work && "
            f"for f in {library_dir}/{libraries_glob}; do mknod {over}/up/$(basename $f) c 0 0; done && "
            f"mount -t overlay overlay -o lowerdir={library_dir},upperdir={over}/up,workdir={over}/work "
            f"{library_dir} && exec \"$@\"' --")


@pytest.mark.timeout(INSTALL_TIMEOUT)
def test_missing_system_library_is_named(root):
    """UCX's libucp really absent (a mount namespace where the file does not exist): `import
    mpiray` works, the first call and the `mpiray` command say which library and package."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("hiding a system library needs root and unshare (a private mount namespace)")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here: {probe.stderr.decode().strip()}")
    src = install(root, "checkout")
    venv = src / ".venv"
    env = clean_env(root, venv)
    core_lib = site_packages(venv) / "mpiray" / "libmpiray_core.so"
    ldd = run(["ldd", core_lib], env=env, cwd=src, timeout=60).stdout_text
    ucp = re.search(r"libucp\.so\.\d+ => (\S+)", ldd)
    assert ucp, ldd
    hide = _hide("libucp.so*", os.path.dirname(ucp.group(1)), root)

    p = run(f"{hide} python -c 'import mpiray; print(mpiray.__version__); mpiray.init()'",
            env=env, cwd=src, timeout=60, check=False)
    assert p.returncode == 1, (p.stdout_text, p.stderr_text)
    assert p.stdout_text.strip() == VERSION  # the import itself worked
    last = p.stderr_text.strip().splitlines()[-1]
    assert last.startswith("mpiray._native.MissingLibraryError: mpiray cannot load its native "
                           "runtime: the system library libucp.so.0 (UCX) was not found."), last
    assert "apt-get install libucx0" in last and "spack load ucx" in last, last

    p = run(f"{hide} mpiray status", env=env, cwd=src, timeout=60, check=False)
    assert p.returncode == 1, (p.stdout_text, p.stderr_text)
    assert p.stderr_text.startswith("mpiray: mpiray cannot load its native runtime: the system "
                                    "library libucp.so.0 (UCX) was not found."), p.stderr_text
    assert "Traceback" not in p.stderr_text


@pytest.mark.timeout(INSTALL_TIMEOUT)
def test_missing_own_library_is_named(root):
    """The extension's own dependency (libmpiray_core.so) hidden in a copy of the package."""
    src = install(root, "checkout")
    venv = src / ".venv"
    copy = root / "broken" / "mpiray"
    shutil.copytree(site_packages(venv) / "mpiray", copy,
                    ignore=shutil.ignore_patterns("libmpiray_core.so", "__pycache__"))
    env = clean_env(root, venv, {"PYTHONPATH": str(copy.parent)})
    p = run(["python", "-c", "import mpiray; print(mpiray.__file__); mpiray.put(1)"], env=env,
            cwd=src, timeout=60, check=False)
    assert p.returncode == 1 and p.stdout_text.strip() == str(copy / "__init__.py"), p.stdout_text
    assert ("MissingLibraryError: mpiray cannot load its native runtime: its own library "
            "libmpiray_core.so is missing") in p.stderr_text, p.stderr_text


@pytest.mark.timeout(INSTALL_TIMEOUT)
def test_oldest_build_requirements(root):
    """The lowest scikit-build-core and pybind11 that [build-system] allows (pip takes the
    newest in the other tests; `make build` uses Debian's pybind11 2.10.3)."""
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    lowest = {}
    for req in requires:
        m = re.fullmatch(r"([\w-]+)>=([\d.]+),<[\d.]+", req.replace(" ", ""))
        assert m, f"{req}: give [build-system] requirements as name>=low,<high"
        low = m.group(2)
        lowest[m.group(1)] = low + ".0" * (2 - low.count("."))  # 0.10 -> 0.10.0, as pip prints it
    assert set(lowest) == {"scikit-build-core", "pybind11"}, requires
    src = checkout_copy(root / "oldest")
    constraints = root / "oldest-constraints.txt"
    constraints.write_text("".join(f"{k}=={v}\n" for k, v in lowest.items()))
    env = clean_env(root, extra={"PIP_CONSTRAINT": str(constraints)})
    run(VENV, env=env, cwd=src, timeout=120)
    p = run(". .venv/bin/activate && pip install -v .", env=env, cwd=src, timeout=INSTALL_TIMEOUT)
    record_time("oldest build requirements: pip install .", p.elapsed)
    log = p.stdout_text + p.stderr_text
    assert f"scikit-build-core {lowest['scikit-build-core']} using CMake" in log
    assert f"pybind11-{lowest['pybind11']}" in log
    r = result_of(run_program(root, ["python", APP / "prog.py"],
                              env=clean_env(root, src / ".venv", {"MPIRAY_NUM_WORKERS": "2"}),
                              cwd=src))
    assert r["remote"] and r["counter"] == 16 and r["workers"] == 2, r
