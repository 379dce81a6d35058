"""``mpiray serve ...`` (also ``python -m mpiray.serve ...``): Ray Serve's CLI.

- ``run TARGET``: TARGET is ``module:app`` or a config file (``.yaml``/``.yml``/``.json``).
  Starts mpiray (under ``mpirun``/``srun`` too: rank 0 serves, the others are workers), the
  HTTP proxy and the applications, and serves until Ctrl-C, SIGTERM or ``mpiray serve
  shutdown``. ``--non-blocking`` deploys, prints the status and stops (a dry run).
- ``status``, ``shutdown``, ``deploy CONFIG``: talk to a running ``serve run`` through its
  proxy's admin endpoint (``/-/serve/...``), which answers loopback clients that present the
  admin token the running service wrote to ``$TMPDIR/mpiray-serve-<uid>/<port>.json`` (0600, in
  a 0700 directory; ``MPIRAY_SERVE_STATE_DIR`` moves it). So only the same user on the same
  machine can query or stop it; from another machine use an SSH tunnel and run the CLI there.
"""

import argparse
import json
import os
import signal
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request

DEFAULT_ADDRESS = "http://127.0.0.1:8000"


def _parser():
    p = argparse.ArgumentParser(prog="mpiray serve", description="Ray Serve on mpiray")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="serve an application (module:app) or a config file")
    r.add_argument("target", help="module:app, or a config file (.yaml/.yml/.json)")
    r.add_argument("--host", default=None, help="interface to bind (default 127.0.0.1)")
    r.add_argument("--port", type=int, default=None, help="port (default 8000; 0: any free)")
    r.add_argument("--name", default="default", help="application name (module:app only)")
    r.add_argument("--route-prefix", default="/", help="route prefix (module:app only)")
    r.add_argument("--auth-token-env", default=None, metavar="VAR",
                   help="require 'Authorization: Bearer $VAR' on every request")
    r.add_argument("--request-timeout-s", type=float, default=None)
    g = r.add_mutually_exclusive_group()
    g.add_argument("--blocking", dest="blocking", action="store_true", default=True,
                   help="serve until stopped (default)")
    g.add_argument("--non-blocking", dest="blocking", action="store_false",
                   help="deploy, print the status and stop")
    for name, helptext in (("status", "status of a running service"),
                           ("shutdown", "stop a running `mpiray serve run`")):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("--address", "-a", default=DEFAULT_ADDRESS)
        if name == "shutdown":
            s.add_argument("--yes", "-y", action="store_true", help="(accepted, as in Ray)")
    d = sub.add_parser("deploy", help="deploy a config file on a running `mpiray serve run`")
    d.add_argument("config")
    d.add_argument("--address", "-a", default=DEFAULT_ADDRESS)
    return p


# ------------------------------------------------------------------ client side

def _admin(address, method, path, body=None):
    from ._private.http_proxy import state_file
    u = urllib.parse.urlparse(address if "://" in address else f"http://{address}")
    port = u.port or 8000
    host = u.hostname or "127.0.0.1"
    try:
        with open(state_file(port)) as f:
            state = json.load(f)
    except FileNotFoundError:
        raise SystemExit(f"mpiray serve: no service of this user listens on port {port} here "
                         f"(no {state_file(port)}); start one with `mpiray serve run`") from None
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("mpiray serve: the admin endpoint answers loopback only; run this "
                         "command on the service's machine (or through an SSH tunnel)")
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Authorization": f"Bearer {state['admin_token']}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        raise SystemExit(f"mpiray serve: {e.code}: {e.read().decode(errors='replace').strip()}")
    except urllib.error.URLError as e:
        raise SystemExit(f"mpiray serve: cannot reach the service on port {port}: {e.reason} "
                         f"(did it stop? a stale {state_file(port)} can be removed)") from None


def _print(obj):
    try:
        import yaml
        sys.stdout.write(yaml.safe_dump(obj, sort_keys=False))
    except ImportError:
        print(json.dumps(obj, indent=2))


# ------------------------------------------------------------------ run

def _run(args):
    import mpiray as ray
    from . import api
    from ._private import config_file

    is_config = args.target.endswith((".yaml", ".yml", ".json"))
    cfg = config_file.load(args.target) if is_config else None
    http = dict((cfg or {}).get("http_options") or {})
    if args.host is not None:
        http["host"] = args.host
    if args.port is not None:
        http["port"] = args.port
    if args.request_timeout_s is not None:
        http["request_timeout_s"] = args.request_timeout_s
    if args.auth_token_env:
        token = os.environ.get(args.auth_token_env)
        if not token:
            raise SystemExit(f"mpiray serve: ${args.auth_token_env} is empty")
        http["auth_token"] = token
    ray.init()                       # workers (ranks >= 1) serve inside and never return
    done = threading.Event()
    try:
        proxy = api.start(http_options=http)
        if cfg is not None:
            names = config_file.deploy(cfg)
        else:
            app = config_file.import_target(args.target)
            api.run(app, name=args.name, route_prefix=args.route_prefix)
            names = [args.name]
        proxy.shutdown_callback = done.set
        proxy.deploy_callback = lambda c: (config_file.check(c), config_file.deploy(c))[1]
        print(f"mpiray serve: {', '.join(names)} at http://{proxy.host}:{proxy.port}/ "
              f"(admin: {proxy._state_path})", flush=True)
        if args.blocking:
            for sig in (signal.SIGTERM,):
                signal.signal(sig, lambda *_: done.set())
            try:
                while not done.wait(0.5):
                    pass
            except KeyboardInterrupt:
                pass
        else:
            _print({n: str(a.status) for n, a in api.status().applications.items()})
    finally:
        api.shutdown()
        ray.shutdown()
    print("mpiray serve: stopped", flush=True)
    return 0


def main(argv=None):
    args = _parser().parse_args(argv)
    if args.cmd == "run":
        return _run(args)
    if args.cmd == "status":
        _print(_admin(args.address, "GET", "/-/serve/status"))
        return 0
    if args.cmd == "shutdown":
        _admin(args.address, "POST", "/-/serve/shutdown", {})
        print("mpiray serve: shutdown requested", flush=True)
        return 0
    if args.cmd == "deploy":
        from ._private import config_file
        cfg = config_file.load(args.config)
        out = _admin(args.address, "POST", "/-/serve/deploy", cfg)
        print(f"mpiray serve: deployed {', '.join(out.get('deployed', []))}", flush=True)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
