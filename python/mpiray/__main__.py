"""``python -m mpiray script.py [args]``: run an unmodified Ray program on mpiray.

``import ray`` (and every ``ray.X``) in the script, in the modules it imports and in the
worker processes it starts loads mpiray's modules (see _ray_alias.py). Also
``python -m mpiray -m module [args]`` (for example ``-m pytest``) and ``python -m mpiray -c
code``. Under a launcher: ``mpirun -n 8 python -m mpiray script.py``.
"""

import os
import runpy
import sys

USAGE = ("usage: python -m mpiray script.py [args...]\n"
         "       python -m mpiray -m module [args...]\n"
         "       python -m mpiray -c code [args...]\n"
         "Runs a Ray program with `import ray` resolved to mpiray (MPIRAY_AS_RAY=1).")


def main(argv=None):
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr if not args else sys.stdout)
        return 2 if not args else 0
    from . import _ray_alias

    _ray_alias.install()
    if args[0] == "-m":
        if len(args) < 2:
            print("python -m mpiray: -m needs a module name\n" + USAGE, file=sys.stderr)
            return 2
        sys.argv = [args[1], *args[2:]]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
        return 0
    if args[0] == "-c":
        if len(args) < 2:
            print("python -m mpiray: -c needs a program\n" + USAGE, file=sys.stderr)
            return 2
        sys.argv = ["-c", *args[2:]]
        sys.path.insert(0, "")
        exec(compile(args[1], "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
        return 0
    script = args[0]
    if not os.path.exists(script):
        print(f"python -m mpiray: can't open file {script!r}: no such file", file=sys.stderr)
        return 2
    sys.argv = [script, *args[1:]]
    # As `python script.py`: the script's folder first on the import path.
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
