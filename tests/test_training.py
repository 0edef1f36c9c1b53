import keras
import numpy as np
import pytest

from keras_transformer_layers.training import MaskedAccuracy
from keras_transformer_layers.training import MaskedSparseCategoricalCrossentropy
from keras_transformer_layers.training import TransformerSchedule
from keras_transformer_layers.training import transformer_adam

pytestmark = pytest.mark.backend_neutral

TENSORFLOW_ONLY = pytest.mark.skipif(
    keras.config.backend() != "tensorflow",
    reason="TensorFlow-only: tf.function graphs and their assertions",
)


def _paper_rate(step, model_dim, warmup):
    # Equation (3) of the paper, written out independently.
    return model_dim**-0.5 * min(step**-0.5, step * warmup**-1.5)


@pytest.mark.parametrize("step", [1, 10, 399, 400, 401, 1000, 4000, 100_000])
def test_schedule_matches_formula(step):
    schedule = TransformerSchedule(model_dim=128, warmup_steps=400)
    np.testing.assert_allclose(float(schedule(step)), _paper_rate(step, 128, 400), rtol=1e-6)


def test_schedule_shape_and_step_zero():
    schedule = TransformerSchedule(model_dim=512, warmup_steps=4000)
    rates = np.array([float(schedule(s)) for s in range(0, 20000, 50)])
    assert float(schedule(0)) == float(schedule(1)) > 0.0
    assert np.argmax(rates) * 50 == 4000
    np.testing.assert_allclose(rates.max(), (512 * 4000) ** -0.5, rtol=1e-6)


def test_adam_is_the_papers():
    optimizer = transformer_adam(model_dim=64, warmup_steps=10)
    assert (optimizer.beta_1, optimizer.beta_2, optimizer.epsilon) == (0.9, 0.98, 1e-9)
    assert isinstance(optimizer._learning_rate, TransformerSchedule)


def test_label_smoothing_hand_computation():
    # Real token: logits log([1, 2, 1]) give p = [1/4, 1/2, 1/4]; label 1.
    # q = 0.9 * one_hot(1) + 0.1 / 3 = [1/30, 28/30, 1/30], so
    # loss = (2/30) ln 4 + (28/30) ln 2 = (32/30) ln 2.
    logits = np.log(np.array([[[1.0, 2.0, 1.0], [5.0, 1.0, 7.0]]], "float32"))
    y_true = np.array([[1, 0]])  # the second label is padding.
    loss = MaskedSparseCategoricalCrossentropy(label_smoothing=0.1)
    np.testing.assert_allclose(float(loss(y_true, logits)), 32 / 30 * np.log(2.0), rtol=1e-6)
    plain = MaskedSparseCategoricalCrossentropy(label_smoothing=0.0)
    np.testing.assert_allclose(float(plain(y_true, logits)), np.log(2.0), rtol=1e-6)


def test_label_smoothing_matches_keras_on_real_tokens():
    keras.utils.set_random_seed(0)
    logits = np.random.normal(size=(3, 5, 7)).astype("float32")
    y_true = np.random.randint(1, 7, size=(3, 5))
    y_true[0, 3:] = 0
    y_true[2, 1:] = 0
    real = y_true != 0
    reference = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)(
        np.eye(7)[y_true[real]], logits[real]
    )
    ours = MaskedSparseCategoricalCrossentropy(label_smoothing=0.1)(y_true, logits)
    np.testing.assert_allclose(float(ours), float(reference), rtol=1e-5)
    # from_logits=False on probabilities gives the same value.
    probs = keras.ops.softmax(logits)
    on_probs = MaskedSparseCategoricalCrossentropy(label_smoothing=0.1, from_logits=False)
    np.testing.assert_allclose(float(on_probs(y_true, probs)), float(reference), rtol=1e-4)


def test_padding_never_counts():
    keras.utils.set_random_seed(1)
    logits = np.random.normal(size=(2, 6, 5)).astype("float32")
    y_true = np.array([[3, 1, 4, 0, 0, 0], [2, 2, 0, 0, 0, 0]])
    changed = logits.copy()
    changed[y_true == 0] = np.random.normal(scale=10.0, size=(7, 5))
    # Make every padded position "correct" for the accuracy and very confident.
    changed[y_true == 0, 0] = 100.0
    loss = MaskedSparseCategoricalCrossentropy()
    np.testing.assert_allclose(float(loss(y_true, changed)), float(loss(y_true, logits)), rtol=1e-6)
    accuracies = []
    for scores in (logits, changed):
        metric = MaskedAccuracy()
        metric.update_state(y_true, scores)
        accuracies.append(float(metric.result()))
    expected = (logits.argmax(-1) == y_true)[y_true != 0].mean()
    np.testing.assert_allclose(accuracies, [expected, expected], rtol=1e-6)
    # More padding does not dilute the loss: equal to the loss on real tokens alone.
    alone = loss(y_true[:, :3][:1], logits[:1, :3])
    padded = loss(y_true[:1], logits[:1])
    np.testing.assert_allclose(float(padded), float(alone), rtol=1e-6)


def test_masked_accuracy_hand_example_and_accumulation():
    metric = MaskedAccuracy()
    metric.update_state([[1, 2, 0]], np.eye(3)[[[1, 0, 2]]])  # 1 of 2 real right
    np.testing.assert_allclose(float(metric.result()), 0.5)
    metric.update_state([[1, 1, 1, 1]], np.eye(3)[[[1, 1, 1, 0]]])  # 3 of 4
    np.testing.assert_allclose(float(metric.result()), 4 / 6)  # token-weighted
    metric.reset_state()
    metric.update_state([[1, 2]], np.eye(3)[[[1, 0]]], sample_weight=[2.0])
    np.testing.assert_allclose(float(metric.result()), 0.5)


def _tiny_model(vocabulary_size=11):
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = keras.layers.Embedding(vocabulary_size, 8, mask_zero=True)(inputs)
    outputs = keras.layers.Dense(vocabulary_size)(x)
    return keras.Model(inputs, outputs)


def _batch():
    rng = np.random.default_rng(0)
    x = rng.integers(1, 11, size=(8, 6)).astype("int32")
    x[::2, 4:] = 0
    y = np.where(x != 0, (x * 3) % 10 + 1, 0).astype("int32")
    return x, y


def test_fit_loss_equals_direct_loss_with_keras_mask():
    keras.utils.set_random_seed(0)
    model = _tiny_model()
    loss = MaskedSparseCategoricalCrossentropy()
    model.compile(optimizer="sgd", loss=loss, metrics=[MaskedAccuracy()])
    x, y = _batch()
    results = model.evaluate(x, y, verbose=0, return_dict=True)
    direct = loss(y, model.predict(x, verbose=0))
    np.testing.assert_allclose(results["loss"], float(direct), rtol=1e-5)
    logits = model.predict(x, verbose=0)
    expected_accuracy = (logits.argmax(-1) == y)[y != 0].mean()
    np.testing.assert_allclose(results["masked_accuracy"], expected_accuracy, rtol=1e-6)


def test_keras_file_round_trip_with_optimizer_and_schedule(tmp_path):
    keras.utils.set_random_seed(0)
    model = _tiny_model()
    model.compile(
        optimizer=transformer_adam(model_dim=8, warmup_steps=5),
        loss=MaskedSparseCategoricalCrossentropy(label_smoothing=0.2),
        metrics=[MaskedAccuracy()],
    )
    x, y = _batch()
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # 2 steps
    path = str(tmp_path / "m.keras")
    model.save(path)
    restored = keras.models.load_model(path)  # no custom_objects needed

    schedule = restored.optimizer._learning_rate
    assert isinstance(schedule, TransformerSchedule)
    assert schedule.get_config() == {"model_dim": 8, "warmup_steps": 5}
    assert (restored.optimizer.beta_2, restored.optimizer.epsilon) == (0.98, 1e-9)
    assert int(restored.optimizer.iterations) == 2
    assert isinstance(restored.loss, MaskedSparseCategoricalCrossentropy)
    assert restored.loss.label_smoothing == 0.2
    for a, b in zip(model.optimizer.variables, restored.optimizer.variables, strict=True):
        np.testing.assert_allclose(np.array(a), np.array(b), atol=1e-7)
    # Training continues identically from the saved state.
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    restored.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(model.get_weights(), restored.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_configs_round_trip():
    for obj in (
        TransformerSchedule(64, 100),
        MaskedSparseCategoricalCrossentropy(label_smoothing=0.3, padding_id=5),
        MaskedAccuracy(padding_id=2),
    ):
        clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))
        assert type(clone) is type(obj)
        assert clone.get_config() == obj.get_config()


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"`model_dim`.*Received: model_dim=0"):
        TransformerSchedule(0)
    with pytest.raises(ValueError, match=r"`warmup_steps`.*Received: warmup_steps=1.5"):
        TransformerSchedule(8, 1.5)
    with pytest.raises(ValueError, match=r"`label_smoothing`.*Received: label_smoothing=1.0"):
        MaskedSparseCategoricalCrossentropy(label_smoothing=1.0)
    with pytest.raises(ValueError, match=r"`padding_id`.*Received: padding_id=-1"):
        MaskedSparseCategoricalCrossentropy(padding_id=-1)
    with pytest.raises(ValueError, match=r"`from_logits`.*Received: from_logits='yes'"):
        MaskedSparseCategoricalCrossentropy(from_logits="yes")
    with pytest.raises(ValueError, match=r"`padding_id`.*Received: padding_id=None"):
        MaskedAccuracy(padding_id=None)


def _load_in_a_fresh_process(script, backend):
    import os
    import subprocess
    import sys

    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1]


def test_keras_file_loads_in_a_fresh_process(tmp_path):
    # A user loads with `import keras_transformer_layers` only: the schedule,
    # loss and metric must be registered by that import.
    keras.utils.set_random_seed(0)
    model = _tiny_model()
    model.compile(
        optimizer=transformer_adam(model_dim=8, warmup_steps=5),
        loss=MaskedSparseCategoricalCrossentropy(),
        metrics=[MaskedAccuracy()],
    )
    x, y = _batch()
    model.fit(x, y, verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    script = (
        "import keras, keras_transformer_layers\n"
        f"m = keras.models.load_model({path!r})\n"
        "print(type(m.optimizer._learning_rate).__name__, type(m.loss).__name__)\n"
    )
    loaded = _load_in_a_fresh_process(script, keras.config.backend())
    assert loaded == "TransformerSchedule MaskedSparseCategoricalCrossentropy"


@pytest.mark.skipif(
    keras.config.backend() != "tensorflow",
    reason="TensorFlow-only: TextTokenizer runs on TensorFlow string ops",
)
def test_tokenizer_keras_file_loads_in_a_fresh_process_after_importing_data(tmp_path):
    # The tokenizer (a TensorFlow data-pipeline layer) is registered by
    # `import keras_transformer_layers.data`, not by the bare import.
    from keras_transformer_layers.data import TextTokenizer

    strings = keras.Input(shape=(), dtype="string")
    ids = TextTokenizer(vocabulary=list("abc"))(strings)
    tokenizer_path = str(tmp_path / "tokenizer.keras")
    keras.Model(strings, ids).save(tokenizer_path)
    script = (
        "import keras, keras_transformer_layers.data\n"
        f"t = keras.models.load_model({tokenizer_path!r})\n"
        "print(t(keras.ops.convert_to_tensor(['cab'])).numpy().tolist())\n"
    )
    assert _load_in_a_fresh_process(script, "tensorflow") == "[[2, 6, 4, 5, 3]]"


def test_adam_refuses_float16_variables_whose_epsilon_underflows():
    # Under the pure float16 policy Adam's epsilon=1e-9 is 0 in float16 and the
    # loss was NaN after one step; now the first fit is a clear error.
    keras.config.set_dtype_policy("float16")
    try:
        model = _tiny_model()
        model.compile(
            optimizer=transformer_adam(8, warmup_steps=5),
            loss=MaskedSparseCategoricalCrossentropy(),
        )
        with pytest.raises(
            ValueError,
            match=r"`transformer_adam` cannot train float16 variables.*epsilon=1e-09.*"
            r"Received: 3 float16 variables, e\.g\. \['embedding",
        ):
            model.fit(*_batch(), verbose=0)
    finally:
        keras.config.set_dtype_policy("float32")
    # The same model with float16 layers under the float32 global policy.
    with pytest.raises(ValueError, match="cannot train float16 variables"):
        transformer_adam(8).build([keras.Variable(np.zeros(3), dtype="float16")])


def test_adam_trains_under_mixed_float16_with_finite_loss():
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = _tiny_model()
        model.compile(
            optimizer=transformer_adam(8, warmup_steps=5),
            loss=MaskedSparseCategoricalCrossentropy(),
        )
        history = model.fit(*_batch(), batch_size=4, epochs=3, verbose=0)
    finally:
        keras.config.set_dtype_policy("float32")
    losses = history.history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


def _numpy_masked_loss(y_true, y_pred, label_smoothing, from_logits, padding_id):
    # The documented formula, written out: q = (1 - ls) * one_hot + ls / K,
    # token loss -sum(q log p), mean over the non-padding tokens.
    y_pred = y_pred.astype("float64")
    if from_logits:
        shifted = y_pred - y_pred.max(-1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    else:
        log_probs = np.log(np.clip(y_pred, 1e-7, 1.0))
    num_classes = y_pred.shape[-1]
    real = y_true != padding_id
    q = (1 - label_smoothing) * np.eye(num_classes)[y_true[real]] + label_smoothing / num_classes
    return float(-(q * log_probs[real]).sum(-1).sum() / real.sum())


def _run(fn, mode):
    if mode == "eager":
        return fn
    import tensorflow as tf

    return tf.function(fn, jit_compile=mode == "xla")


@pytest.mark.parametrize(
    "mode",
    [
        "eager",
        pytest.param("graph", marks=TENSORFLOW_ONLY),
        pytest.param("xla", marks=TENSORFLOW_ONLY),
    ],
)
@pytest.mark.parametrize(
    "label_smoothing, from_logits, padding_id", [(0.0, True, 0), (0.1, True, 0), (0.3, False, 5)]
)
def test_loss_and_accuracy_equal_numpy_on_valid_labels(
    mode, label_smoothing, from_logits, padding_id
):
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(3, 5, 7)).astype("float32")
    y_pred = logits if from_logits else np.asarray(keras.ops.softmax(logits))
    # Every class id 0..6 appears as a label; the padding id marks the tails.
    y_true = rng.integers(0, 7, size=(3, 5)).astype("int32")
    y_true[0, :] = [0, 1, 2, 3, 4]
    y_true[1, 3:] = padding_id
    y_true[2, 1:] = padding_id
    loss = MaskedSparseCategoricalCrossentropy(
        label_smoothing=label_smoothing, from_logits=from_logits, padding_id=padding_id
    )
    value = _run(loss, mode)(y_true, y_pred)
    expected = _numpy_masked_loss(y_true, y_pred, label_smoothing, from_logits, padding_id)
    np.testing.assert_allclose(float(value), expected, rtol=1e-5)

    metric = MaskedAccuracy(padding_id=padding_id)
    _run(metric.update_state, mode)(y_true, y_pred)
    real = y_true != padding_id
    np.testing.assert_allclose(
        float(metric.result()), (y_pred.argmax(-1) == y_true)[real].mean(), rtol=1e-6
    )


# With 12 classes: too large, far too large, negative (not the padding id).
_BAD_LABELS = [12, 15, 10**6, -1]
# An int32 cast would wrap this one to 5.
_WRAPPING_LABEL = 2**32 + 5


@pytest.mark.parametrize("bad", _BAD_LABELS + [_WRAPPING_LABEL])
def test_out_of_range_label_is_a_value_error_eagerly(bad):
    y_true = np.array([[1, 11, 0], [4, bad, 0]])
    y_pred = np.zeros((2, 3, 12), "float32")
    message = (
        r"`y_true` must hold ids in \[0, num_classes\) or the padding id 0, with "
        r"num_classes=12\. Received: y_true={} at index \(1, 1\)"
    )
    # Keras hands a loss its labels in the loss dtype (float32), a metric as given.
    with pytest.raises(ValueError, match=message.format(int(np.float32(bad)))):
        MaskedSparseCategoricalCrossentropy()(y_true, y_pred)
    with pytest.raises(ValueError, match=message.format(bad)):
        MaskedAccuracy().update_state(y_true, y_pred)
    # With padding id 11, label 0 is a real class and 11 is padding; `bad` still fails.
    with pytest.raises(
        ValueError, match=rf"padding id 11, .*Received: y_true={int(np.float32(bad))} "
    ):
        MaskedSparseCategoricalCrossentropy(padding_id=11)(y_true, y_pred)


@TENSORFLOW_ONLY
@pytest.mark.parametrize("bad", _BAD_LABELS)
def test_out_of_range_label_fails_in_a_graph(bad):
    import tensorflow as tf

    y_true = np.array([[1, bad, 0]])
    y_pred = np.zeros((1, 3, 12), "float32")
    message = (
        r"(?s)`y_true` must hold ids in \[0, num_classes\) or the padding id 0\. "
        rf"Received: y_true=.*\[{bad}\].*with num_classes=.*\[12\]"
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        tf.function(MaskedSparseCategoricalCrossentropy())(y_true, y_pred)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        tf.function(MaskedAccuracy().update_state)(y_true, y_pred)


@TENSORFLOW_ONLY
def test_wrapping_label_fails_in_a_graph():
    import tensorflow as tf

    y_true = np.array([[1, _WRAPPING_LABEL, 0]])
    y_pred = np.zeros((1, 3, 12), "float32")
    message = r"`y_true` must hold ids in \[0, num_classes\)"
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        tf.function(MaskedSparseCategoricalCrossentropy())(y_true, y_pred)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        tf.function(MaskedAccuracy().update_state)(y_true, y_pred)


@TENSORFLOW_ONLY
@pytest.mark.parametrize("bad", _BAD_LABELS + [_WRAPPING_LABEL])
def test_out_of_range_label_is_nan_under_xla(bad):
    import tensorflow as tf

    # XLA compiles assertions out; the loss, its gradient and the accuracy turn NaN.
    y_true = tf.constant([[1, 3, 0], [2, bad, 0]])
    logits = tf.Variable(np.random.default_rng(0).normal(size=(2, 3, 12)).astype("float32"))
    loss = MaskedSparseCategoricalCrossentropy()

    @tf.function(jit_compile=True)
    def loss_and_gradient(y_true):
        with tf.GradientTape() as tape:
            value = loss(y_true, logits)
        return value, tape.gradient(value, logits)

    value, gradient = loss_and_gradient(y_true)
    assert np.isnan(float(value))
    assert np.isnan(gradient.numpy()).any()
    metric = MaskedAccuracy()
    tf.function(metric.update_state, jit_compile=True)(y_true, tf.convert_to_tensor(logits))
    assert np.isnan(float(metric.result()))
    # The same labels made valid give a finite loss and gradient.
    value, gradient = loss_and_gradient(tf.where(y_true == bad, 5, y_true))
    assert np.isfinite(float(value)) and np.isfinite(gradient.numpy()).all()


def _tiny_transformer(jit_compile):
    from keras_transformer_layers import build_transformer

    keras.utils.set_random_seed(0)
    model = build_transformer(
        10, 12, num_layers=1, model_dim=8, num_heads=2, intermediate_dim=16, dropout=0.0
    )
    model.compile(
        optimizer="adam",
        loss=MaskedSparseCategoricalCrossentropy(),
        metrics=[MaskedAccuracy()],
        jit_compile=jit_compile,
    )
    return model


@TENSORFLOW_ONLY
@pytest.mark.parametrize("jit_compile", [False, True])
def test_fit_fails_loudly_on_labels_beyond_the_target_vocabulary(jit_compile):
    import tensorflow as tf

    # target_vocabulary_size=12: labels 0..11 train, label 15 must not.
    model = _tiny_transformer(jit_compile)
    inputs = {
        "encoder_inputs": np.array([[2, 5, 6, 3], [2, 7, 3, 0]], "int32"),
        "decoder_inputs": np.array([[2, 4, 5, 0], [2, 9, 0, 0]], "int32"),
    }
    valid = np.array([[4, 5, 3, 0], [9, 3, 0, 0]], "int32")
    invalid = np.array([[4, 15, 3, 0], [9, 3, 0, 0]], "int32")
    history = model.fit(inputs, valid, verbose=0).history
    assert np.isfinite(history["loss"]).all()
    assert np.isfinite(history["masked_accuracy"]).all()
    if not jit_compile:
        with pytest.raises(
            tf.errors.InvalidArgumentError, match=r"(?s)Received: y_true=.*\[15\].*\[12\]"
        ):
            model.fit(inputs, invalid, verbose=0)
    else:
        history = model.fit(inputs, invalid, verbose=0).history
        assert np.isnan(history["loss"]).all()
        assert np.isnan(history["masked_accuracy"]).all()
