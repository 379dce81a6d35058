"""``TensorflowTrainer`` (Ray's ``ray.train.tensorflow.TensorflowTrainer``)."""

from ..data_parallel_trainer import DataParallelTrainer
from .config import TensorflowConfig


class TensorflowTrainer(DataParallelTrainer):
    """Data-parallel TensorFlow: ``train_loop_per_worker`` runs on every worker with
    ``TF_CONFIG`` set; create ``tf.distribute.MultiWorkerMirroredStrategy()`` inside it."""

    _backend_config_cls = TensorflowConfig

    def __init__(self, train_loop_per_worker, *, train_loop_config=None, tensorflow_config=None, scaling_config=None,
                 run_config=None, datasets=None, dataset_config=None, resume_from_checkpoint=None, metadata=None,
                 backend_config=None):
        cfg = tensorflow_config or backend_config or TensorflowConfig()
        if not isinstance(cfg, TensorflowConfig):
            raise ValueError(f"tensorflow_config must be a TensorflowConfig, got {type(cfg).__name__}")
        super().__init__(train_loop_per_worker, train_loop_config=train_loop_config, backend_config=cfg,
                         scaling_config=scaling_config, run_config=run_config, datasets=datasets,
                         dataset_config=dataset_config, resume_from_checkpoint=resume_from_checkpoint,
                         metadata=metadata)

    @classmethod
    def _init_restored(cls, trainer, backend_config, kw):
        loop = kw.pop("train_loop_per_worker")
        TensorflowTrainer.__init__(trainer, loop, tensorflow_config=backend_config, **kw)
