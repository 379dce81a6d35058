"""Helpers for TensorFlow training functions."""


def prepare_dataset_shard(tf_dataset_shard):
    """Turn TensorFlow's auto-sharding off (the data was split by ``get_dataset_shard``
    already) and prefetch with autotune."""
    import tensorflow as tf
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return tf_dataset_shard.with_options(options).prefetch(tf.data.AUTOTUNE)
