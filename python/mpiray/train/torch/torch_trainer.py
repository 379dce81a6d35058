"""``TorchTrainer`` (Ray's ``ray.train.torch.TorchTrainer``)."""

from ..data_parallel_trainer import DataParallelTrainer
from .config import TorchConfig


class TorchTrainer(DataParallelTrainer):
    """Data-parallel PyTorch training: ``train_loop_per_worker`` runs on every worker with a
    torch.distributed process group set up (gloo on CPU, NCCL with ``use_gpu``, or
    ``TorchConfig(backend="mpiray")``). Use :func:`prepare_model` and
    :func:`prepare_data_loader` inside it."""

    _backend_config_cls = TorchConfig

    def __init__(self, train_loop_per_worker, *, train_loop_config=None, torch_config=None, scaling_config=None,
                 run_config=None, datasets=None, dataset_config=None, resume_from_checkpoint=None, metadata=None,
                 validation_config=None, backend_config=None):
        torch_config = torch_config or backend_config or TorchConfig()
        if not isinstance(torch_config, TorchConfig):
            raise ValueError(f"torch_config must be a TorchConfig, got {type(torch_config).__name__}")
        super().__init__(train_loop_per_worker, train_loop_config=train_loop_config, backend_config=torch_config,
                         scaling_config=scaling_config, run_config=run_config, datasets=datasets,
                         dataset_config=dataset_config, resume_from_checkpoint=resume_from_checkpoint,
                         metadata=metadata, validation_config=validation_config)

    @classmethod
    def _init_restored(cls, trainer, backend_config, kw):
        loop = kw.pop("train_loop_per_worker")
        TorchTrainer.__init__(trainer, loop, torch_config=backend_config, **kw)
