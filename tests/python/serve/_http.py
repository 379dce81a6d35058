"""A small HTTP client for the Serve tests (http.client: keep-alive, raw bytes).

Importing it also makes proxies that serve.run starts on its own listen on an ephemeral
loopback port: several test runs share this machine and port 8000 may be taken. Every Serve
test module imports it."""

import os

os.environ["MPIRAY_SERVE_PORT"] = "0"

import http.client  # noqa: E402
import json as _json  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402


def proxy_port():
    from mpiray.serve._private.http_proxy import get_proxy
    p = get_proxy()
    assert p is not None, "no HTTP proxy in this process"
    return p.port


class Resp:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    @property
    def text(self):
        return self.body.decode()

    def json(self):
        return _json.loads(self.body)

    def __repr__(self):
        return f"Resp({self.status}, {self.body[:200]!r})"


def request(method, path, body=None, headers=None, port=None, timeout=30, conn=None, json=None):
    if json is not None:
        body = _json.dumps(json).encode()
        headers = dict(headers or {}, **{"content-type": "application/json"})
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", port or proxy_port(), timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        if own:
            conn.close()


def get(path, **kw):
    return request("GET", path, **kw)


def post(path, **kw):
    return request("POST", path, **kw)


def raw(data, port=None, timeout=10, read_until_close=True):
    """Sends raw bytes; returns what came back (until the server closes or the timeout)."""
    s = socket.create_connection(("127.0.0.1", port or proxy_port()), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
            if not read_until_close and b"\r\n\r\n" in out:
                break
        return out
    finally:
        s.close()
