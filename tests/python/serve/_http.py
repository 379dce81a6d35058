"""A small HTTP client for the Serve tests (http.client: keep-alive, raw bytes)."""

import http.client
import json as _json
import socket
import time


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
