"""mpiray.serve part A: @serve.batch (batches really form), reconfigure, multiplexing,
max_ongoing_requests and max_queued_requests."""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import _http  # noqa: F401 - serve.run's proxies on ephemeral ports

from mpiray import serve
from mpiray.serve.exceptions import BackPressureError

pytestmark = pytest.mark.usefixtures("serve_cluster", "fresh_serve")

CPU0 = {"num_cpus": 0}


@serve.deployment(ray_actor_options=CPU0, max_ongoing_requests=16)
class Batcher:
    def __init__(self):
        self.async_sizes, self.sync_sizes = [], []

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.5)
    async def __call__(self, xs):
        self.async_sizes.append(len(xs))
        return [x * 10 for x in xs]

    @serve.batch(max_batch_size=3, batch_wait_timeout_s=0.5)
    def sync_batched(self, xs, ys):
        self.sync_sizes.append(len(xs))
        return [x + y for x, y in zip(xs, ys)]

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.2)
    async def wrong_length(self, xs):
        return xs[:1]

    def sizes(self):
        return self.async_sizes, self.sync_sizes


def test_async_batches_form():
    h = serve.run(Batcher.bind(), name="b")
    responses = [h.remote(i) for i in range(8)]
    assert [r.result(timeout_s=20) for r in responses] == [i * 10 for i in range(8)]
    async_sizes, _ = h.sizes.remote().result()
    assert sum(async_sizes) == 8 and max(async_sizes) == 4, async_sizes  # not 8 calls of 1
    assert all(1 <= s <= 4 for s in async_sizes)


def test_sync_batches_form_and_length_is_checked():
    h = serve.run(Batcher.bind(), name="b")
    responses = [h.sync_batched.remote(i, ys=100) for i in range(6)]
    assert [r.result(timeout_s=20) for r in responses] == [i + 100 for i in range(6)]
    _, sync_sizes = h.sizes.remote().result()
    assert sum(sync_sizes) == 6 and max(sync_sizes) == 3, sync_sizes
    bad = [h.wrong_length.remote(i) for i in range(2)]
    for r in bad:
        with pytest.raises(ValueError, match="one result per call"):
            r.result(timeout_s=20)


def test_batch_outside_serve_and_bad_options():
    sizes = []

    @serve.batch(max_batch_size=5, batch_wait_timeout_s=0.3)
    def square(xs):
        sizes.append(len(xs))
        return [x * x for x in xs]

    with ThreadPoolExecutor(5) as pool:
        assert list(pool.map(square, range(5))) == [0, 1, 4, 9, 16]
    assert sizes == [5]

    @serve.batch(max_batch_size=3, batch_wait_timeout_s=0.3)
    async def triple(xs):
        return [3 * x for x in xs]

    async def main():
        return await asyncio.gather(*[triple(i) for i in range(3)])
    assert asyncio.run(main()) == [0, 3, 6]

    with pytest.raises(ValueError, match="max_batch_size"):
        serve.batch(max_batch_size=0)
    with pytest.raises(ValueError, match="batch_wait_timeout_s"):
        serve.batch(batch_wait_timeout_s=-1)
    with pytest.raises(TypeError, match="generator"):
        serve.batch(lambda: (yield))


@serve.deployment(ray_actor_options=CPU0, num_replicas=2, user_config={"factor": 2})
class Scaled:
    def __init__(self):
        self.factor = None
        self.reconfigured = 0

    def reconfigure(self, config):
        self.factor = config["factor"]
        self.reconfigured += 1

    def __call__(self, x):
        return x * self.factor

    def info(self):
        return serve.get_replica_context().replica_tag, self.reconfigured


def test_reconfigure_live_replicas():
    h = serve.run(Scaled.bind(), name="r")
    assert h.remote(3).result() == 6
    tags = {h.info.remote().result()[0] for _ in range(20)}
    assert len(tags) == 2
    h = serve.run(Scaled.options(user_config={"factor": 5}).bind(), name="r")
    assert [h.remote(3).result() for _ in range(10)] == [15] * 10
    infos = {h.info.remote().result() for _ in range(20)}
    assert {t for t, _ in infos} == tags                 # the same replicas, reconfigured
    assert {n for _, n in infos} == {2}
    # more replicas with the same code: the old ones stay, one is added
    h = serve.run(Scaled.options(user_config={"factor": 5}, num_replicas=3).bind(), name="r")
    assert len({h.info.remote().result()[0] for _ in range(40)} - tags) == 1
    # a reconfigure that raises fails the update with the error
    with pytest.raises(RuntimeError, match="reconfigure"):
        serve.run(Scaled.options(user_config={"nofactor": 1}, num_replicas=3).bind(), name="r")


@serve.deployment(ray_actor_options=CPU0, num_replicas=2, max_ongoing_requests=8)
class Models:
    def __init__(self):
        self.loads = []

    @serve.multiplexed(max_num_models_per_replica=2)
    async def get_model(self, model_id):
        self.loads.append(model_id)
        return {"id": model_id, "scale": len(model_id)}

    async def __call__(self, x):
        model = await self.get_model(serve.get_multiplexed_model_id())
        return serve.get_replica_context().replica_tag, model["id"], x * model["scale"]

    def loaded(self):
        return list(self.loads)


def test_multiplexing_routes_and_evicts():
    h = serve.run(Models.bind(), name="m")
    outs = [h.options(multiplexed_model_id="abc").remote(i).result() for i in range(6)]
    assert {o[1] for o in outs} == {"abc"} and [o[2] for o in outs] == [3 * i for i in range(6)]
    assert len({o[0] for o in outs}) == 1       # one model id sticks to one replica
    by_replica = {}
    for mid in ("p", "qq", "abc", "p"):
        for _ in range(3):
            tag, model, _ = h.options(multiplexed_model_id=mid).remote(1).result()
            assert model == mid
            by_replica.setdefault(tag, set()).add(mid)
    loads = {}
    for _ in range(30):
        tag, _, _ = h.options(multiplexed_model_id="abc").remote(0).result()
        loads[tag] = h.loaded.remote().result()  # any replica: collect both
    # each replica loaded a model once per stay in its cache (no reload while cached):
    # three calls in a row for one id never load it twice in a row
    for tag_loads in loads.values():
        assert all(a != b for a, b in zip(tag_loads, tag_loads[1:])), tag_loads
    assert serve.get_multiplexed_model_id() == ""


def test_multiplexed_cache_is_lru():
    loaded, unloaded = [], []

    class M:
        def __init__(self, mid):
            self.mid = mid

        def __del__(self):
            unloaded.append(self.mid)

    @serve.multiplexed(max_num_models_per_replica=2)
    def get_model(model_id):
        loaded.append(model_id)
        return M(model_id)

    for mid in ("a", "b", "a", "c", "a", "b"):
        assert get_model(mid).mid == mid
    # a, b loaded; a hit; c evicts b (least recent); a hit; b evicts c
    assert loaded == ["a", "b", "c", "b"]
    assert unloaded[:2] == ["b", "c"]
    with pytest.raises(ValueError, match="non-empty string"):
        get_model("")
    with pytest.raises(ValueError, match="max_num_models_per_replica"):
        serve.multiplexed(max_num_models_per_replica=0)
    with pytest.raises(TypeError, match="exactly one argument"):
        serve.multiplexed(lambda a, b: None)


@serve.deployment(ray_actor_options=CPU0, max_ongoing_requests=2)
class Limited:
    def __init__(self):
        self.now = 0
        self.peak = 0
        self.lock = threading.Lock()

    def __call__(self, t):
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        time.sleep(t)
        with self.lock:
            self.now -= 1
        return True

    async def peak_(self):
        return self.peak


def test_max_ongoing_requests_is_respected():
    h = serve.run(Limited.bind(), name="lim")
    assert all(r.result(timeout_s=30) for r in [h.remote(0.1) for _ in range(10)])
    assert h.peak_.remote().result() == 2


def test_max_queued_requests_raises_backpressure():
    h = serve.run(Limited.options(max_ongoing_requests=1, max_queued_requests=2).bind(),
                  name="bp")
    accepted = []
    with pytest.raises(BackPressureError, match="max_queued_requests=2"):
        for _ in range(10):
            accepted.append(h.remote(0.5))
    assert len(accepted) == 3   # one running + two queued
    assert all(r.result(timeout_s=30) for r in accepted)
    assert h.remote(0).result(timeout_s=10)  # room again
