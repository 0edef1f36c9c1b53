"""Training at scale: mixed precision, XLA and tf.distribute (issue 6).

The tf.distribute tests run in subprocesses: logical CPU devices must be
configured before TensorFlow initializes its devices, and multi-worker training
needs one process per worker.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_transformer_layers as ktl
from tests import example_modules

reversal_task = example_modules.load("reversal_task")
reversal_arrays = reversal_task.reversal_arrays
reversal_dataset = reversal_task.reversal_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {"num_layers": 1, "model_dim": 32, "num_heads": 2, "intermediate_dim": 64}


def _subprocess_env():
    env = dict(os.environ)
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([ROOT, os.path.join(ROOT, "examples")]),
            "KERAS_BACKEND": "tensorflow",
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
    )
    env.pop("TF_CONFIG", None)
    return env


def _token_accuracy(model, inputs, targets):
    predictions = np.argmax(model.predict(inputs, batch_size=500, verbose=0), axis=-1)
    real = targets != 0
    return float(np.mean(predictions[real] == targets[real]))


def _train_reversal(policy):
    """Trains the tiny model on reversal under `policy`; returns (model, losses, accuracy)."""
    keras.config.set_dtype_policy(policy)
    keras.utils.set_random_seed(0)
    model = ktl.build_transformer(16, 16, **TINY, dropout=0.0)
    # The rate decays to 0: at a constant 5e-3 the last steps jump between minima and the final
    # accuracy of one trajectory depended on rounding (0.983 to 0.9975 for float32 and mixed runs
    # that differ only in the softmax's rounding); decayed, such runs end within 0.005.
    epochs, steps_per_epoch = 4, -(-3000 // 64)
    learning_rate = keras.optimizers.schedules.CosineDecay(5e-3, epochs * steps_per_epoch)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = model.fit(
        reversal_dataset(3000, batch_size=64, max_length=6), epochs=epochs, verbose=0
    )
    inputs, targets = reversal_arrays(1000, max_length=6, seed=1)  # held out
    accuracy = _token_accuracy(model, inputs, targets)
    keras.config.set_dtype_policy("float32")
    return model, history.history["loss"], accuracy


@pytest.fixture(scope="module")
def float32_run():
    return _train_reversal("float32")


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_reversal_as_well_as_float32(float32_run, policy):
    _, float32_losses, float32_accuracy = float32_run
    model, losses, accuracy = _train_reversal(policy)
    # The task is learned at all, so "within 1 point" compares two real results.
    assert float32_accuracy > 0.97
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.25 * losses[0]
    assert abs(accuracy - float32_accuracy) <= 0.01, (policy, accuracy, float32_accuracy)
    encoder = model.get_layer("encoder")
    assert encoder.compute_dtype == policy.split("_")[1]
    assert all(w.dtype == "float32" for w in model.weights)
    # Loss scaling comes with compile() under mixed_float16 only.
    optimizer = model.optimizer
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer) == (policy == "mixed_float16")
    if policy == "mixed_float16":
        assert np.isfinite(float(optimizer.dynamic_scale))


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_16_bit_forward_stays_finite_with_padding_and_large_activations(policy):
    """Fully padded rows, a full causal mask and inputs far from unit scale."""
    keras.config.set_dtype_policy(policy)
    model = ktl.build_transformer(50, 50, **TINY)
    keras.config.set_dtype_policy("float32")
    reference = ktl.build_transformer(50, 50, **TINY)
    reference.set_weights(model.get_weights())
    for layer in (model.get_layer("encoder_embedding"), reference.get_layer("encoder_embedding")):
        table = layer.token_embedding.embeddings
        table.assign(table * 50.0)  # attention logits far beyond a unit scale
    source = np.array([[5, 6, 7, 8, 9, 10, 11, 12], [0] * 8], "int32")  # row 2: all padding
    target = np.array([[1, 4, 5, 6, 7, 8, 9, 10], [1, 4, 0, 0, 0, 0, 0, 0]], "int32")
    inputs = {"encoder_inputs": source, "decoder_inputs": target}
    mixed, exact = np.asarray(model(inputs)), np.asarray(reference(inputs))
    assert np.all(np.isfinite(mixed))
    # float16 keeps ~3 decimal digits and bfloat16 ~2; logits are O(1-10).
    tolerance = {"mixed_float16": 0.1, "mixed_bfloat16": 0.5}[policy]
    np.testing.assert_allclose(mixed[0], exact[0], atol=tolerance)
    np.testing.assert_allclose(mixed[1, :2], exact[1, :2], atol=tolerance)
    # The fully masked cross-attention rows of example 2 must not leak NaN or
    # inf into the gradients either.
    with tf.GradientTape() as tape:
        logits = model(inputs, training=True)
        loss = tf.reduce_sum(tf.cast(target != 0, "float32")[..., None] * logits)
    gradients = tape.gradient(loss, model.trainable_variables)
    assert all(
        np.all(np.isfinite(g.numpy() if not hasattr(g, "values") else g.values.numpy()))
        for g in gradients
        if g is not None
    )


def _fixed_batches(count, batch_size):
    inputs, targets = reversal_arrays(count * batch_size, max_length=8, seed=3)
    return tf.data.Dataset.from_tensor_slices((inputs, targets)).batch(batch_size)


def test_xla_training_matches_graph_training_and_loss_falls():
    keras.utils.set_random_seed(0)
    initial = ktl.build_transformer(16, 16, **TINY, dropout=0.0).get_weights()
    losses, predictions = {}, {}
    for jit in (False, True):
        model = ktl.build_transformer(16, 16, **TINY, dropout=0.0)
        model.set_weights(initial)
        model.compile(
            optimizer=keras.optimizers.Adam(3e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=jit,
        )
        assert model.jit_compile is jit
        losses[jit] = [float(model.train_on_batch(x, y)) for x, y in _fixed_batches(8, 32)]
        inputs, _ = reversal_arrays(64, max_length=8, seed=4)
        predictions[jit] = model.predict(inputs, verbose=0)
    assert losses[True][-1] < 0.9 * losses[True][0]
    # Same initial weights and batches: XLA only reorders float32 arithmetic.
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-3)
    np.testing.assert_allclose(predictions[True], predictions[False], atol=1e-3)


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf

    # Two logical CPUs; must precede any TensorFlow device initialization.
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    import keras
    import numpy as np
    import keras_transformer_layers as ktl
    from reversal_task import reversal_arrays

    min_length = int(sys.argv[1])
    inputs, targets = reversal_arrays(512, min_length=min_length, max_length=8, seed=5)

    def train(strategy, initial):
        with strategy.scope():
            model = ktl.build_transformer(
                16, 16, num_layers=1, model_dim=32, num_heads=2,
                intermediate_dim=64, dropout=0.0)
            model.set_weights(initial)
            # SGD: Adam turns float32 rounding in gradients that are exactly
            # zero in exact arithmetic (e.g. the key bias) into +-lr steps.
            model.compile(
                optimizer=keras.optimizers.SGD(0.1),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        dataset = tf.data.Dataset.from_tensor_slices((inputs, targets)).batch(64)
        losses = []
        for epoch in range(2):
            for x, y in dataset:
                losses.append(float(model.train_on_batch(x, y)))
        return losses, [w.tolist() for w in model.get_weights()[:2]], strategy.num_replicas_in_sync

    keras.utils.set_random_seed(0)
    initial = ktl.build_transformer(
        16, 16, num_layers=1, model_dim=32, num_heads=2, intermediate_dim=64,
        dropout=0.0).get_weights()
    one = train(tf.distribute.OneDeviceStrategy("/cpu:0"), initial)
    two = train(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), initial)
    print(json.dumps({"one": one, "two": two}))
    """
)


def _run_mirrored(tmp_path, min_length):
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT)
    result = subprocess.run(
        [sys.executable, str(script), str(min_length)],
        capture_output=True,
        text=True,
        timeout=240,
        env=_subprocess_env(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("min_length", [8, 3], ids=["no_padding", "padding"])
def test_mirrored_strategy_on_two_devices_gives_the_one_device_loss_curve(tmp_path, min_length):
    # With padding the replicas hold different numbers of real target tokens;
    # Keras' masked loss must still give the global masked mean.
    runs = _run_mirrored(tmp_path, min_length=min_length)
    (one_losses, one_weights, one_replicas) = runs["one"]
    (two_losses, two_weights, two_replicas) = runs["two"]
    assert (one_replicas, two_replicas) == (1, 2)
    assert len(one_losses) == 16 and one_losses[-1] < 0.9 * one_losses[0]
    # Each replica takes half of every global batch of 64; the all-reduced
    # gradients equal the one-device gradients up to float32 summation order.
    np.testing.assert_allclose(two_losses, one_losses, rtol=1e-5)
    for two, one in zip(two_weights, one_weights, strict=True):
        np.testing.assert_allclose(two, one, atol=1e-5)


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_multi_worker_mirrored_strategy_trains_and_the_chief_saves(tmp_path):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    output = tmp_path / "model.keras"
    command = [
        sys.executable,
        os.path.join(ROOT, "examples", "train_distributed.py"),
        "--strategy",
        "multi_worker",
        "--output",
        str(output),
        "--epochs",
        "2",
        "--num-examples",
        "1024",
        "--batch-size",
        "64",
        "--max-length",
        "6",
        "--num-layers",
        "1",
        "--model-dim",
        "16",
        "--num-heads",
        "2",
        "--intermediate-dim",
        "32",
        "--dropout",
        "0.0",
        "--learning-rate",
        "1e-2",
    ]
    workers = []
    for index in range(2):
        env = _subprocess_env()
        env["TF_CONFIG"] = json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}
        )
        workers.append(
            subprocess.Popen(
                command,
                env=env,
                cwd=tmp_path,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        )
    outputs = []
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=180)[0])
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.communicate()
    for worker, out in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, out[-3000:]
    final = [line for out in outputs for line in out.splitlines() if line.startswith("replicas:")]
    # Both workers ran one synchronous job of two replicas and saw the same loss.
    assert [line.split(";")[0] for line in final] == ["replicas: 2", "replicas: 2"]
    assert final[0] == final[1]
    assert output.exists()
    restored = keras.models.load_model(output)
    inputs, targets = reversal_arrays(200, max_length=6, seed=7)
    logits = restored.predict(inputs, verbose=0)
    assert np.all(np.isfinite(logits))
    # Trained, not just saved: well above the 1/13 of chance.
    assert _token_accuracy(restored, inputs, targets) > 0.2
