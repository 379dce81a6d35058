"""``mpiray serve run|status|deploy|shutdown`` and the YAML config, as users run them: a module
and a config file in a directory, ``python -m mpiray.serve run`` (plain and under
``scripts/mpirun -n 4``), the other commands from other processes; nothing left afterwards."""

import json
import os
import subprocess
import sys
import time
import uuid

import pytest

import _http
from conftest import MPIRUN, assert_nothing_left, base_env

MODULE = '''
from mpiray import serve

@serve.deployment(ray_actor_options={"num_cpus": 0}, user_config={"greeting": "hello"})
class Greeter:
    def reconfigure(self, cfg):
        self.greeting = cfg["greeting"]
    def __call__(self, request):
        return {"msg": f"{self.greeting} {request.query_params.get('name', 'you')}",
                "replicas_hint": serve.get_replica_context().world_size}

@serve.deployment(ray_actor_options={"num_cpus": 0})
class Upper:
    def __init__(self, greeter):
        self.greeter = greeter
    async def __call__(self, request):
        return (await request.body()).decode().upper()

app = Greeter.bind()
upper = Upper.bind(Greeter.bind())

def build(args):
    return Greeter.options(user_config={"greeting": args.get("greeting", "hi")}).bind()
'''

CONFIG = '''
http_options:
  host: 127.0.0.1
applications:
  - name: greet
    route_prefix: /greet
    import_path: greetmod:app
    deployments:
      - name: Greeter
        num_replicas: 2
        user_config: {greeting: bonjour}
  - name: built
    route_prefix: /built
    import_path: greetmod:build
    args: {greeting: salut}
'''

MORE = '''
applications:
  - name: upper
    route_prefix: /upper
    import_path: greetmod:upper
'''


class Service:
    def __init__(self, tmp_path, target, launcher=(), extra=()):
        self.work = tmp_path
        (tmp_path / "greetmod.py").write_text(MODULE)
        (tmp_path / "serve.yaml").write_text(CONFIG)
        (tmp_path / "more.yaml").write_text(MORE)
        self.tag = uuid.uuid4().hex
        self.session_root, self.shm_dir = tmp_path / "session", tmp_path / "shm"
        self.session_root.mkdir()
        self.shm_dir.mkdir()
        self.state = tmp_path / "state"
        self.env = base_env(self.tag, self.session_root, self.shm_dir,
                            {"MPIRAY_SERVE_STATE_DIR": str(self.state), "MPIRAY_NUM_WORKERS": "2",
                             "PYTHONPATH": os.pathsep.join([str(tmp_path),
                                                            os.environ.get("PYTHONPATH", "")])})
        cmd = [*launcher, sys.executable, "-m", "mpiray.serve", "run", target, "--port", "0",
               *extra]
        self.proc = subprocess.Popen(cmd, cwd=tmp_path, env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            if " at http://" in line:
                self.port = int(line.split(" at http://", 1)[1].split("/")[0].rsplit(":", 1)[1])
                return
        self.proc.kill()
        raise AssertionError("".join(self.lines) + (self.proc.stdout.read() or ""))

    def cli(self, *args):
        return subprocess.run([sys.executable, "-m", "mpiray.serve", *args, "--address",
                               f"http://127.0.0.1:{self.port}"], cwd=self.work, env=self.env,
                              capture_output=True, text=True, timeout=120)

    def finish(self, timeout=60):
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        self.lines.append(out)
        return self.proc.returncode


def _exercise(svc):
    port = svc.port
    r = _http.get("/greet?name=ada", port=port)
    assert r.status == 200 and r.json()["msg"] == "bonjour ada"
    assert r.json()["replicas_hint"] == 2          # the override of num_replicas
    assert _http.get("/built", port=port).json()["msg"] == "salut you"
    st = svc.cli("status")
    assert st.returncode == 0, st
    assert "greet:" in st.stdout and "RUNNING" in st.stdout and "built:" in st.stdout
    dep = svc.cli("deploy", "more.yaml")
    assert dep.returncode == 0 and "deployed upper" in dep.stdout, dep
    assert _http.post("/upper", body=b"shout", port=port).text == "SHOUT"
    down = svc.cli("shutdown")
    assert down.returncode == 0, down
    assert svc.finish() == 0, "".join(svc.lines)
    assert "mpiray serve: stopped" in "".join(svc.lines)
    assert not list(svc.state.glob("*.json")), "the state file was left behind"
    assert_nothing_left(svc.tag, svc.session_root, svc.shm_dir, 10.0)


@pytest.mark.timeout(200)
def test_cli_run_config_status_deploy_shutdown(tmp_path):
    _exercise(Service(tmp_path, "serve.yaml"))


@pytest.mark.timeout(200)
def test_cli_run_config_under_mpirun(tmp_path):
    _exercise(Service(tmp_path, "serve.yaml", launcher=(str(MPIRUN), "-n", "4")))


@pytest.mark.timeout(150)
def test_cli_run_module_app_and_errors(tmp_path):
    svc = Service(tmp_path, "greetmod:app", extra=("--name", "g", "--route-prefix", "/g"))
    assert _http.get("/g?name=x", port=svc.port).json()["msg"] == "hello x"
    svc.proc.terminate()       # SIGTERM: the runtime's clean stop (exit status 128 + 15)
    assert svc.finish() in (0, 143), "".join(svc.lines)
    assert not list(svc.state.glob("*.json")), "the state file was left behind"
    assert_nothing_left(svc.tag, svc.session_root, svc.shm_dir, 10.0)
    # commands without a service, and bad configs, fail with a clear message
    env = dict(svc.env)
    r = subprocess.run([sys.executable, "-m", "mpiray.serve", "status", "--address",
                        "http://127.0.0.1:1"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0 and "no service of this user listens on port 1" in r.stderr
    (tmp_path / "bad.yaml").write_text("applications:\n  - import_path: greetmod:app\n"
                                       "    colour: blue\n")
    r = subprocess.run([sys.executable, "-m", "mpiray.serve", "run", "bad.yaml", "--port", "0"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "unknown field(s) ['colour']" in r.stderr
