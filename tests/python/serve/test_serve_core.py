"""mpiray.serve part A on an embedded cluster of 4 workers: composition, handles, streaming,
status, delete, replica context, autoscaling_config accepted."""

import asyncio
import os
import time

import pytest

import _http  # noqa: F401 - serve.run's proxies on ephemeral ports

import mpiray as ray
from mpiray import serve
from mpiray.serve.exceptions import RayServeException

pytestmark = pytest.mark.usefixtures("serve_cluster", "fresh_serve")

CPU0 = {"num_cpus": 0}


@serve.deployment(num_replicas=2, ray_actor_options=CPU0)
class Adder:
    def __init__(self, inc):
        self.inc = inc

    def __call__(self, x):
        return x + self.inc

    async def whoami(self):
        ctx = serve.get_replica_context()
        return {"pid": os.getpid(), "app": ctx.app_name, "deployment": ctx.deployment,
                "tag": ctx.replica_tag, "same": ctx.servable_object is self}


@serve.deployment(ray_actor_options=CPU0)
def double(x):
    return 2 * x


@serve.deployment(ray_actor_options=CPU0)
class Pipeline:
    def __init__(self, adder, doubler, config):
        self.adder, self.doubler, self.config = adder, doubler, config

    async def __call__(self, x):
        # a response passed into another call without waiting for it
        return await self.doubler.remote(self.adder.remote(x))

    def sync_chain(self, x):
        return self.doubler.remote(self.adder.remote(x)).result(timeout_s=10)

    def handles(self):
        return [type(self.adder).__name__, type(self.doubler).__name__, self.config]

    def numbers(self, n):
        for i in range(n):
            yield i * i

    async def letters(self, word):
        for ch in word:
            await asyncio.sleep(0.001)
            yield ch

    def endless(self):
        self.produced = 0
        while True:
            self.produced += 1
            yield self.produced

    def produced_count(self):
        return self.produced

    def broken_stream(self, n):
        for i in range(n):
            yield i
        raise ValueError("stream broke after %d items" % n)


def test_composition_and_handles():
    h = serve.run(Pipeline.bind(Adder.bind(1), double.bind(), config={"k": [1, 2]}),
                  name="pipe", route_prefix="/pipe")
    assert isinstance(h, serve.DeploymentHandle)
    assert h.remote(3).result(timeout_s=10) == 8                      # (3+1)*2
    assert h.sync_chain.remote(4).result(timeout_s=10) == 10
    assert h.options(method_name="handles").remote().result() == \
        ["DeploymentHandle", "DeploymentHandle", {"k": [1, 2]}]
    # the driver chains too, and awaits
    adder = serve.get_deployment_handle("Adder", app_name="pipe")
    assert serve.get_deployment_handle("double", "pipe").remote(adder.remote(10)).result() == 22

    async def main():
        return await asyncio.gather(*[h.remote(i) for i in range(10)])
    assert asyncio.run(main()) == [(i + 1) * 2 for i in range(10)]
    # inside the replica the pending response travels unresolved (no wait in the replica
    # since the core fix for refs made by another live process): many in a row
    assert [h.remote(i).result(timeout_s=10) for i in range(40)] == [(i + 1) * 2 for i in range(40)]
    assert [h.sync_chain.remote(i).result(timeout_s=10) for i in range(20)] == \
        [(i + 1) * 2 for i in range(20)]
    assert serve.get_app_handle("pipe").remote(0).result() == 2

    st = serve.status().applications["pipe"]
    assert st.status == "RUNNING"
    assert st.deployments["Adder"].replica_states == {"RUNNING": 2}
    assert set(st.deployments) == {"Adder", "double", "Pipeline"}
    assert st.route_prefix == "/pipe"


def test_power_of_two_uses_every_replica_and_replica_context():
    serve.run(Adder.options(num_replicas=3).bind(0), name="ctx")
    h = serve.get_app_handle("ctx").whoami
    seen = [h.remote() for _ in range(30)]
    infos = [r.result(timeout_s=10) for r in seen]
    assert len({i["tag"] for i in infos}) == 3
    assert all(i["app"] == "ctx" and i["deployment"] == "Adder" and i["same"] for i in infos)
    with pytest.raises(RayServeException, match="within a Serve deployment"):
        serve.get_replica_context()


def test_streaming_sync_and_async():
    h = serve.run(Pipeline.bind(Adder.bind(1), double.bind(), config=None), name="s")
    gen = h.options(method_name="numbers", stream=True).remote(200)
    assert isinstance(gen, serve.DeploymentResponseGenerator)
    assert list(gen) == [i * i for i in range(200)]

    async def main():
        g = h.options(method_name="letters", stream=True).remote("stream")
        return [c async for c in g]
    assert asyncio.run(main()) == list("stream")

    got = []
    with pytest.raises(ValueError, match="stream broke after 3"):
        for item in h.options(method_name="broken_stream", stream=True).remote(3):
            got.append(item)
    assert got == [0, 1, 2]
    with pytest.raises(TypeError, match="stream=True"):
        h.options(method_name="numbers").remote(3).result(timeout_s=10)
    with pytest.raises(TypeError, match="needs a generator"):
        list(h.options(stream=True).remote(3))

    # a stream abandoned after three items stops its generator in the replica
    gen = h.options(method_name="endless", stream=True).remote()
    assert [next(gen) for _ in range(3)] == [1, 2, 3]
    del gen
    counts = []
    for _ in range(3):
        time.sleep(0.3)
        counts.append(h.produced_count.remote().result(timeout_s=10))
    assert counts[0] == counts[-1], counts
    assert counts[0] < 1000, counts     # bounded by the replica's queue, not endless


def test_delete_and_redeploy_with_new_code():
    serve.run(Adder.bind(1), name="a1")
    serve.run(Adder.bind(100), name="a2", route_prefix="/other")
    h1 = serve.get_app_handle("a1")
    assert h1.remote(1).result() == 2
    tags_before = {h1.whoami.remote().result()["tag"] for _ in range(10)}
    serve.run(Adder.bind(5), name="a1")            # other arguments: new replicas
    h1 = serve.get_app_handle("a1")
    assert h1.remote(1).result(timeout_s=20) == 6
    tags_after = {h1.whoami.remote().result()["tag"] for _ in range(10)}
    assert not tags_before & tags_after
    serve.delete("a1")
    assert set(serve.status().applications) == {"a2"}
    with pytest.raises(RayServeException, match="does not exist"):
        serve.get_app_handle("a1")
    assert serve.get_app_handle("a2").remote(1).result() == 101


def test_autoscaling_config_is_accepted_and_starts_initial_replicas():
    d = Adder.options(autoscaling_config={"min_replicas": 1, "max_replicas": 4,
                                          "initial_replicas": 2,
                                          "target_ongoing_requests": 3})
    serve.run(d.bind(0), name="auto")
    assert serve.status().applications["auto"].deployments["Adder"].replica_states == \
        {"RUNNING": 2}


def test_shutdown_removes_controller_and_replicas():
    serve.run(Adder.bind(1), name="gone")
    pids = {serve.get_app_handle("gone").whoami.remote().result()["pid"] for _ in range(10)}
    serve.shutdown()
    assert serve.status().applications == {}
    with pytest.raises(ValueError):
        ray.get_actor("SERVE_CONTROLLER_ACTOR")
    with pytest.raises(RayServeException, match="not running"):
        serve.get_app_handle("gone")
    assert pids  # worker processes live on (they host other work); the replica actors are gone
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        names = [a["name"] for a in ray.util.state.list_actors(filters=[("state", "=", "ALIVE")])]
        if not any(str(n).startswith("SERVE_") for n in names):
            break
        time.sleep(0.1)
    assert not any(str(n).startswith("SERVE_") for n in names), names
