"""Autoscaling: the policy alone (pure), then a deployment that scales up under a bounded HTTP
load and back down after it."""

import concurrent.futures
import time

import pytest

from mpiray import serve
from mpiray.serve._private.autoscaler import AutoscalingPolicy

from _http import get

CFG = {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 2,
       "upscale_delay_s": 1.0, "downscale_delay_s": 3.0, "look_back_period_s": 1.0,
       "smoothing_factor": 1.0, "upscaling_factor": None, "downscaling_factor": None}


@pytest.mark.timeout(30)
def test_policy_waits_for_the_delays_and_clamps():
    p = AutoscalingPolicy(CFG)
    p.record(0.0, 7)                      # 7 requests / 2 per replica -> 4
    assert p.desired(1) == 4
    assert p.decide(0.0, 1) == 1          # not yet: the upscale delay runs
    p.record(0.5, 7)
    assert p.decide(0.5, 1) == 1
    p.record(1.1, 7)
    assert p.decide(1.1, 1) == 4
    p.record(1.2, 100)
    assert p.desired(4) == 4              # clamped to max_replicas
    for t in (3.0, 4.0, 5.0):
        p.record(t, 0)
    assert p.desired(4) == 1              # idle -> min_replicas
    assert p.decide(5.0, 4) == 4          # the downscale delay starts
    p.record(7.0, 0)
    assert p.decide(7.0, 4) == 4
    p.record(8.1, 0)
    assert p.decide(8.1, 4) == 1
    # a wish that changes direction restarts the delay
    q = AutoscalingPolicy(CFG)
    q.record(0, 8)
    assert q.decide(0, 2) == 2
    q.record(0.5, 0)
    q.record(0.6, 0)
    q.samples.clear()
    q.record(0.7, 4)                       # exactly 2 replicas' worth: no change wanted
    assert q.decide(0.7, 2) == 2 and q.up_since is None and q.down_since is None
    z = AutoscalingPolicy(dict(CFG, min_replicas=0))
    z.record(0, 0)
    assert z.desired(1) == 0


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=4,
                  autoscaling_config={"min_replicas": 1, "max_replicas": 3,
                                      "target_ongoing_requests": 1, "upscale_delay_s": 0.5,
                                      "downscale_delay_s": 1.5, "look_back_period_s": 1.0})
class Busy:
    async def __call__(self, request):
        import asyncio
        await asyncio.sleep(0.3)
        return serve.get_replica_context().replica_tag


def _running(app="auto"):
    d = serve.status().applications[app].deployments["Busy"]
    return d.replica_states.get("RUNNING", 0)


@pytest.mark.timeout(150)
@pytest.mark.usefixtures("serve_cluster", "fresh_serve")
def test_scales_up_under_load_and_down_after():
    serve.run(Busy.bind(), name="auto", route_prefix="/auto")
    assert _running() == 1
    stop = time.monotonic() + 6.0         # bounded load: 8 clients for 6 seconds
    tags, peak = set(), 1

    def client():
        n = 0
        while time.monotonic() < stop:
            r = get("/auto", timeout=30)
            assert r.status == 200, r
            tags.add(r.text)
            n += 1
        return n

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futs = [pool.submit(client) for _ in range(8)]
        while not all(f.done() for f in futs):
            peak = max(peak, _running())
            time.sleep(0.2)
        total = sum(f.result() for f in futs)
    assert total > 20
    assert peak >= 2, f"never scaled up (peak {peak})"
    assert len(tags) >= 2                  # requests really reached the new replicas
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _running() > 1:
        time.sleep(0.2)
    assert _running() == 1, serve.status().applications["auto"].deployments["Busy"]
    assert get("/auto").status == 200
