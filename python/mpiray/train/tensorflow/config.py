"""``TensorflowConfig`` and its backend: ``TF_CONFIG`` for ``MultiWorkerMirroredStrategy``.

Each worker picks a free port of its own host (the kernel's choice, port 0), the addresses go
through the controller, and every worker gets ``TF_CONFIG = {"cluster": {"worker": [...]},
"task": {"type": "worker", "index": rank}}`` before the training function starts, and
``TF_USE_LEGACY_KERAS=1`` (tf.keras is Keras 2 from the ``tf_keras`` package, as in Ray) when
``tf_keras`` is installed. TensorFlow
binds the port itself when the strategy is created, so the port is free only "almost surely"
(as in Ray); a collision shows as a clear gRPC bind error and a restart (FailureConfig) picks
new ports.

TensorFlow's in-process gRPC server cannot be stopped: a worker process serves one
MultiWorkerMirroredStrategy for the rest of its life. mpiray's worker processes outlive a
training run, so a second ``TensorflowTrainer.fit()`` in the same job needs fresh worker
processes (say, the run after a restart gets them from the runtime's replacements); the first
run in a job always works.
"""

import json
import os
import socket
from dataclasses import dataclass

from ..backend import Backend, BackendConfig


@dataclass
class TensorflowConfig(BackendConfig):
    """No options (as Ray)."""

    @property
    def backend_cls(self):
        return _TensorflowBackend

    @property
    def framework(self):
        return "tensorflow"


def _free_port_url():
    from .._internal.worker import node_ip
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("", 0))
    port = s.getsockname()[1]
    s.close()
    return f"{node_ip()}:{port}"


def _setup_tensorflow_environment(worker_addresses, index):
    os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": worker_addresses},
                                          "task": {"type": "worker", "index": index}})
    # as Ray: tf.keras is Keras 2 (the tf_keras package), whose model.fit works under
    # MultiWorkerMirroredStrategy (Keras 3's fit does not take its distributed datasets)
    import importlib.util
    if importlib.util.find_spec("tf_keras") is not None:
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    return True


class _TensorflowBackend(Backend):
    def on_start(self, worker_group, backend_config):
        import mpiray
        urls = worker_group.execute(_free_port_url)
        mpiray.get([a.execute.remote(_setup_tensorflow_environment, urls, i)
                    for i, a in enumerate(worker_group.actors)])
