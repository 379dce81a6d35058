"""mpiray.train.torch (Ray's ``ray.train.torch``)."""

try:
    import torch  # noqa: F401
except ModuleNotFoundError:  # pragma: no cover
    raise ModuleNotFoundError("PyTorch isn't installed. To install PyTorch, run 'pip install torch'")

from .config import TorchConfig
from .torch_trainer import TorchTrainer
from .train_loop_utils import (accelerate, backward, enable_reproducibility, get_device, get_devices,
                               prepare_data_loader, prepare_model, prepare_optimizer)
from ._mpiray_hook import mpiray_allreduce_hook

__all__ = ["TorchTrainer", "TorchConfig", "accelerate", "get_device", "get_devices", "prepare_model",
           "prepare_optimizer", "prepare_data_loader", "backward", "enable_reproducibility",
           "mpiray_allreduce_hook"]
