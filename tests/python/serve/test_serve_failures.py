"""mpiray.serve part A failure paths: a replica SIGKILLed with requests in flight, a
constructor that raises, failing health checks, bad input."""

import os
import signal
import time

import pytest

import _http  # noqa: F401 - serve.run's proxies on ephemeral ports

import mpiray as ray
from mpiray import serve
from mpiray.serve.exceptions import RayServeException

pytestmark = pytest.mark.usefixtures("serve_cluster", "fresh_serve")

CPU0 = {"num_cpus": 0}


def wait_until(pred, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


@serve.deployment(ray_actor_options=CPU0, num_replicas=2, health_check_period_s=0.2,
                  max_ongoing_requests=10)
class Slow:
    def __call__(self, t, x):
        time.sleep(t)
        return x

    def pid(self):
        return os.getpid(), serve.get_replica_context().replica_tag


def _replica_pids(handle, n=40):
    return {handle.pid.remote().result(timeout_s=10) for _ in range(n)}


def test_replica_sigkill_with_requests_in_flight():
    h = serve.run(Slow.bind(), name="kill")
    controller_pid = ray.get(ray.get_actor("SERVE_CONTROLLER_ACTOR").ping.remote())
    pids = _replica_pids(h)
    assert len({tag for _, tag in pids}) == 2
    victims = [(pid, tag) for pid, tag in pids if pid != controller_pid]
    assert victims, "both replicas share the controller's process"
    victim_pid, victim_tag = victims[0]
    responses = [h.remote(1.0, i) for i in range(12)]
    time.sleep(0.3)                      # the requests are running on both replicas
    os.kill(victim_pid, signal.SIGKILL)
    start = time.monotonic()
    got = [r.result(timeout_s=60) for r in responses]   # retried on a live replica
    assert got == list(range(12))
    # requests that were running on the killed replica were sent again (not lost, not hung)
    assert any(r._attempts > 1 for r in responses)
    assert time.monotonic() - start < 45
    # the controller replaced the dead replica
    assert wait_until(lambda: serve.status().applications["kill"]
                      .deployments["Slow"].replica_states == {"RUNNING": 2})
    tags = {tag for _, tag in _replica_pids(serve.get_app_handle("kill"))}
    assert victim_tag not in tags and len(tags) == 2


@serve.deployment(ray_actor_options=CPU0, num_replicas=2, health_check_period_s=0.1,
                  health_check_timeout_s=5)
class Flaky:
    def __init__(self):
        self.calls = 0

    def check_health(self):
        self.calls += 1
        if os.environ.get("FLAKY_FAIL") == serve.get_replica_context().replica_tag:
            raise RuntimeError("unhealthy on purpose")

    def fail_me(self):
        os.environ["FLAKY_FAIL"] = serve.get_replica_context().replica_tag
        return os.environ["FLAKY_FAIL"]

    def __call__(self):
        return serve.get_replica_context().replica_tag


def test_failing_health_check_replaces_the_replica():
    h = serve.run(Flaky.bind(), name="flaky")
    bad = h.fail_me.remote().result()
    assert wait_until(lambda: bad not in {h.remote().result() for _ in range(10)}, 30)
    assert wait_until(lambda: serve.status().applications["flaky"]
                      .deployments["Flaky"].replica_states == {"RUNNING": 2})
    st = serve.status().applications["flaky"].deployments["Flaky"]
    assert "unhealthy on purpose" in st.message or "replaced" in st.message


@serve.deployment(ray_actor_options=CPU0)
class Fine:
    def __call__(self):
        return "fine"


@serve.deployment(ray_actor_options=CPU0, num_replicas=2)
class Broken:
    def __init__(self, child):
        raise ValueError("cannot load the weights file /no/such/model.pt")


def test_constructor_that_raises_fails_the_app_cleanly():
    serve.run(Fine.bind(), name="ok")
    with pytest.raises(RuntimeError, match="cannot load the weights"):
        serve.run(Broken.bind(Fine.bind()), name="bad", route_prefix="/bad")
    st = serve.status()
    bad = st.applications["bad"]
    assert bad.status == "DEPLOY_FAILED"
    assert "ValueError: cannot load the weights file" in bad.message
    assert "Traceback" in bad.message
    assert bad.deployments["Broken"].status == "DEPLOY_FAILED"
    assert "ValueError" in bad.deployments["Broken"].message
    # nothing half-deployed: no replica of the failed app is left running
    for dep in bad.deployments.values():
        assert dep.replica_states.get("RUNNING", 0) == 0, bad
    assert wait_until(lambda: not [a for a in ray.util.state.list_actors(
        filters=[("state", "=", "ALIVE")], limit=1000) if str(a["name"]).startswith(
            "SERVE_REPLICA::bad#")], 10)
    with pytest.raises(RayServeException):
        serve.get_app_handle("bad").remote().result(timeout_s=5)
    # the other application is untouched
    assert st.applications["ok"].status == "RUNNING"
    assert serve.get_app_handle("ok").remote().result() == "fine"


def test_bad_input_gives_clear_errors():
    h = serve.run(Fine.bind(), name="bad-input")
    with pytest.raises(AttributeError, match="has no method 'nope'.*Available methods"):
        h.nope.remote().result(timeout_s=10)
    with pytest.raises(TypeError, match="unknown option"):
        h.options(methodname="x")
    with pytest.raises(TypeError, match="method_name"):
        h.options(method_name=3)
    with pytest.raises(ValueError, match="num_replicas must be >= 1"):
        serve.deployment(num_replicas=0)(Fine.func_or_class)
    with pytest.raises(TypeError, match="num_replicas"):
        Fine.options(num_replicas="two")
    with pytest.raises(ValueError, match="not allowed when autoscaling_config"):
        serve.deployment(num_replicas=2, autoscaling_config={"min_replicas": 1})(
            Fine.func_or_class)
    with pytest.raises(ValueError, match="must not exceed max_replicas"):
        Fine.options(autoscaling_config={"min_replicas": 3, "max_replicas": 2})
    with pytest.raises(ValueError, match="unknown field"):
        Fine.options(autoscaling_config={"min_replica": 3})
    with pytest.raises(ValueError, match="max_ongoing_requests"):
        Fine.options(max_ongoing_requests=0)
    with pytest.raises(ValueError, match="max_queued_requests"):
        Fine.options(max_queued_requests=0)
    with pytest.raises(ValueError, match="'max_restarts'.*not allowed"):
        Fine.options(ray_actor_options={"max_restarts": 3})
    with pytest.raises(ValueError, match="user_config must be JSON"):
        Fine.options(user_config={"f": object()})
    with pytest.raises(TypeError, match="unknown option"):
        Fine.options(num_replica=2)
    with pytest.raises(TypeError, match="does not support"):
        serve.deployment(placement_group_bundles=[{"CPU": 1}])
    with pytest.raises(TypeError, match=r"pass Fine.bind\(\)"):
        serve.run(Fine)
    with pytest.raises(RuntimeError, match="cannot be constructed directly"):
        Fine()
    with pytest.raises(ValueError, match="route_prefix"):
        serve.run(Fine.bind(), name="x", route_prefix="noslash")
    with pytest.raises(ValueError, match="already used"):
        serve.run(Fine.bind(), name="other", route_prefix="/")
    with pytest.raises(RayServeException, match="does not exist"):
        serve.get_app_handle("no-such-app")
    with pytest.raises(RayServeException, match="Deployment 'Nope' does not exist"):
        serve.get_deployment_handle("Nope", app_name="bad-input")
    with pytest.raises(TypeError, match="takes no .bind"):
        serve.run(serve.deployment(lambda: 1).bind(3))


def test_replica_that_cannot_be_placed_fails_the_deploy():
    with pytest.raises(RuntimeError, match=r"could not be started.*'num_cpus': 64"):
        serve.run(Fine.options(ray_actor_options={"num_cpus": 64}).bind(), name="big")
    assert serve.status().applications["big"].status == "DEPLOY_FAILED"


def test_delete_lets_running_requests_finish():
    h = serve.run(Slow.options(num_replicas=1, graceful_shutdown_timeout_s=10).bind(),
                  name="drain")
    running = [h.remote(0.7, i) for i in range(3)]
    time.sleep(0.2)
    serve.delete("drain")                     # waits for the replica to drain, then stops it
    assert [r.result(timeout_s=5) for r in running] == [0, 1, 2]
    assert "drain" not in serve.status().applications
