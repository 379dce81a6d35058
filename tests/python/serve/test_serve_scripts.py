"""mpiray.serve as users write it: deployments defined in the script's ``__main__``, run with
plain ``python`` and under ``scripts/mpirun``; the serve_batching example both ways."""

import json
from pathlib import Path

import pytest

import _http  # noqa: F401 - serve.run's proxies on ephemeral ports

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "python" / "serve_batching.py"
PIPELINE = REPO / "examples" / "python" / "serve_pipeline.py"


def _port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return str(port)

USER_SCRIPT = r'''
import asyncio, json, os
import mpiray as ray
from mpiray import serve

@serve.deployment(ray_actor_options={"num_cpus": 0})
def tokenize(text):
    return text.split()

@serve.deployment(num_replicas=2, ray_actor_options={"num_cpus": 0}, max_ongoing_requests=8)
class Embed:
    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.2)
    async def __call__(self, token_lists):
        return [[len(t) for t in tokens] for tokens in token_lists]

@serve.deployment(ray_actor_options={"num_cpus": 0}, user_config={"scale": 1})
class Ingress:
    def __init__(self, tokenize, embed):
        self.tokenize, self.embed = tokenize, embed
    def reconfigure(self, cfg):
        self.scale = cfg["scale"]
    async def __call__(self, text):
        vec = await self.embed.remote(self.tokenize.remote(text))
        return [self.scale * v for v in vec]
    async def words(self, text):
        for w in text.split():
            yield w.upper()

@serve.deployment(ray_actor_options={"num_cpus": 0})
class Broken:
    def __init__(self):
        raise RuntimeError("model file missing")

if __name__ == "__main__":
    ray.init()
    app = Ingress.bind(tokenize.bind(), Embed.bind())
    h = serve.run(app, name="nlp")
    async def many():
        return await asyncio.gather(*[h.remote("a bb ccc " * (i + 1)) for i in range(12)])
    out = {"vectors": asyncio.run(many())}
    out["stream"] = list(h.options(method_name="words", stream=True).remote("x yy z"))
    h = serve.run(Ingress.options(user_config={"scale": 10}).bind(tokenize.bind(), Embed.bind()),
                  name="nlp")
    out["scaled"] = h.remote("ab c").result(timeout_s=30)
    try:
        serve.run(Broken.bind(), name="broken", route_prefix="/broken")
    except RuntimeError as e:
        out["broken"] = str(e)
    st = serve.status()
    out["status"] = {n: str(a.status) for n, a in st.applications.items()}
    serve.shutdown()
    print("RESULT " + json.dumps(out))
'''


def _result(world):
    assert world.returncode == 0, world
    line = next(l for l in world.stdout.splitlines() if l.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def _check(out):
    assert out["vectors"] == [[1, 2, 3] * (i + 1) for i in range(12)]
    assert out["stream"] == ["X", "YY", "Z"]
    assert out["scaled"] == [20, 10]
    assert "model file missing" in out["broken"] and "Traceback" in out["broken"]
    assert out["status"] == {"nlp": "RUNNING", "broken": "DEPLOY_FAILED"}


@pytest.mark.timeout(120)
def test_user_script_standalone(run_script):
    _check(_result(run_script(USER_SCRIPT, env={"MPIRAY_NUM_WORKERS": "3"}, timeout=90)))


@pytest.mark.timeout(120)
def test_user_script_under_mpirun(run_mpi):
    _check(_result(run_mpi(USER_SCRIPT, n=4, timeout=90)))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("launch", ["python", "mpirun"])
def test_serve_batching_example(launch, run_script, run_mpi):
    script = EXAMPLE.read_text()
    env = {"SERVE_PORT": _port()}
    world = run_mpi(script, n=4, timeout=90, env=env) if launch == "mpirun" else \
        run_script(script, timeout=90, env=env)
    assert world.returncode == 0, world
    assert "serve batching example OK" in world.stdout, world
    assert "HTTP: 64 answers" in world.stdout, world


@pytest.mark.timeout(120)
@pytest.mark.parametrize("launch", ["python", "mpirun"])
def test_serve_pipeline_example_over_http(launch, run_script, run_mpi):
    """A composed pipeline with a FastAPI ingress, deployments in __main__, over HTTP."""
    script = PIPELINE.read_text()
    env = {"SERVE_PORT": _port()}
    world = run_mpi(script, n=4, timeout=90, env=env) if launch == "mpirun" else \
        run_script(script, timeout=90, env=env)
    assert world.returncode == 0, world
    assert "serve pipeline example OK" in world.stdout, world
