"""What Keras' MultiHeadAttention gives our subclass: int8, LoRA, regularizers, fused kernel."""

import keras
import numpy as np
import pytest

import keras_transformer_layers as ktl
from tests import numpy_reference as ref
from tests.layer_weights import attention_params
from tests.layer_weights import randomize

pytestmark = pytest.mark.backend_neutral_by_hand


def _numpy(tensor):
    return keras.ops.convert_to_numpy(tensor)


def _tiny_transformer():
    return ktl.build_transformer(
        40, 40, num_layers=2, model_dim=16, num_heads=2, intermediate_dim=32, dropout=0.0
    )


def _batch():
    rng = np.random.default_rng(0)
    source, target = rng.integers(1, 40, (4, 7)), rng.integers(1, 40, (4, 6))
    source[0, 5:], target[1, 4:] = 0, 0
    return {"encoder_inputs": source, "decoder_inputs": target}


def _attention_layers(model):
    stacks = [
        layer
        for layer in model.layers
        if isinstance(layer, (ktl.TransformerEncoder, ktl.TransformerDecoder))
    ]
    layers = []
    for stack in stacks:
        for block in stack.blocks:
            layers.append(block.self_attention)
            if getattr(block, "cross_attention", None) is not None:
                layers.append(block.cross_attention)
    return layers


def test_is_a_keras_multi_head_attention():
    layer = ktl.MultiHeadAttention(num_heads=2, key_dim=4)
    assert isinstance(layer, keras.layers.MultiHeadAttention)


def test_int8_quantized_transformer_stays_close_to_float32():
    model = _tiny_transformer()
    batch = _batch()
    before = _numpy(model(batch))
    model.quantize("int8")
    after = _numpy(model(batch))
    for attention in _attention_layers(model):
        kernels = [w for w in attention.weights if w.path.endswith("/kernel")]
        assert len(kernels) == 4
        assert all(keras.backend.standardize_dtype(w.dtype) == "int8" for w in kernels)
    # Measured with seeds 0-2 on TensorFlow and JAX: the largest |difference|
    # is 1.1% to 2.0% of the largest |logit| (0.022 to 0.045 for logits up to
    # 2.4). The bound, 5%, leaves a factor of 2.5.
    assert np.all(np.isfinite(after))
    assert np.abs(after - before).max() < 0.05 * np.abs(before).max()
    assert np.abs(after - before).max() > 0  # the int8 kernels are really used


def test_enable_lora_trains_only_the_low_rank_matrices():
    layer = ktl.MultiHeadAttention(num_heads=2, key_dim=4)
    x = np.random.rand(2, 3, 8).astype("float32")
    layer(x, x)
    randomize(layer)
    before = _numpy(layer(x, x))
    layer.enable_lora(2)
    lora = [
        layer.query_dense.lora_kernel_a,
        layer.query_dense.lora_kernel_b,
        layer.value_dense.lora_kernel_a,
        layer.value_dense.lora_kernel_b,
    ]
    assert {w.path for w in layer.trainable_weights} == {w.path for w in lora}
    # B starts at zero: the output is unchanged until training moves it.
    np.testing.assert_allclose(_numpy(layer(x, x)), before, atol=1e-6)
    with pytest.raises(ValueError, match=r"`rank` must be a positive integer. Received: rank=0"):
        ktl.MultiHeadAttention(num_heads=2, key_dim=4).enable_lora(0)


def test_lora_on_a_transformer_changes_the_output_and_keeps_the_base_kernels():
    model = _tiny_transformer()
    batch = _batch()
    labels = np.roll(batch["decoder_inputs"], -1, axis=1)
    for weight in model.trainable_weights:
        weight.trainable = False
    for attention in _attention_layers(model):
        attention.enable_lora(2)
    assert all("lora_kernel" in w.path for w in model.trainable_weights)
    assert len(model.trainable_weights) == 4 * len(_attention_layers(model)) == 24
    before = _numpy(model(batch))
    frozen = [_numpy(w) for w in model.non_trainable_weights]
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.train_on_batch(batch, labels)
    after = _numpy(model(batch))
    assert np.abs(after - before).max() > 1e-3
    for weight, value in zip(model.non_trainable_weights, frozen, strict=True):
        np.testing.assert_array_equal(_numpy(weight), value)


def test_kernel_and_bias_regularizers_add_their_losses():
    layer = ktl.MultiHeadAttention(
        num_heads=2,
        key_dim=4,
        kernel_regularizer=keras.regularizers.L2(0.01),
        bias_regularizer=keras.regularizers.L1(0.1),
    )
    x = np.random.rand(2, 3, 8).astype("float32")
    layer(x, x)
    randomize(layer)
    params = attention_params(layer)
    expected = sum(
        0.01 * np.sum(value**2) if name.endswith("kernel") else 0.1 * np.sum(np.abs(value))
        for name, value in params.items()
    )
    np.testing.assert_allclose(
        float(sum(_numpy(loss) for loss in layer.losses)), expected, rtol=1e-5
    )
    config = layer.get_config()
    assert config["kernel_regularizer"]["config"]["l2"] == pytest.approx(0.01)
    clone = ktl.MultiHeadAttention.from_config(config)
    assert isinstance(clone.get_config()["bias_regularizer"], dict)


def test_kernel_constraint_is_applied_after_each_update():
    layer = ktl.MultiHeadAttention(num_heads=2, key_dim=4, kernel_constraint="non_neg")
    x = np.random.rand(2, 3, 8).astype("float32")
    layer(x, x)
    randomize(layer)
    variables = layer.trainable_variables
    keras.optimizers.SGD(0.01).apply([keras.ops.ones(v.shape) for v in variables], variables)
    for dense in (layer.query_dense, layer.key_dense, layer.value_dense, layer.output_dense):
        kernel = _numpy(dense.kernel)
        assert kernel.min() == 0.0  # negative entries were clipped, not left
        assert _numpy(dense.bias).min() < 0  # the biases have no constraint


@pytest.mark.parametrize(
    "name, value",
    [
        ("kernel_regularizer", "not_a_regularizer"),
        ("bias_regularizer", 3),
        ("activity_regularizer", "nope"),
        ("kernel_constraint", "not_a_constraint"),
        ("bias_constraint", 1.5),
    ],
)
def test_bad_regularizers_and_constraints_are_value_errors(name, value):
    with pytest.raises(ValueError, match=rf"`{name}` must be .* Received: {name}={value!r}"):
        ktl.MultiHeadAttention(num_heads=2, key_dim=4, **{name: value})


def test_get_config_keeps_its_keys_and_drops_the_unsupported_keras_settings():
    config = ktl.MultiHeadAttention(num_heads=2, key_dim=4).get_config()
    for key in (
        "num_heads",
        "key_dim",
        "value_dim",
        "dropout",
        "use_bias",
        "kernel_initializer",
        "bias_initializer",
        "seed",
    ):
        assert key in config
    for key in ("use_gate", "output_shape", "attention_axes", "sliding_window"):
        assert key not in config


def _count_fused_calls(monkeypatch):
    calls = []
    fused = keras.ops.dot_product_attention

    def counting(*args, **kwargs):
        calls.append(1)
        return fused(*args, **kwargs)

    monkeypatch.setattr(keras.ops, "dot_product_attention", counting)
    return calls


@pytest.mark.parametrize("dropout, training", [(0.0, True), (0.3, False)])
def test_fused_path_matches_the_numpy_reference_with_a_fully_masked_row(
    monkeypatch, dropout, training
):
    calls = _count_fused_calls(monkeypatch)
    layer = ktl.MultiHeadAttention(num_heads=3, key_dim=4, dropout=dropout)
    query = np.random.rand(2, 4, 6).astype("float32")
    value = np.random.rand(2, 5, 7).astype("float32")
    mask = np.random.rand(2, 4, 5) > 0.4
    mask[:, :, 0] = True
    mask[1, 2, :] = False  # a query with no key: its output is the output bias
    layer(query, value)
    randomize(layer)
    calls.clear()
    output = _numpy(layer(query, value, attention_mask=mask, training=training))
    assert len(calls) == 1
    params = attention_params(layer)
    for example in range(2):
        expected, _ = ref.multi_head_attention(
            query[example], value[example], params, mask[example]
        )
        np.testing.assert_allclose(output[example], expected, atol=1e-5)
    np.testing.assert_allclose(output[1, 2], params["output_bias"], atol=1e-6)


def test_fused_path_without_mask_matches_the_numpy_reference(monkeypatch):
    calls = _count_fused_calls(monkeypatch)
    layer = ktl.MultiHeadAttention(num_heads=2, key_dim=3)
    query = np.random.rand(2, 4, 6).astype("float32")
    layer(query, query)
    randomize(layer)
    output = _numpy(layer(query, query))
    assert len(calls) == 2
    for example in range(2):
        expected, _ = ref.multi_head_attention(
            query[example], query[example], attention_params(layer)
        )
        np.testing.assert_allclose(output[example], expected, atol=1e-5)


@pytest.mark.parametrize(
    "policy, dropout, training, scores, value_dim",
    [
        ("mixed_bfloat16", 0.0, False, False, None),  # 16-bit: the explicit float32 softmax
        ("float32", 0.3, True, False, None),  # dropout in effect
        ("float32", 0.0, False, True, None),  # weights requested
        ("float32", 0.0, False, False, 3),  # value_dim != key_dim (JAX's kernel needs them equal)
    ],
)
def test_explicit_path_where_the_fused_kernel_would_differ(
    monkeypatch, policy, dropout, training, scores, value_dim
):
    calls = _count_fused_calls(monkeypatch)
    layer = ktl.MultiHeadAttention(
        num_heads=2, key_dim=4, value_dim=value_dim, dropout=dropout, dtype=policy
    )
    x = np.random.rand(2, 3, 8).astype("float32")
    layer(x, x, training=training, return_attention_scores=scores)
    assert calls == []


def test_fused_path_gradients_are_finite_for_a_fully_masked_row():
    query = keras.Input((3, 8))
    mask = keras.Input((3, 3), dtype="bool")
    layer = ktl.MultiHeadAttention(num_heads=2, key_dim=4)
    model = keras.Model([query, mask], layer(query, query, attention_mask=mask))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x = np.random.rand(2, 3, 8).astype("float32")
    attention_mask = np.ones((2, 3, 3), bool)
    attention_mask[0, 1] = False
    model.train_on_batch([x, attention_mask], np.zeros((2, 3, 8), "float32"))
    assert all(np.all(np.isfinite(_numpy(w))) for w in layer.weights)
