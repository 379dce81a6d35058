"""mpiray.serve over real HTTP on loopback: the native proxy in the driver, Starlette requests
in replicas, response conversion, streaming, routing by prefix, keep-alive, FastAPI ingress."""

import http.client
import json
import time

import pytest
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse

from mpiray import serve

from _http import get, post, proxy_port, request

pytestmark = [pytest.mark.usefixtures("serve_cluster", "fresh_serve"), pytest.mark.timeout(120)]

CPU0 = {"num_cpus": 0}


@serve.deployment(ray_actor_options=CPU0)
class Echo:
    async def __call__(self, request):
        kind = request.path_params.get("kind") or request.url.path.rsplit("/", 1)[-1]
        if kind == "json":
            return {"body": await request.json(), "query": dict(request.query_params),
                    "method": request.method, "path": request.url.path,
                    "header": request.headers.get("x-test")}
        if kind == "bytes":
            return await request.body()
        if kind == "none":
            return None
        if kind == "list":
            return [1, "two", 3.0]
        if kind == "custom":
            return PlainTextResponse("made", status_code=201, headers={"x-made": "yes"})
        if kind == "jsonresp":
            return JSONResponse({"ok": True}, status_code=202)
        if kind == "boom":
            raise ValueError("the model exploded")
        return f"hello {request.method}"


def test_return_values_become_responses_as_in_ray_serve():
    serve.run(Echo.bind(), name="echo", route_prefix="/echo")
    r = get("/echo")
    assert (r.status, r.text) == (200, "hello GET")
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    r = post("/echo/json?a=1&b=two", json={"x": [1, 2]}, headers={"X-Test": "hdr"})
    assert r.status == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == {"body": {"x": [1, 2]}, "query": {"a": "1", "b": "two"},
                        "method": "POST", "path": "/echo/json", "header": "hdr"}
    r = post("/echo/bytes", body=b"\x00\x01raw")
    assert (r.status, r.body, r.headers["content-type"]) == (200, b"\x00\x01raw", "text/plain")
    r = get("/echo/none")
    assert (r.status, r.body) == (200, b"")
    assert get("/echo/list").json() == [1, "two", 3.0]
    r = get("/echo/custom")
    assert (r.status, r.text, r.headers["x-made"]) == (201, "made", "yes")
    r = get("/echo/jsonresp")
    assert (r.status, r.json()) == (202, {"ok": True})


def test_errors_give_500_with_the_error_text_and_unknown_routes_404():
    serve.run(Echo.bind(), name="echo", route_prefix="/echo")
    r = get("/echo/boom")
    assert r.status == 500
    assert "ValueError: the model exploded" in r.text and "Traceback" in r.text
    r = get("/elsewhere")
    assert r.status == 404
    assert "Path '/elsewhere' not found" in r.text
    assert get("/-/routes").json() == {"/echo": "echo"}
    assert get("/-/healthz").text == "success"


@serve.deployment(ray_actor_options=CPU0)
def whoami(request):
    return {"app": serve.get_replica_context().app_name, "path": request.url.path,
            "root_path": request.scope["root_path"]}


def test_longest_route_prefix_wins():
    serve.run(whoami.bind(), name="root", route_prefix="/")
    serve.run(whoami.bind(), name="api", route_prefix="/api")
    serve.run(whoami.bind(), name="v2", route_prefix="/api/v2")
    assert get("/").json()["app"] == "root"
    assert get("/apix").json()["app"] == "root"
    assert get("/api").json()["app"] == "api"
    assert get("/api/thing").json() == {"app": "api", "path": "/api/thing", "root_path": "/api"}
    assert get("/api/v2/x").json()["app"] == "v2"
    serve.delete("v2")
    assert get("/api/v2/x").json()["app"] == "api"
    assert get("/-/routes").json() == {"/": "root", "/api": "api"}


def test_keep_alive_connection_serves_many_requests_and_pipelining():
    serve.run(Echo.bind(), name="echo", route_prefix="/")
    from mpiray.serve._private.http_proxy import get_proxy
    before = get_proxy().stats()["connections"]
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port(), timeout=30)
    for i in range(20):
        r = request("POST", "/json", json={"i": i}, conn=conn)
        assert r.status == 200 and r.json()["body"] == {"i": i}
    conn.close()
    assert get_proxy().stats()["connections"] - before == 1
    # pipelined: three requests in one write, answered in order on one connection
    import socket
    s = socket.create_connection(("127.0.0.1", proxy_port()), timeout=30)
    s.sendall(b"".join(b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n" % k for k in
                       (b"list", b"none", b"plain")))
    data = b""
    while data.count(b"HTTP/1.1 200") < 3 or not data.endswith(b"hello GET"):
        chunk = s.recv(65536)
        assert chunk, data
        data += chunk
    s.close()
    assert data.index(b'[1,"two",3.0]') < data.index(b"hello GET")


@serve.deployment(ray_actor_options=CPU0)
class Streamer:
    def __call__(self, request):
        n = int(request.query_params.get("n", 3))
        if request.url.path.endswith("/sr"):
            async def agen():
                for i in range(n):
                    yield f"chunk{i}\n"
            return StreamingResponse(agen(), media_type="text/event-stream")

        def gen():
            for i in range(n):
                time.sleep(0.05)
                yield f"item{i};"
        return gen()


def test_streaming_responses_are_chunked():
    serve.run(Streamer.bind(), name="stream", route_prefix="/s")
    r = get("/s/gen?n=5")
    assert r.status == 200 and r.headers.get("transfer-encoding") == "chunked"
    assert r.text == "".join(f"item{i};" for i in range(5))
    r = get("/s/sr?n=400")
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers.get("transfer-encoding") == "chunked"
    assert r.text == "".join(f"chunk{i}\n" for i in range(400))
    # the first item arrives before the generator ends
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port(), timeout=30)
    conn.request("GET", "/s/gen?n=40")
    resp = conn.getresponse()
    t0 = time.monotonic()
    first = resp.read1(64)
    assert first.startswith(b"item0;") and time.monotonic() - t0 < 1.5
    rest = resp.read()
    assert (first + rest).decode().count("item") == 40
    conn.close()


# ------------------------------------------------------------------ FastAPI ingress

from fastapi import FastAPI, HTTPException  # noqa: E402
from pydantic import BaseModel  # noqa: E402

fastapi_app = FastAPI()


class Item(BaseModel):
    name: str
    price: float


class Priced(BaseModel):
    name: str
    total: float


@fastapi_app.get("/plain")
def plain_route():
    return {"plain": True}


@serve.deployment(ray_actor_options=CPU0)
@serve.ingress(fastapi_app)
class Shop:
    def __init__(self, tax):
        self.tax = tax

    @fastapi_app.get("/items/{item_id}")
    def read(self, item_id: int, q: str = ""):
        return {"item_id": item_id, "q": q, "replica": serve.get_replica_context().replica_tag}

    @fastapi_app.post("/price", response_model=Priced)
    async def price(self, item: Item):
        return {"name": item.name, "total": round(item.price * (1 + self.tax), 2),
                "dropped": "not in the response model"}

    @fastapi_app.get("/missing")
    def missing(self):
        raise HTTPException(status_code=418, detail="no teapot here")


def test_fastapi_ingress_routes_path_params_bodies_and_response_models():
    serve.run(Shop.bind(0.5), name="shop", route_prefix="/shop")
    r = get("/shop/items/42?q=red")
    assert r.status == 200
    body = r.json()
    assert body["item_id"] == 42 and body["q"] == "red" and body["replica"]
    r = post("/shop/price", json={"name": "pen", "price": 2.0})
    assert (r.status, r.json()) == (200, {"name": "pen", "total": 3.0})
    r = post("/shop/price", json={"name": "pen"})
    assert r.status == 422 and "price" in r.text
    assert get("/shop/items/notanint").status == 422
    r = get("/shop/missing")
    assert (r.status, r.json()) == (418, {"detail": "no teapot here"})
    assert get("/shop/plain").json() == {"plain": True}
    assert get("/shop/nothing").status == 404
    assert "/items/{item_id}" in get("/shop/openapi.json").text
