"""Serve benchmark suite (``python -m mpiray.bench --suite serve [--against-ray] [--quick]``).

The same applications on mpiray.serve and on Ray Serve, each backend in its own process with
``init(num_cpus=2)``; HTTP load comes from a load generator written for this bench (asyncio,
raw sockets, keep-alive connections, loopback only, bounded by a count and a duration), run as
a separate process so that it shares no interpreter with the server:

* ``http_noop_qps_{1,2}rep_c{1,32}``: a no-op ``__call__`` (returns "ok"), 1 or 2 replicas,
  1 or 32 concurrent keep-alive connections, requests/s over the window.
* ``http_latency_p50_ms`` / ``http_latency_p99_ms``: 1 replica, requests sent at a fixed rate
  (100/s) on their own connections from a pool, latency of each.
* ``handle_calls_per_s``: one deployment calling another through a handle, 32 in flight.
* ``batch_calls_per_s``: ``@serve.batch(max_batch_size=32)`` calls from the driver's handle,
  256 in flight.

Ratios: mpiray / Ray for rates, Ray / mpiray for latencies (above 1: mpiray better).
"""

import asyncio
import json
import os
import socket
import subprocess
import sys
import time

# ------------------------------------------------------------------ load generator


async def _one(reader, writer, req):
    writer.write(req)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, chunked = None, False
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        k = k.strip().lower()
        if k == b"content-length":
            length = int(v)
        elif k == b"transfer-encoding" and b"chunked" in v.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


async def _closed_loop(port, path, concurrency, duration, count):
    req = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    end = time.perf_counter() + duration
    done = [0]
    errors = [0]

    async def worker():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < end and done[0] < count:
                if await _one(reader, writer, req) == 200:
                    done[0] += 1
                else:
                    errors[0] += 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    return {"requests": done[0], "errors": errors[0], "seconds": time.perf_counter() - t0}


async def _open_loop(port, path, rate, duration):
    req = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    pool = asyncio.Queue()
    for _ in range(16):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    lat = []

    async def send():
        conn = await pool.get()
        t = time.perf_counter()
        await _one(*conn, req)
        lat.append(time.perf_counter() - t)
        pool.put_nowait(conn)

    tasks, n = [], int(rate * duration)
    start = time.perf_counter()
    for i in range(n):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(send()))
    await asyncio.gather(*tasks)
    while not pool.empty():
        pool.get_nowait()[1].close()
    lat.sort()
    return {"p50_ms": 1e3 * lat[len(lat) // 2], "p99_ms": 1e3 * lat[int(len(lat) * 0.99) - 1],
            "n": len(lat)}


def _loadgen(args):
    port, path, mode = int(args[0]), args[1], args[2]
    if mode == "closed":
        out = asyncio.run(_closed_loop(port, path, int(args[3]), float(args[4]), int(args[5])))
    else:
        out = asyncio.run(_open_loop(port, path, float(args[3]), float(args[4])))
    print(json.dumps(out))


def _run_loadgen(*args):
    res = subprocess.run([sys.executable, "-m", "mpiray.bench_serve", "--loadgen",
                          *map(str, args)], stdout=subprocess.PIPE, check=True, text=True,
                         timeout=300)
    return json.loads(res.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ the applications


def _apps(serve):
    cpu0 = {"num_cpus": 0}

    @serve.deployment(ray_actor_options=cpu0, max_ongoing_requests=100)
    class Noop:
        def __call__(self, request):
            return "ok"

    @serve.deployment(ray_actor_options=cpu0, max_ongoing_requests=100)
    class Down:
        def __call__(self):
            return 1

    @serve.deployment(ray_actor_options=cpu0, max_ongoing_requests=100)
    class Caller:
        def __init__(self, down):
            self.down = down

        async def bench(self, n):
            t0 = time.perf_counter()
            left = n
            while left:
                k = min(32, left)
                await asyncio.gather(*[self.down.remote() for _ in range(k)])
                left -= k
            return n / (time.perf_counter() - t0)

    @serve.deployment(ray_actor_options=cpu0, max_ongoing_requests=300)
    class Batched:
        @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
        async def __call__(self, xs):
            return [x + 1 for x in xs]

    return Noop, Down, Caller, Batched


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run_backend(backend, quick):
    import importlib
    ray = importlib.import_module(backend)
    serve = importlib.import_module(backend + ".serve")
    if backend == "ray":
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    else:
        ray.init(num_cpus=2)
    dur = 1.0 if quick else 3.0
    out = {}
    try:
        port = _free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        Noop, Down, Caller, Batched = _apps(serve)
        for reps in (1, 2):
            serve.run(Noop.options(num_replicas=reps).bind(), name="noop", route_prefix="/noop")
            _run_loadgen(port, "/noop", "closed", 4, 0.5, 10**6)    # warm up
            for c in (1, 32):
                r = _run_loadgen(port, "/noop", "closed", c, dur, 10**6)
                assert r["errors"] == 0, r
                key = f"http_noop_qps_{reps}rep_c{c}"
                out[key] = r["requests"] / r["seconds"]
                print(f"  {backend} {key}: {out[key]:.0f}", file=sys.stderr, flush=True)
            if reps == 1:
                r = _run_loadgen(port, "/noop", "open", 100, 2.0 if quick else 5.0)
                out["http_latency_p50_ms"], out["http_latency_p99_ms"] = r["p50_ms"], r["p99_ms"]
                print(f"  {backend} latency at 100/s: p50 {r['p50_ms']:.2f} ms, p99 "
                      f"{r['p99_ms']:.2f} ms", file=sys.stderr, flush=True)
        serve.delete("noop")
        h = serve.run(Caller.bind(Down.bind()), name="compose", route_prefix=None)
        h.bench.remote(200).result()
        out["handle_calls_per_s"] = h.bench.remote(500 if quick else 3000).result()
        print(f"  {backend} handle_calls_per_s: {out['handle_calls_per_s']:.0f}",
              file=sys.stderr, flush=True)
        hb = serve.run(Batched.bind(), name="batch", route_prefix=None)

        async def drive(n):
            t0 = time.perf_counter()
            left = n
            while left:
                k = min(256, left)
                got = await asyncio.gather(*[hb.remote(i) for i in range(k)])
                assert got == [i + 1 for i in range(k)]
                left -= k
            return n / (time.perf_counter() - t0)

        asyncio.run(drive(256))
        out["batch_calls_per_s"] = asyncio.run(drive(1000 if quick else 5000))
        print(f"  {backend} batch_calls_per_s: {out['batch_calls_per_s']:.0f}",
              file=sys.stderr, flush=True)
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
    return out


def run_suite(against_ray, quick):
    def child(backend):
        cmd = [sys.executable, "-m", "mpiray.bench_serve", "--backend", backend] + \
            (["--quick"] if quick else [])
        res = subprocess.run(cmd, stdout=subprocess.PIPE, check=True, text=True, timeout=1200)
        return json.loads(res.stdout.strip().splitlines()[-1])

    ours = child("mpiray")
    if not against_ray:
        return {"mpiray": ours, "cores": os.cpu_count()}
    theirs = child("ray")
    ratio = {}
    for k, v in ours.items():
        if k in theirs and theirs[k] and v:
            ratio[k] = theirs[k] / v if k.endswith("_ms") else v / theirs[k]
    return {"mpiray": ours, "ray": theirs, "ratio": ratio, "cores": os.cpu_count()}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--loadgen"]:
        _loadgen(sys.argv[2:])
        sys.exit(0)
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("--backend", required=True)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    print(json.dumps(run_backend(a.backend, a.quick)))
