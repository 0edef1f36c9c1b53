"""What Keras' MultiHeadAttention gives our subclass: int8, LoRA, regularizers."""

import keras
import numpy as np
import pytest

import keras_transformer_layers as ktl
from tests import numpy_reference as ref
from tests.layer_weights import attention_params
from tests.layer_weights import randomize

pytestmark = pytest.mark.backend_neutral


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


def test_get_config_holds_every_keras_argument_and_round_trips():
    layer = ktl.MultiHeadAttention(
        num_heads=2,
        key_dim=4,
        value_dim=3,
        output_shape=(5,),
        attention_axes=(1,),
        sliding_window=2,
        use_gate=True,
        flash_attention=False,
        seed=7,
    )
    config = layer.get_config()
    keras_config = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4).get_config()
    assert set(keras_config) | {"flash_attention"} == set(config)
    revived = ktl.MultiHeadAttention.from_config(config)
    assert revived.get_config() == config
    assert (config["output_shape"], config["attention_axes"]) == ((5,), (1,))
    assert (config["sliding_window"], config["use_gate"], config["seed"]) == (2, True, 7)


# Keras' layer runs `ops.dot_product_attention` without dropout or weights
# requested; ours never does: on TensorFlow it is `tf.nn.softmax`, whose
# saturated rows are not exact (see test_mixed_precision_range.py).
@pytest.mark.parametrize("dropout, training", [(0.0, True), (0.3, False)])
def test_matches_the_numpy_reference_with_a_fully_masked_row(dropout, training):
    layer = ktl.MultiHeadAttention(num_heads=3, key_dim=4, dropout=dropout)
    query = np.random.rand(2, 4, 6).astype("float32")
    value = np.random.rand(2, 5, 7).astype("float32")
    mask = np.random.rand(2, 4, 5) > 0.4
    mask[:, :, 0] = True
    mask[1, 2, :] = False  # a query with no key: its output is the output bias
    layer(query, value)
    randomize(layer)
    output = _numpy(layer(query, value, attention_mask=mask, training=training))
    params = attention_params(layer)
    for example in range(2):
        expected, _ = ref.multi_head_attention(
            query[example], value[example], params, mask[example]
        )
        np.testing.assert_allclose(output[example], expected, atol=1e-5)
    np.testing.assert_allclose(output[1, 2], params["output_bias"], atol=1e-6)


def test_attention_without_mask_matches_the_numpy_reference():
    layer = ktl.MultiHeadAttention(num_heads=2, key_dim=3)
    query = np.random.rand(2, 4, 6).astype("float32")
    layer(query, query)
    randomize(layer)
    output = _numpy(layer(query, query))
    for example in range(2):
        expected, _ = ref.multi_head_attention(
            query[example], query[example], attention_params(layer)
        )
        np.testing.assert_allclose(output[example], expected, atol=1e-5)


def test_gradients_are_finite_for_a_fully_masked_row():
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


# Every Keras constructor argument, compared with Keras' own layer on the same
# weights: (init kwargs, query shape, value shape, call kwargs).
KERAS_SETTINGS = {
    "use_gate": ({"use_gate": True}, (2, 6, 8), (2, 5, 8), {}),
    "sliding_window": ({"sliding_window": 2}, (2, 6, 8), (2, 6, 8), {}),
    "sliding_window_causal": (
        {"sliding_window": 2},
        (2, 6, 8),
        (2, 6, 8),
        {"use_causal_mask": True},
    ),
    "output_shape_int": ({"output_shape": 12}, (2, 6, 8), (2, 5, 8), {}),
    "output_shape_tuple": ({"output_shape": (3, 4)}, (2, 6, 8), (2, 5, 8), {}),
    "rank4_one_axis": ({"attention_axes": 2}, (2, 3, 6, 8), (2, 3, 5, 8), {}),
    "rank4_two_axes": ({"attention_axes": (1, 2)}, (2, 3, 4, 8), (2, 2, 5, 8), {}),
    "rank4_default_axes_gate": ({"use_gate": True}, (2, 3, 4, 8), (2, 2, 5, 8), {}),
    "value_dim_no_bias": ({"value_dim": 3, "use_bias": False}, (2, 6, 8), (2, 5, 8), {}),
}


@pytest.mark.parametrize("setting", list(KERAS_SETTINGS))
def test_every_keras_argument_gives_the_keras_result_eagerly_and_functionally(setting):
    init_kwargs, query_shape, value_shape, call_kwargs = KERAS_SETTINGS[setting]
    rng = np.random.default_rng(0)
    query = rng.random(query_shape).astype("float32")
    value = rng.random(value_shape).astype("float32")
    theirs = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, **init_kwargs)
    ours = ktl.MultiHeadAttention(num_heads=2, key_dim=4, **init_kwargs)
    expected, expected_scores = theirs(query, value, return_attention_scores=True, **call_kwargs)
    ours(query, value)
    ours.set_weights(theirs.get_weights())
    output, scores = ours(query, value, return_attention_scores=True, **call_kwargs)
    np.testing.assert_allclose(_numpy(output), _numpy(expected), atol=1e-5)
    np.testing.assert_allclose(_numpy(scores), _numpy(expected_scores), atol=1e-6)
    # Without scores Keras runs its fused kernel where it can: the same result.
    # (Compared with Keras' result with scores: Keras' own fused call fails on
    # JAX when `value_dim` differs from `key_dim`.)
    np.testing.assert_allclose(
        _numpy(ours(query, value, **call_kwargs)), _numpy(expected), atol=1e-5
    )
    inputs = [keras.Input(query_shape[1:]), keras.Input(value_shape[1:])]
    symbolic = ours(*inputs, **call_kwargs)
    assert tuple(symbolic.shape) == (None,) + tuple(expected.shape[1:])
    model = keras.Model(inputs, symbolic)
    np.testing.assert_allclose(_numpy(model([query, value])), _numpy(expected), atol=1e-5)
    revived = ktl.MultiHeadAttention.from_config(ours.get_config())
    revived(query, value)
    revived.set_weights(ours.get_weights())
    np.testing.assert_allclose(
        _numpy(revived(query, value, **call_kwargs)), _numpy(expected), atol=1e-5
    )


@pytest.mark.parametrize("name", ["num_heads", "key_dim", "value_dim"])
@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_size_arguments_are_refused_in_keras_words(name, bad):
    kwargs = {"num_heads": 2, "key_dim": 4, name: bad}
    with pytest.raises(
        ValueError,
        match=rf"Received an invalid value for argument `{name}`.*Received: {name}={bad}",
    ):
        ktl.MultiHeadAttention(**kwargs)


def _error(function):
    try:
        function()
    except Exception as error:  # noqa: BLE001 - the error itself is compared
        return type(error), str(error).split("\n")[0]
    return None


@pytest.mark.parametrize(
    "init_kwargs, call_kwargs",
    [
        ({"flash_attention": True}, {}),  # the backend's flash kernel
        ({"flash_attention": True}, {"return_attention_scores": True}),
        ({"flash_attention": True, "dropout": 0.1}, None),  # refused at construction
    ],
    ids=["call", "scores", "dropout"],
)
def test_flash_attention_is_refused_where_keras_refuses_it(init_kwargs, call_kwargs):
    x = np.random.rand(2, 4, 8).astype("float32")
    errors = []
    for layer_class in (keras.layers.MultiHeadAttention, ktl.MultiHeadAttention):

        def run(layer_class=layer_class):
            layer = layer_class(num_heads=2, key_dim=4, **init_kwargs)
            if call_kwargs is not None:
                layer(x, x, **call_kwargs)

        errors.append(_error(run))
    theirs, ours = errors
    if keras.config.backend() == "tensorflow":
        assert theirs is not None  # Keras has no flash kernel on TensorFlow
    assert (ours is None) == (theirs is None)
    if theirs is not None:
        assert ours[0] is theirs[0]
        assert theirs[1] in ours[1]
