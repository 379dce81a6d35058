"""``python -m mpiray.serve run|status|shutdown|deploy`` (the same as ``mpiray serve``)."""

import sys

from .scripts import main

sys.exit(main())
