"""mpiray.train.tensorflow (Ray's ``ray.train.tensorflow``): ``TensorflowTrainer`` sets
``TF_CONFIG`` for ``MultiWorkerMirroredStrategy``."""

try:
    import tensorflow  # noqa: F401
except ModuleNotFoundError:  # pragma: no cover
    raise ModuleNotFoundError("TensorFlow isn't installed. To install TensorFlow, run 'pip install tensorflow-cpu' "
                              "(or 'tensorflow' for GPUs)")

from .config import TensorflowConfig
from .tensorflow_trainer import TensorflowTrainer
from .train_loop_utils import prepare_dataset_shard

__all__ = ["TensorflowConfig", "TensorflowTrainer", "prepare_dataset_shard"]
