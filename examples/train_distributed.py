"""Trains `build_transformer` under a `tf.distribute` strategy and saves a `.keras` file.

The same script runs on one CPU, on every GPU of a host, on several hosts and on a
TPU; only `--strategy` (and, for several hosts, the `TF_CONFIG` environment
variable) changes. The data is the generated reversal task, so the script needs
no download; replace `make_dataset` with your tf.data pipeline.

    # One host, all local GPUs (or the CPU):
    python examples/train_distributed.py --strategy mirrored --output model.keras

    # Several hosts: run the same command on every host, each with its own TF_CONFIG
    # (same "cluster", its own "task" index; index 0 is the chief, which writes --output):
    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                "task": {"type": "worker", "index": 0}}' \
        python examples/train_distributed.py --strategy multi_worker --output model.keras

    # A Cloud TPU VM (or --tpu <name> for a TPU node):
    python examples/train_distributed.py --strategy tpu --tpu local --output model.keras

`--batch-size` is the *global* batch: each of the N replicas gets batch/N
examples, and the gradients are summed across replicas, so the loss curve does
not depend on the number of devices.
"""

import argparse
import os
import shutil
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from reversal_task import reversal_arrays  # noqa: E402

import keras_transformer_layers as ktl  # noqa: E402


def make_strategy(name, tpu=None):
    """The `tf.distribute` strategy named `name`."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        # Reads the cluster and this process's task from TF_CONFIG.
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"Unknown `--strategy`. Received: strategy={name!r}")


def make_dataset(num_examples, global_batch_size, max_length, seed):
    """Reversal pairs, padded to `max_length`, in fixed-shape global batches.

    `drop_remainder=True` keeps every batch the same shape (TPUs and XLA need
    static shapes). Sharding is by element (`DATA`), since the data does not
    come from files; each worker then sees a different slice of every batch.
    """
    inputs, targets = reversal_arrays(num_examples, max_length=max_length, seed=seed)
    dataset = tf.data.Dataset.from_tensor_slices((inputs, targets))
    dataset = dataset.shuffle(num_examples, seed=seed).batch(global_batch_size, drop_remainder=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def is_chief(strategy):
    """True on the process that writes the model (always, outside multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker"
        and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict()
    )


def fit_multi_worker(model, strategy, dataset, epochs):
    """`fit`'s job as a custom `tf.distribute` loop, for `MultiWorkerMirroredStrategy`.

    Keras 3.15's `fit` does not run under `MultiWorkerMirroredStrategy`:
    it builds the compiled loss from `strategy.reduce` of a nested (dict) batch
    ("Attempt to convert a value ({'encoder_inputs': PerReplica...",
    keras-team/keras#20329, open), and it reduces the scalar logs with
    `strategy.reduce("MEAN", v, axis=0)` ("Invalid reduction dimension 0 for
    input with 0 dimensions"). This loop does the same training with
    `strategy.run`: each replica's masked cross-entropy is divided by the
    *global* count of real target tokens, so the optimizer's cross-replica sum
    of gradients is the gradient of the global masked mean, as in `fit`.

    Returns:
        The mean training loss of each epoch (the same on every worker).
    """
    optimizer = model.optimizer
    token_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    distributed = strategy.experimental_distribute_dataset(dataset)

    def replica_step(inputs, targets):
        real = tf.cast(targets != 0, "float32")
        tokens = tf.distribute.get_replica_context().all_reduce("SUM", tf.reduce_sum(real))
        with tf.GradientTape() as tape:
            logits = model(inputs, training=True)
            loss = tf.reduce_sum(token_loss(targets, logits) * real) / tokens
            scaled = optimizer.scale_loss(loss)  # loss scaling under mixed_float16
        gradients = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply(gradients, model.trainable_variables)
        return loss

    @tf.function
    def train_step(batch):
        losses = strategy.run(replica_step, args=batch)
        return strategy.reduce("SUM", losses, axis=None)

    history = []
    for epoch in range(epochs):
        losses = [float(train_step(batch)) for batch in distributed]
        history.append(sum(losses) / len(losses))
        print(f"epoch {epoch + 1}/{epochs} - loss: {history[-1]:.4f}", flush=True)
    return history


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--strategy",
        default="default",
        choices=["default", "mirrored", "multi_worker", "tpu"],
    )
    parser.add_argument("--tpu", default=None, help="TPU name or 'local' (TPU VM)")
    parser.add_argument("--output", required=True, help="path of the .keras file")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--num-examples", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=64, help="global batch size")
    parser.add_argument("--max-length", type=int, default=10)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--model-dim", type=int, default=64)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--intermediate-dim", type=int, default=128)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument(
        "--dtype-policy",
        default="float32",
        choices=["float32", "mixed_float16", "mixed_bfloat16"],
        help="mixed_bfloat16 on TPUs; mixed_float16 on GPUs (adds loss scaling)",
    )
    parser.add_argument("--jit-compile", action="store_true", help="compile with XLA")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    keras.config.set_dtype_policy(args.dtype_policy)
    keras.utils.set_random_seed(args.seed)
    strategy = make_strategy(args.strategy, args.tpu)
    dataset = make_dataset(args.num_examples, args.batch_size, args.max_length, args.seed)
    with strategy.scope():
        # Variables (model and optimizer) must be created inside the scope.
        model = ktl.build_transformer(
            16,
            16,
            num_layers=args.num_layers,
            model_dim=args.model_dim,
            num_heads=args.num_heads,
            intermediate_dim=args.intermediate_dim,
            dropout=args.dropout,
        )
        model.compile(
            optimizer=keras.optimizers.Adam(args.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=args.jit_compile or args.strategy == "tpu",
        )
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        with strategy.scope():
            model.optimizer.build(model.trainable_variables)
        losses = fit_multi_worker(model, strategy, dataset, args.epochs)
    else:
        losses = model.fit(dataset, epochs=args.epochs, verbose=2).history["loss"]
    print(f"replicas: {strategy.num_replicas_in_sync}; final loss: {losses[-1]:.4f}")

    # Every worker saves (saving reads the replicated variables); only the
    # chief's file is kept, the others write to a temporary directory.
    if is_chief(strategy):
        model.save(args.output)
    else:
        scratch = tempfile.mkdtemp()
        try:
            model.save(os.path.join(scratch, "model.keras"))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
