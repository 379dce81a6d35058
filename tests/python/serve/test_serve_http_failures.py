"""Bad input and failures over HTTP: malformed requests (400), oversized bodies (413), a slow
client (slowloris) that stalls nobody, a bearer token, a replica that hangs (408, then
replaced) and replicas SIGKILLed with requests in flight (GET retried, POST 503)."""

import concurrent.futures
import os
import signal
import socket
import threading
import time

import pytest

import mpiray as ray
from mpiray import serve

from _http import get, post, proxy_port, raw, request

pytestmark = [pytest.mark.usefixtures("serve_cluster", "fresh_serve"), pytest.mark.timeout(150)]

CPU0 = {"num_cpus": 0}


@serve.deployment(ray_actor_options=CPU0, max_ongoing_requests=16, health_check_period_s=0.3,
                  health_check_timeout_s=1.0, num_replicas=2)
class Worker:
    async def __call__(self, request):
        path = request.url.path
        if path.endswith("/hang"):
            time.sleep(6)           # blocks this replica's event loop: it stops answering
            return "woke"
        if path.endswith("/slow"):
            import asyncio
            await asyncio.sleep(float(request.query_params.get("t", 1.5)))
        return {"pid": os.getpid(), "tag": serve.get_replica_context().replica_tag,
                "len": len(await request.body())}


def test_malformed_requests_get_400_and_the_proxy_keeps_serving():
    serve.run(Worker.options(num_replicas=1).bind(), name="w", route_prefix="/")
    out = raw(b"NOT HTTP AT ALL\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400") and b"Malformed HTTP request" in out
    out = raw(b"GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400")
    out = raw(b"GET http://elsewhere/x HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400") and b"starting with '/'" in out
    assert get("/ok").status == 200


def test_oversized_bodies_get_413():
    serve.start(http_options={"port": 0, "max_body_bytes": 1000})
    serve.run(Worker.options(num_replicas=1).bind(), name="w", route_prefix="/")
    r = post("/up", body=b"x" * 5000)
    assert r.status == 413 and "limit is 1000 bytes" in r.text
    r = post("/up", body=b"x" * 999)
    assert r.status == 200 and r.json()["len"] == 999


def test_a_slow_client_does_not_stall_others():
    serve.start(http_options={"port": 0, "header_timeout_s": 1.0})
    serve.run(Worker.options(num_replicas=1).bind(), name="w", route_prefix="/")
    port = proxy_port()
    slow = socket.create_connection(("127.0.0.1", port), timeout=10)
    closed = threading.Event()

    def drip():
        try:
            for ch in b"GET /slowloris HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 100:
                slow.send(bytes([ch]))
                time.sleep(0.05)
        except OSError:
            closed.set()

    t = threading.Thread(target=drip)
    t.start()
    t0 = time.monotonic()
    for _ in range(10):                     # meanwhile others are served at once
        assert get("/fast").status == 200
    assert time.monotonic() - t0 < 5
    t.join(timeout=30)
    slow.settimeout(5)
    try:
        rest = slow.recv(100)
    except OSError:
        rest = b""
    assert closed.is_set() or rest == b"", "the slow client was not cut off"
    slow.close()
    from mpiray.serve._private.http_proxy import get_proxy
    assert get_proxy().stats()["timeouts"] >= 1


def test_bearer_token_when_asked_and_loopback_by_default():
    token = "t0k3n-0123456789abcdef"
    serve.start(http_options={"host": "0.0.0.0", "port": 0, "auth_token": token})
    serve.run(Worker.options(num_replicas=1).bind(), name="w", route_prefix="/")
    r = get("/x")
    assert r.status == 401 and r.headers["www-authenticate"] == "Bearer"
    assert get("/x", headers={"Authorization": "Bearer wrong"}).status == 401
    assert get("/x", headers={"Authorization": f"Bearer {token}"}).status == 200
    serve.shutdown()
    serve.start(http_options={"port": 0})
    from mpiray.serve._private.http_proxy import get_proxy
    assert get_proxy().host == "127.0.0.1"
    with pytest.raises(ValueError, match="at least 16"):
        serve.start(http_options={"port": 0, "auth_token": "short"})
    with pytest.raises(ValueError, match="unknown option"):
        serve.start(http_options={"prot": 1})


def test_a_hung_replica_times_out_with_408_and_is_replaced():
    serve.start(http_options={"port": 0, "request_timeout_s": 1.5})
    # (the periodic check alone would find it only after 10 s: the proxy's timeout reports it)
    serve.run(Worker.options(num_replicas=1, health_check_timeout_s=10).bind(), name="w",
              route_prefix="/")
    before = get("/tag").json()["tag"]
    t0 = time.monotonic()
    r = get("/hang")
    assert r.status == 408 and "timed out after 1.5s" in r.text
    assert time.monotonic() - t0 < 5
    deadline = time.monotonic() + 30
    tag = before
    while time.monotonic() < deadline:
        r = get("/tag")
        if r.status == 200 and r.json()["tag"] != before:
            tag = r.json()["tag"]
            break
        time.sleep(0.2)
    assert tag != before, "the hung replica was not replaced"


def _victim(n_probe=30):
    controller_pid = ray.get(ray.get_actor("SERVE_CONTROLLER_ACTOR").ping.remote())
    seen = {}
    for _ in range(n_probe):
        b = get("/who").json()
        seen[b["tag"]] = b["pid"]
    assert len(seen) == 2, seen
    victims = [pid for pid in seen.values() if pid not in (controller_pid, os.getpid())]
    assert victims, "both replicas share the controller's process"
    return victims[0]


def test_replica_sigkill_with_requests_in_flight_over_http():
    serve.run(Worker.bind(), name="w", route_prefix="/")
    victim = _victim()
    with concurrent.futures.ThreadPoolExecutor(24) as pool:
        gets = [pool.submit(get, "/slow?t=1.5", timeout=60) for _ in range(12)]
        posts = [pool.submit(post, "/slow?t=1.5", body=b"data", timeout=60) for _ in range(12)]
        time.sleep(0.7)                      # the requests run on both replicas
        os.kill(victim, signal.SIGKILL)
        got = [f.result(timeout=90) for f in gets]
        posted = [f.result(timeout=90) for f in posts]
    # idempotent GETs were sent again to the live replica
    assert [r.status for r in got] == [200] * 12, got
    # POSTs on the dead replica fail with a clear 503; the others succeed
    codes = sorted(r.status for r in posted)
    assert set(codes) <= {200, 503} and 503 in codes, posted
    bad = next(r for r in posted if r.status == 503)
    assert "died" in bad.text and "not idempotent" in bad.text
    # and the service goes on (the controller replaces the replica)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        st = serve.status().applications["w"].deployments["Worker"]
        if st.replica_states.get("RUNNING") == 2:
            break
        time.sleep(0.2)
    assert serve.status().applications["w"].deployments["Worker"].replica_states["RUNNING"] == 2
    assert all(get("/after").status == 200 for _ in range(5))


@serve.deployment(ray_actor_options=CPU0, num_replicas=1)
class Ticker:
    """Streams its pid first, then a tick every 0.1 s for a long time."""

    def __call__(self, request):
        def gen():
            yield f"pid={os.getpid()}\n"
            for i in range(600):
                time.sleep(0.1)
                yield f"tick {i}\n"
        return gen()

    def ticks(self, n):
        yield os.getpid()
        for i in range(n):
            time.sleep(0.1)
            yield i


def test_a_stream_cut_by_a_dead_replica_is_an_error_for_the_client():
    import http.client
    serve.run(Ticker.bind(), name="t", route_prefix="/t")
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port(), timeout=30)
    conn.request("GET", "/t")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("transfer-encoding") == "chunked"
    first = resp.readline()
    assert first.startswith(b"pid="), first
    assert resp.readline().startswith(b"tick")          # the stream is flowing
    os.kill(int(first.split(b"=")[1]), signal.SIGKILL)
    # The body must not end as if it were complete: the proxy resets the connection after
    # what it had, without the terminating zero chunk; http.client sees a broken body.
    with pytest.raises((http.client.IncompleteRead, ConnectionError, http.client.HTTPException)):
        while True:
            chunk = resp.read(64)
            if not chunk:
                raise AssertionError("the cut stream ended like a complete response")
    conn.close()
    # Other clients are served (a replacement replica comes up).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            c2 = http.client.HTTPConnection("127.0.0.1", proxy_port(), timeout=30)
            c2.request("GET", "/t")
            r2 = c2.getresponse()
            if r2.status == 200 and r2.readline().startswith(b"pid="):
                c2.close()
                break
            c2.close()
        except OSError:
            pass
        time.sleep(0.3)
    else:
        raise AssertionError("no replica answered after the kill")


def test_a_handle_stream_cut_by_a_dead_replica_raises_deployment_unavailable():
    from mpiray.serve.exceptions import DeploymentUnavailableError
    h = serve.run(Ticker.bind(), name="t", route_prefix=None)
    gen = h.options(stream=True).ticks.remote(600)
    pid = next(gen)
    assert next(gen) == 0
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(DeploymentUnavailableError, match="died after"):
        for _ in range(1000):
            next(gen)
