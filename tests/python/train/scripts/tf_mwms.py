"""TensorflowTrainer with MultiWorkerMirroredStrategy and a Keras model (2 workers).

    python tf_mwms.py <storage>

Prints ``RESULT {json}``: the TF_CONFIG each worker saw, the losses, the weights' checksum per
rank (equal: the strategy all-reduced the gradients)."""

import json
import os
import sys

import mpiray
from mpiray import train
from mpiray.train import RunConfig, ScalingConfig, UserCallback
from mpiray.train.tensorflow import TensorflowTrainer


def loop(config):
    import numpy as np
    import tensorflow as tf
    from mpiray.train.tensorflow.keras import ReportCheckpointCallback
    tf_config = json.loads(os.environ["TF_CONFIG"])
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 4)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5], [3.0]], dtype="float32"))
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
    with strategy.scope():
        tf.random.set_seed(0)
        model = tf.keras.Sequential([tf.keras.Input(shape=(4,)), tf.keras.layers.Dense(1)])
        model.compile(optimizer=tf.keras.optimizers.SGD(0.05), loss="mse")

    class Extra(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["w_sum"] = float(sum(float(tf.reduce_sum(w)) for w in model.weights))
            logs["task"] = tf_config["task"]["index"]
            logs["workers"] = len(tf_config["cluster"]["worker"])

    model.fit(ds, epochs=config["epochs"], verbose=0, callbacks=[Extra(), ReportCheckpointCallback()])


class Keep(UserCallback):
    def __init__(self):
        self.reports = []

    def after_report(self, run_context, metrics, checkpoint):
        self.reports.append({"metrics": metrics, "checkpoint": checkpoint.path if checkpoint else None})


mpiray.init()
keep = Keep()
result = TensorflowTrainer(loop, train_loop_config={"epochs": 4}, scaling_config=ScalingConfig(num_workers=2),
                           run_config=RunConfig(storage_path=sys.argv[1], name="tf", callbacks=[keep])).fit()
print("RESULT " + json.dumps({"reports": keep.reports, "final": result.metrics,
                              "checkpoint": result.checkpoint.path}), flush=True)
