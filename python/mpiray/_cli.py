"""The ``mpiray`` command of an installed package (console script ``mpiray``).

``mpiray run script.py [args]`` runs a Ray program with ``import ray`` resolved to mpiray
(the same as ``python -m mpiray script.py``); ``mpiray serve ...`` is Serve's CLI
(mpiray/serve/scripts.py). Every other command is a C++ program (apps/main.cpp: submit, status, stop, logs, timeline,
worker, bench) that pip installs inside the package, next to the extension (mpiray/bin/mpiray).
This launcher finds it and replaces itself with it, so signals, exit statuses and
``/proc/self/exe`` are the program's own. When a library the runtime needs is missing it prints
the same message as ``import mpiray`` would raise at first use (see _native.py) instead of the
loader's error.
"""

import os
import sys


def main(argv=None):
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] == "run":
        # `mpiray run script.py [args]`: the script with `import ray` resolved to mpiray
        # (python -m mpiray, __main__.py), in this interpreter.
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, "-m", "mpiray", *args[1:]])
    if args and args[0] == "serve":
        # `mpiray serve run|status|shutdown|deploy` (mpiray/serve/scripts.py), in Python
        from .serve.scripts import main as serve_main
        return serve_main(args[1:])
    from . import _native

    if _native.load_error:
        print(f"mpiray: {_native.load_error}", file=sys.stderr)
        return 1
    exe = _native.cli_path()
    if exe is None:
        print("mpiray: this installation has no `mpiray` program next to its extension "
              f"({getattr(sys.modules.get('mpiray._core'), '__file__', '?')}); reinstall mpiray",
              file=sys.stderr)
        return 1
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(exe, [exe, *args])


if __name__ == "__main__":
    sys.exit(main())
