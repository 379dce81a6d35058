"""Installing mpiray the way users do (docs/install.md), checked by running what was installed.

    make test-install          (part of `make test`)

test_pip.py runs the README's install lines (an sdist, a checkout, an editable checkout) in
fresh virtual environments with pip's build isolation, then a small user program under plain
`python` and under `scripts/mpirun -n 3`; test_cmake_package.py installs the build tree with
`cmake --install` into a temporary prefix and builds an application against it with
find_package(mpiray) and with pkg-config.

Every install reuses the compiler cache: pip builds in fresh temporary folders, so ccache is
told to hash paths relative to this run's root (CCACHE_BASEDIR, CCACHE_NOHASHDIR). The install
times go to the end of pytest's report.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MPIRUN = REPO / "scripts" / "mpirun"
APP = Path(__file__).resolve().parent / "app"
BUILD_DIR = Path(os.environ.get("MPIRAY_BUILD_DIR") or (REPO / "build")).resolve()

DEFAULT_TIMEOUT = 300
# pip builds the whole C++ runtime: about 4 minutes on 2 busy cores with a cold compiler cache.
INSTALL_TIMEOUT = 1500

_times = {}


def pytest_collection_modifyitems(items):
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT))


def pytest_terminal_summary(terminalreporter):
    if _times:
        terminalreporter.write_line(
            "install times (s): " + ", ".join(f"{k} {v:.1f}" for k, v in _times.items()))


def record_time(name, seconds):
    _times[name] = seconds


@pytest.fixture(scope="session")
def root(request, tmp_path_factory):
    """This run's folder: pip's temporary folders, venvs, prefixes; the compiler cache's base.
    Removed at the end (about 1 GB of venvs and build trees) unless a test failed."""
    r = tmp_path_factory.mktemp("install")
    (r / "tmp").mkdir()
    yield r
    if request.session.testsfailed:
        if _times:
            (r / "install-times.json").write_text(json.dumps(_times, indent=1))
        return
    shutil.rmtree(r, ignore_errors=True)


def clean_env(root, venv=None, extra=None):
    """The environment of a user's shell: no build-tree Python path, the venv activated."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "MPIRAY_BUILD_DIR", "PYTHONHOME", "VIRTUAL_ENV", "PIP_USER",
                        "PIP_NO_BUILD_ISOLATION", "PIP_TARGET", "PIP_PREFIX")
           and not k.startswith("MPIRAY_")}
    env.update({
        # the compiler cache across pip's randomly named temporary folders
        "CCACHE_BASEDIR": str(root),
        "CCACHE_NOHASHDIR": "1",
        "TMPDIR": str(root / "tmp"),
        # the machine is shared: two compile jobs, as `make build`
        "CMAKE_BUILD_PARALLEL_LEVEL": "2",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
        "PYTHONUNBUFFERED": "1",
    })
    if venv is not None:
        env["VIRTUAL_ENV"] = str(venv)
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra or {})
    return env


def run(cmd, *, env, cwd, timeout, check=True):
    """Runs a command (a list, or a string for bash); on failure the output is in the error."""
    shell = isinstance(cmd, str)
    args = ["bash", "-eo", "pipefail", "-c", cmd] if shell else [str(c) for c in cmd]
    start = time.monotonic()
    p = subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        raise AssertionError(f"timed out after {timeout} s: {cmd}\n{out[-3000:]}\n{err[-3000:]}")
    p.elapsed = time.monotonic() - start
    p.stdout_text, p.stderr_text = out, err
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}: {cmd}\n--- stdout ---\n{out[-6000:]}\n"
                             f"--- stderr ---\n{err[-6000:]}")
    return p


def checkout_copy(dest):
    """The files a fresh clone has, plus uncommitted ones (git ls-files): never ./build."""
    git = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                         capture_output=True)
    if git.returncode != 0:  # not a git checkout (an unpacked sdist): the tree minus outputs
        shutil.copytree(REPO, dest, ignore=shutil.ignore_patterns(
            "build*", ".venv", "dist", "__pycache__", ".pytest_cache", ".git"))
        return dest
    for rel in filter(None, git.stdout.decode().split("\0")):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


# ------------------------------------------------------------------ running a program


def processes_with_tag(tag):
    needle = f"MPIRAY_TEST_TAG={tag}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2] not in "ZX":
            found.append(int(entry))
    return found


def run_program(root, cmd, *, env, cwd, timeout=120, check=True):
    """Runs an mpiray program with private session and shared-memory folders and a tag, then
    checks that it left no process and no file behind."""
    tag = uuid.uuid4().hex
    sessions, shm = root / "sessions" / tag, root / "shm" / tag
    sessions.mkdir(parents=True)
    shm.mkdir(parents=True)
    env = dict(env, MPIRAY_SESSION_ROOT=str(sessions), MPIRAY_SHM_DIR=str(shm),
               MPIRAY_TEST_TAG=tag)
    try:
        p = run(cmd, env=env, cwd=cwd, timeout=timeout, check=check)
    finally:
        deadline = time.monotonic() + 10
        while (processes_with_tag(tag) or any(sessions.iterdir()) or any(shm.iterdir())) \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        left = processes_with_tag(tag)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    files = [str(f) for d in (sessions, shm) for f in d.rglob("*")]
    assert not left and not files, f"left behind: processes {left}, files {files}"
    return p


def result_of(p):
    """The program's RESULT line (app/prog.py) as a dict."""
    lines = [line for line in p.stdout_text.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, f"no RESULT line:\n{p.stdout_text[-3000:]}\n{p.stderr_text[-3000:]}"
    return json.loads(lines[0][len("RESULT "):])


@pytest.fixture(scope="session")
def python():
    return sys.executable
