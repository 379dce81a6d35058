"""The ``mpiray`` command of an installed package (console script ``mpiray``).

The command-line tool is a C++ program (apps/main.cpp: submit, status, stop, logs, timeline,
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
