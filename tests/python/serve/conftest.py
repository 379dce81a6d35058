"""Serve tests: proxies that serve.run starts on its own listen on an ephemeral loopback port
(several test runs share this machine; port 8000 may be taken), scripts run by the tests too."""

import os

os.environ["MPIRAY_SERVE_PORT"] = "0"
