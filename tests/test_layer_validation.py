"""Bad settings, bad call arguments and out-of-range lookups: a ValueError or a loud failure.

Construction: every numeric setting finite and in range, every bool a bool,
every name known. Calls: dtypes, widths, batch sizes and padding masks are
checked on static shapes, eagerly, when a graph is traced and when a
functional model is built. Tables (token ids, learned positions) never wrap
or clamp silently, in eager, graph, SavedModel and TFLite; XLA checks what is
known at trace time.
"""

import math
import re

import keras
import numpy as np
import pytest

import keras_transformer_layers as ktl

pytestmark = pytest.mark.backend_neutral

TENSORFLOW_ONLY = pytest.mark.skipif(
    keras.config.backend() != "tensorflow",
    reason="TensorFlow-only: tf.function graphs, string tensors, SavedModel and TFLite",
)

BLOCK_ARGS = {"num_heads": 2, "intermediate_dim": 16}
STACK_ARGS = {"num_layers": 1, **BLOCK_ARGS}
BLOCKS_AND_STACKS = [
    (ktl.TransformerEncoderBlock, BLOCK_ARGS),
    (ktl.TransformerEncoder, STACK_ARGS),
    (ktl.TransformerDecoderBlock, BLOCK_ARGS),
    (ktl.TransformerDecoder, STACK_ARGS),
]
TRANSFORMER_ARGS = {
    "source_vocabulary_size": 16,
    "target_vocabulary_size": 12,
    "num_layers": 1,
    "model_dim": 8,
    "num_heads": 2,
    "intermediate_dim": 16,
}


def received(name, value):
    """`match=` pattern: the argument in backticks, then its echoed value."""
    return f"`{name}`.*Received: {re.escape(f'{name}={value!r}')}"


# --- Construction (fault kind 5) ---------------------------------------------

BAD_FLOATS = [math.nan, math.inf, -math.inf, "1e-6", True]
BAD_BOOLS = ["no", "False", 0, 1, None]

CONSTRUCTOR_CASES = (
    [(ktl.AddNorm, {}, "epsilon", v) for v in BAD_FLOATS + [0.0, -1e-6]]
    + [(ktl.AddNorm, {}, "dropout", v) for v in [math.nan, math.inf, 1.0, -0.1, "0.1"]]
    + [(ktl.FeedForward, {"intermediate_dim": 8}, "activation", v) for v in ["relux", 5]]
    + [(ktl.FeedForward, {}, "intermediate_dim", v) for v in [0, 8.0, True]]
    + [(ktl.FeedForward, {"intermediate_dim": 8}, "dropout", math.nan)]
    + [
        (ktl.FeedForward, {"intermediate_dim": 8}, name, "nope")
        for name in ["kernel_initializer", "bias_initializer"]
    ]
    + [(ktl.PositionalEncoding, {}, "max_wavelength", v) for v in BAD_FLOATS + [0, -2]]
    + [
        (ktl.PositionalEmbedding, {"vocabulary_size": 16, "embedding_dim": 4}, name, v)
        for name in ["mask_zero", "learned_positions"]
        for v in BAD_BOOLS
    ]
    + [
        (ktl.PositionalEmbedding, {"vocabulary_size": 16, "embedding_dim": 4}, "max_wavelength", v)
        for v in BAD_FLOATS
    ]
    + [
        (ktl.PositionalEmbedding, {"embedding_dim": 4}, "vocabulary_size", v)
        for v in [16.0, True, -1]
    ]
    + [
        (
            ktl.PositionalEmbedding,
            {"vocabulary_size": 16, "embedding_dim": 4, "learned_positions": True},
            "sequence_length",
            v,
        )
        for v in [4.0, -1, 0]
    ]
    + [
        (
            ktl.PositionalEmbedding,
            {"vocabulary_size": 16, "embedding_dim": 4},
            "embeddings_initializer",
            "nope",
        )
    ]
    + [(ktl.MultiHeadAttention, {"num_heads": 2, "key_dim": 4}, "use_bias", v) for v in ["no", 1]]
    + [
        (ktl.MultiHeadAttention, {"num_heads": 2, "key_dim": 4}, name, "nope")
        for name in ["kernel_initializer", "bias_initializer"]
    ]
    + [
        (cls, args, name, value)
        for cls, args in BLOCKS_AND_STACKS
        for name, value in [
            ("layer_norm_epsilon", math.nan),
            ("layer_norm_epsilon", math.inf),
            ("normalize_first", "no"),
            ("normalize_first", 1),
            ("activation", "relux"),
            ("dropout", math.nan),
            ("key_dim", 2.0),
            ("kernel_initializer", "nope"),
            ("bias_initializer", "nope"),
        ]
    ]
    + [
        (cls, STACK_ARGS, "num_layers", v)
        for cls in [ktl.TransformerEncoder, ktl.TransformerDecoder]
        for v in [0, 1.0]
    ]
)


@pytest.mark.parametrize(
    "cls, base, name, value",
    CONSTRUCTOR_CASES,
    ids=[f"{c.__name__}-{n}={v!r}" for c, _, n, v in CONSTRUCTOR_CASES],
)
def test_constructors_reject_bad_settings(cls, base, name, value):
    with pytest.raises(ValueError, match=received(name, value)):
        cls(**{**base, name: value})


TRANSFORMER_CASES = [
    ("source_vocabulary_size", True),
    ("target_vocabulary_size", 12.0),
    ("num_layers", 0),
    ("num_layers", 2.0),
    ("intermediate_dim", -1),
    ("dropout", math.nan),
    ("dropout", 1.0),
    ("activation", "relux"),
    ("layer_norm_epsilon", math.inf),
    ("layer_norm_epsilon", math.nan),
    ("normalize_first", "no"),
    ("max_wavelength", math.nan),
    ("max_wavelength", math.inf),
]


@pytest.mark.parametrize(
    "name, value", TRANSFORMER_CASES, ids=[f"{n}={v!r}" for n, v in TRANSFORMER_CASES]
)
def test_build_transformer_rejects_bad_settings(name, value):
    with pytest.raises(ValueError, match=received(name, value)):
        ktl.build_transformer(**{**TRANSFORMER_ARGS, name: value})


def test_good_settings_still_build_and_round_trip():
    # Ints are accepted where floats are expected, and activation callables too.
    layer = ktl.FeedForward(8, activation=keras.activations.gelu, dropout=0)
    assert layer.activation is keras.activations.gelu
    add_norm = ktl.AddNorm(epsilon=1)
    assert add_norm.layer_norm.epsilon == 1
    block = ktl.TransformerEncoderBlock(**BLOCK_ARGS, normalize_first=True, layer_norm_epsilon=1e-5)
    assert ktl.TransformerEncoderBlock.from_config(block.get_config()).normalize_first is True


# --- Call-time shapes and dtypes (fault kind 6) -----------------------------


MODES = ["eager", pytest.param("graph", marks=TENSORFLOW_ONLY)]


def run_in(mode, function, *args):
    """Calls `function` eagerly, or traced as a graph: the error must be the same ValueError."""
    if mode == "graph":
        import tensorflow as tf

        function = tf.function(function)
    return function(*args)


def floats(*shape):
    return np.random.default_rng(0).random(shape).astype("float32")


def built(layer, *args):
    layer(*args)
    return layer


@pytest.mark.parametrize("mode", MODES)
def test_add_norm_rejects_broadcasting_and_other_shapes(mode):
    layer = built(ktl.AddNorm(), floats(2, 4, 8), floats(2, 4, 8))
    for sub in [floats(2, 1, 8), floats(2, 4, 6), floats(1, 4, 8)]:
        with pytest.raises(
            ValueError, match=re.escape(f"Received: sublayer_output.shape={sub.shape}")
        ):
            run_in(mode, layer, floats(2, 4, 8), sub)
    with pytest.raises(
        ValueError,
        match=r"`inputs`.*built with, here \(\?, \?, 8\).*Received: inputs.shape=\(2, 4, 6\)",
    ):
        run_in(mode, layer, floats(2, 4, 6), floats(2, 4, 6))
    with pytest.raises(
        ValueError,
        match="`sublayer_output` must be a floating-point.*Received: sublayer_output.dtype=int32",
    ):
        run_in(mode, layer, floats(2, 4, 8), np.ones((2, 4, 8), "int32"))


# An unknown dimension of a symbolic input: None, or on JAX a symbolic dimension.
UNKNOWN = "(None|dynamic_dimension)"


def test_add_norm_rejects_broadcasting_in_a_functional_model():
    with pytest.raises(ValueError, match=rf"Received: sublayer_output\.shape=\({UNKNOWN}, 1, 8\)"):
        ktl.AddNorm()(keras.Input((4, 8)), keras.Input((1, 8)))


@pytest.mark.parametrize("mode", MODES)
def test_feed_forward_rejects_another_width_and_ints(mode):
    layer = built(ktl.FeedForward(16), floats(2, 3, 8))
    with pytest.raises(
        ValueError, match=r"`inputs`.*here \(\?, \?, 8\).*Received: inputs.shape=\(2, 3, 4\)"
    ):
        run_in(mode, layer, floats(2, 3, 4))
    with pytest.raises(
        ValueError, match="`inputs` must be a floating-point.*Received: inputs.dtype=int32"
    ):
        run_in(mode, layer, np.ones((2, 3, 8), "int32"))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cls, args", BLOCKS_AND_STACKS[:2], ids=["block", "stack"])
def test_encoder_rejects_another_width_ints_and_bad_masks(mode, cls, args):
    layer = built(cls(**args), floats(2, 5, 8))
    with pytest.raises(
        ValueError,
        match=r"`inputs`.*built with, here \(\?, \?, 8\).*Received: inputs.shape=\(2, 5, 16\)",
    ):
        run_in(mode, layer, floats(2, 5, 16))
    with pytest.raises(
        ValueError, match="`inputs` must be a floating-point.*Received: inputs.dtype=int32"
    ):
        run_in(mode, layer, np.ones((2, 5, 8), "int32"))
    # Wrong length, wrong batch, and a (batch, 1) mask that would broadcast.
    for mask in [np.ones((2, 3), bool), np.ones((1, 5), bool), np.ones((2, 1), bool)]:
        with pytest.raises(
            ValueError, match=re.escape(f"here (2, 5). Received: mask.shape={mask.shape}")
        ):
            run_in(mode, lambda x, m: layer(x, mask=m), floats(2, 5, 8), mask)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cls, args", BLOCKS_AND_STACKS[2:], ids=["block", "stack"])
def test_decoder_rejects_other_widths_batches_ints_and_bad_masks(mode, cls, args):
    layer = built(cls(**args), floats(2, 4, 8), floats(2, 6, 8))
    target, source = floats(2, 4, 8), floats(2, 6, 8)
    with pytest.raises(
        ValueError,
        match=r"`encoder_outputs` must have the same last dimension.*encoder_outputs.shape\[-1\]=16, decoder_inputs.shape\[-1\]=8",
    ):
        run_in(mode, layer, target, floats(2, 6, 16))
    with pytest.raises(
        ValueError,
        match=re.escape(
            "batch size of `decoder_inputs`, here (2, ?, ?). Received: encoder_outputs.shape=(3, 6, 8)"
        ),
    ):
        run_in(mode, layer, target, floats(3, 6, 8))
    with pytest.raises(
        ValueError,
        match=re.escape("built with, here (?, ?, 8). Received: decoder_inputs.shape=(2, 4, 6)"),
    ):
        run_in(mode, layer, floats(2, 4, 6), floats(2, 6, 6))
    with pytest.raises(
        ValueError,
        match="`decoder_inputs` must be a floating-point.*Received: decoder_inputs.dtype=int32",
    ):
        run_in(mode, layer, np.ones((2, 4, 8), "int32"), source)
    with pytest.raises(
        ValueError,
        match="`encoder_outputs` must be a floating-point.*Received: encoder_outputs.dtype=int32",
    ):
        run_in(mode, layer, target, np.ones((2, 6, 8), "int32"))
    with pytest.raises(
        ValueError, match=re.escape("here (2, 4). Received: decoder_inputs_mask.shape=(2, 6)")
    ):
        run_in(
            mode,
            lambda t, s, m: layer(t, s, decoder_inputs_mask=m),
            target,
            source,
            np.ones((2, 6), bool),
        )
    with pytest.raises(
        ValueError, match=re.escape("here (2, 6). Received: encoder_outputs_mask.shape=(1, 6)")
    ):
        run_in(
            mode,
            lambda t, s, m: layer(t, s, encoder_outputs_mask=m),
            target,
            source,
            np.ones((1, 6), bool),
        )


def test_decoder_block_rejects_a_cache_of_the_wrong_shape():
    block = built(ktl.TransformerDecoderBlock(**BLOCK_ARGS), floats(2, 4, 8), floats(2, 6, 8))
    cache = np.zeros((2, 2, 5, 2, 3), "float32")  # key_dim is 4, not 3
    with pytest.raises(
        ValueError,
        match=re.escape(
            "here (2, 2, ?, 2, 4). Received: self_attention_cache.shape=(2, 2, 5, 2, 3)"
        ),
    ):
        block(
            floats(2, 1, 8),
            floats(2, 6, 8),
            self_attention_cache=cache,
            self_attention_cache_update_index=0,
        )


def test_functional_models_reject_bad_wiring_at_build_time():
    source = keras.Input((None, 8))
    encoder = ktl.TransformerEncoder(**STACK_ARGS)
    encoder(source)
    with pytest.raises(ValueError, match=rf"Received: inputs\.shape=\({UNKNOWN}, {UNKNOWN}, 16\)"):
        encoder(keras.Input((None, 16)))
    with pytest.raises(ValueError, match="`inputs` must be a floating-point.*inputs.dtype=int32"):
        ktl.TransformerEncoderBlock(**BLOCK_ARGS)(keras.Input((None, 8), dtype="int32"))
    with pytest.raises(ValueError, match=rf"Received: mask\.shape=\({UNKNOWN}, 3\)"):
        ktl.TransformerEncoderBlock(**BLOCK_ARGS)(
            keras.Input((5, 8)), mask=keras.Input((3,), dtype="bool")
        )
    decoder = ktl.TransformerDecoder(**STACK_ARGS)
    decoder(keras.Input((None, 8)), source)
    with pytest.raises(
        ValueError, match=r"encoder_outputs.shape\[-1\]=16, decoder_inputs.shape\[-1\]=8"
    ):
        decoder(keras.Input((None, 8)), keras.Input((None, 16)))
    with pytest.raises(
        ValueError, match="`decoder_inputs` must be a floating-point.*decoder_inputs.dtype=int32"
    ):
        ktl.TransformerDecoderBlock(**BLOCK_ARGS)(keras.Input((None, 8), dtype="int32"), source)
    with pytest.raises(ValueError, match="`inputs` must be a floating-point.*inputs.dtype=int32"):
        ktl.FeedForward(8)(keras.Input((None, 8), dtype="int32"))
    with pytest.raises(ValueError, match="`inputs` must be a floating-point.*inputs.dtype=int32"):
        ktl.PositionalEncoding()(keras.Input((None, 8), dtype="int32"))


def test_masks_from_embeddings_still_flow_in_functional_models():
    # The checks compare the Keras masks with their sequences: a real model
    # with padding in both sequences builds and gives the same values as eager.
    model = ktl.build_transformer(**TRANSFORMER_ARGS)
    inputs = {
        "encoder_inputs": np.array([[3, 4, 0], [5, 0, 0]]),
        "decoder_inputs": np.array([[1, 7], [1, 0]]),
    }
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(inputs)), model.predict(inputs, verbose=0), atol=1e-5
    )


@pytest.mark.parametrize("mode", MODES)
def test_positional_encoding_rejects_ints_ranks_and_bad_start_index(mode):
    layer = ktl.PositionalEncoding()
    with pytest.raises(
        ValueError, match="`inputs` must be a floating-point.*Received: inputs.dtype=int32"
    ):
        run_in(mode, layer, np.ones((1, 3, 4), "int32"))
    with pytest.raises(
        ValueError, match=r"`inputs` must be a rank-3.*Received: inputs.shape=\(3, 4\)"
    ):
        run_in(mode, layer, floats(3, 4))
    for start in [-1, 1.0, True]:
        with pytest.raises(ValueError, match=received("start_index", start)):
            run_in(mode, lambda x, start=start: layer(x, start_index=start), floats(1, 3, 4))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "ids, dtype",
    [
        (np.array([[1.0, 2.7]], "float32"), "float32"),
        (np.array([[1, 2]], "float64"), "float"),
        pytest.param(np.array([["a", "b"]]), "string", marks=TENSORFLOW_ONLY),
        (np.array([[True, False]]), "bool"),
    ],
    ids=["float32", "float64", "string", "bool"],
)
def test_positional_embedding_rejects_non_integer_ids(mode, ids, dtype):
    layer = ktl.PositionalEmbedding(16, 4)
    with pytest.raises(
        ValueError, match=f"`inputs` must be an integer tensor. Received: inputs.dtype={dtype}"
    ):
        run_in(mode, layer, keras.ops.convert_to_tensor(ids))


def test_positional_embedding_rejects_float_ids_in_a_functional_model():
    with pytest.raises(
        ValueError, match="`inputs` must be an integer tensor. Received: inputs.dtype=float32"
    ):
        ktl.PositionalEmbedding(16, 4)(keras.Input((None,)))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["int64", "uint8", "int16"])
def test_positional_embedding_accepts_every_integer_dtype(mode, dtype):
    layer = ktl.PositionalEmbedding(16, 4)
    ids = np.array([[3, 15, 0]])
    expected = keras.ops.convert_to_numpy(layer(ids.astype("int32")))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(run_in(mode, layer, ids.astype(dtype))), expected, atol=1e-6
    )


# --- Fixed-size tables (fault kind 3, the layer half) ------------------------

LIMIT = r"`start_index` \+ `inputs.shape\[1\]` must be at most `sequence_length`"


def learned_layer():
    layer = ktl.PositionalEmbedding(16, 4, learned_positions=True, sequence_length=4)
    layer(np.ones((1, 4), "int32"))
    return layer


def expected_learned(layer, ids, start=0):
    tokens = keras.ops.convert_to_numpy(layer.token_embedding.embeddings)[ids] * 2.0  # sqrt(4)
    return (
        tokens
        + keras.ops.convert_to_numpy(layer.position_embeddings)[start : start + ids.shape[1]][None]
    )


@pytest.mark.parametrize(
    "jit_compile",
    [None, pytest.param(False, marks=TENSORFLOW_ONLY), pytest.param(True, marks=TENSORFLOW_ONLY)],
    ids=["eager", "graph", "xla"],
)
def test_learned_positions_past_the_table_raise_when_the_length_is_static(jit_compile):
    layer = learned_layer()
    if jit_compile is None:
        call = layer
    else:
        import tensorflow as tf

        call = tf.function(layer, jit_compile=jit_compile)
    ids = np.array([[1, 2, 3, 4, 5, 6, 7]], "int32")
    with pytest.raises(
        ValueError, match=LIMIT + r".*start_index=0, inputs.shape\[1\]=7, sequence_length=4"
    ):
        call(ids)
    with pytest.raises(
        ValueError, match=LIMIT + r".*start_index=3, inputs.shape\[1\]=2, sequence_length=4"
    ):
        call(ids[:, :2], start_index=3)
    # Up to the limit, the rows of the table.
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(call(ids[:, :4])), expected_learned(layer, ids[:, :4]), atol=1e-6
    )


def test_learned_positions_with_a_tensor_start_index_eagerly():
    layer = learned_layer()
    with pytest.raises(ValueError, match=LIMIT + r".*start_index=3"):
        layer(np.ones((1, 2), "int32"), start_index=keras.ops.convert_to_tensor(3))
    with pytest.raises(ValueError, match=received("start_index", -1)):
        layer(np.ones((1, 2), "int32"), start_index=keras.ops.convert_to_tensor(-1))
    ids = np.array([[5, 6]])
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(ids, start_index=keras.ops.convert_to_tensor(2))),
        expected_learned(layer, ids, 2),
        atol=1e-6,
    )


@TENSORFLOW_ONLY
def test_learned_positions_in_a_graph_of_unknown_length_fail_loudly():
    import tensorflow as tf

    layer = learned_layer()
    dynamic = tf.function(
        lambda ids, start: layer(ids, start_index=start),
        input_signature=[tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([], tf.int32)],
    )
    ids = np.array([[1, 2, 3, 4, 5, 6, 7]], "int32")
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"= 4 is not in \[0, 4\)"):
        dynamic(ids, 0)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"is not in \[0, 4\)"):
        dynamic(ids[:, :2], 3)
    # A negative start is sent past the table, not wrapped to its end.
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"= 4 is not in \[0, 4\)"):
        dynamic(ids[:, :2], -1)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(dynamic(ids[:, :3], 1)),
        expected_learned(layer, ids[:, :3], 1),
        atol=1e-6,
    )


@pytest.mark.parametrize("bad", [-1, 16, 10**6, -17])
def test_out_of_vocabulary_ids_raise_eagerly(bad):
    layer = ktl.PositionalEmbedding(16, 4)
    ids = np.array([[3, bad, 0]], "int32")
    with pytest.raises(
        ValueError, match=re.escape(f"[0, 16). Received: ids [{bad}] in inputs, vocabulary_size=16")
    ):
        layer(ids)


@TENSORFLOW_ONLY
@pytest.mark.parametrize("bad", [-1, 16, 10**6])
def test_out_of_vocabulary_ids_fail_in_a_graph_and_are_never_wrapped(bad):
    import tensorflow as tf

    layer = ktl.PositionalEmbedding(16, 4)
    ids = np.array([[3, bad, 0]], "int32")
    # -1 used to be embedded as row 15; now it is sent past the table.
    shown = 16 if bad < 0 else bad
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"= {shown} is not in \[0, 16\)"):
        tf.function(layer)(ids)


@TENSORFLOW_ONLY
def test_a_model_refuses_out_of_vocabulary_ids_in_eager_and_predict():
    import tensorflow as tf

    model = ktl.build_transformer(**TRANSFORMER_ARGS)
    inputs = {"encoder_inputs": np.array([[3, 4, 0]]), "decoder_inputs": np.array([[1, 12]])}
    with pytest.raises(
        ValueError, match=re.escape("[0, 12). Received: ids [12] in inputs, vocabulary_size=12")
    ):
        model(inputs)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"= 12 is not in \[0, 12\)"):
        model.predict(inputs, verbose=0)


@pytest.fixture(scope="module")
def learned_model():
    keras.utils.set_random_seed(3)
    ids = keras.Input((None,), dtype="int32", name="ids")
    embedded = ktl.PositionalEmbedding(16, 4, learned_positions=True, sequence_length=4)(ids)
    return keras.Model(ids, embedded)


@TENSORFLOW_ONLY
def test_saved_model_fails_loudly_past_the_tables(learned_model, tmp_path):
    import tensorflow as tf

    learned_model.export(str(tmp_path / "saved"), format="tf_saved_model", verbose=False)
    loaded = tf.saved_model.load(str(tmp_path / "saved"))
    serve = loaded.serve
    good = np.array([[3, 15, 0, 1]], "int32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(serve(good)),
        keras.ops.convert_to_numpy(learned_model(good)),
        atol=1e-6,
    )
    for ids, shown in [
        (np.array([[1, 2, 3, 4, 5]], "int32"), r"= 4 is not in \[0, 4\)"),
        (np.array([[1, -1]], "int32"), r"= 16 is not in \[0, 16\)"),
        (np.array([[1, 16]], "int32"), r"= 16 is not in \[0, 16\)"),
    ]:
        with pytest.raises(tf.errors.InvalidArgumentError, match=shown):
            serve(ids)


@TENSORFLOW_ONLY
def test_tflite_fails_loudly_past_the_tables(learned_model, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    path = str(tmp_path / "model.tflite")
    learned_model.export(path, format="litert", verbose=False)
    interpreter = Interpreter(model_path=path)
    (input_details,) = interpreter.get_input_details()
    (output_details,) = interpreter.get_output_details()

    def run(ids):
        interpreter.resize_tensor_input(input_details["index"], ids.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(input_details["index"], ids)
        interpreter.invoke()
        return interpreter.get_tensor(output_details["index"])

    good = np.array([[3, 15, 0, 1]], "int32")
    np.testing.assert_allclose(
        run(good), keras.ops.convert_to_numpy(learned_model(good)), atol=1e-5
    )
    for ids in [
        np.array([[1, 2, 3, 4, 5]], "int32"),
        np.array([[1, -1]], "int32"),
        np.array([[1, 16]], "int32"),
    ]:
        with pytest.raises(RuntimeError, match="gather index out of bounds"):
            run(ids)


def decoder_with_cache():
    decoder = built(ktl.TransformerDecoder(**STACK_ARGS), floats(1, 1, 8), floats(1, 3, 8))
    return decoder, decoder.initial_self_attention_cache(1, 4)


@pytest.mark.parametrize("index", [4, 7, -1])
def test_cache_index_past_the_cache_raises_eagerly(index):
    decoder, cache = decoder_with_cache()
    for given in [index, keras.ops.convert_to_tensor(index)]:
        with pytest.raises(
            ValueError,
            match=re.escape(
                f"Received: self_attention_cache_update_index={index}, with 1 new positions "
                "and 4 cache positions"
            ),
        ):
            decoder(
                floats(1, 1, 8),
                floats(1, 3, 8),
                self_attention_cache=cache,
                self_attention_cache_update_index=given,
            )


@TENSORFLOW_ONLY
@pytest.mark.parametrize("index", [4, 7, -1])
def test_cache_index_past_the_cache_fails_in_a_graph_instead_of_overwriting_the_last_slot(index):
    import tensorflow as tf

    decoder, cache = decoder_with_cache()
    step = tf.function(
        lambda x, s, c, i: decoder(
            x, s, self_attention_cache=c, self_attention_cache_update_index=i
        )
    )
    # The lookup in a one-row table at row 1 fails (decode_step.fail_closed).
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"= 1 is not in \[0, 1\)"):
        step(floats(1, 1, 8), floats(1, 3, 8), cache, tf.constant(index))
    # In range, the step writes slot `index` only, as in eager.
    _, written = step(floats(1, 1, 8), floats(1, 3, 8), cache, tf.constant(3))
    _, eager = decoder(
        floats(1, 1, 8),
        floats(1, 3, 8),
        self_attention_cache=cache,
        self_attention_cache_update_index=3,
    )
    written = np.stack([keras.ops.convert_to_numpy(block) for block in written], axis=1)
    eager = np.stack([keras.ops.convert_to_numpy(block) for block in eager], axis=1)
    np.testing.assert_allclose(written, eager, atol=1e-6)
    assert not written[:, :, :, :3].any() and written[:, :, :, 3].any()


@TENSORFLOW_ONLY
def test_cache_index_past_the_cache_fails_in_tflite(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    decoder, cache = decoder_with_cache()
    inputs = {
        "x": keras.Input((1, 8), batch_size=1, name="x"),
        "s": keras.Input((3, 8), batch_size=1, name="s"),
        "c": keras.Input(tuple(cache[0].shape[1:]), batch_size=1, name="c"),
        "i": keras.Input((), batch_size=1, dtype="int32", name="i"),
    }
    (updated,) = decoder(
        inputs["x"],
        inputs["s"],
        self_attention_cache=(inputs["c"],),  # one block
        self_attention_cache_update_index=inputs["i"][0],
    )[1]
    path = str(tmp_path / "step.tflite")
    keras.Model(inputs, updated).export(path, format="litert", verbose=False)
    interpreter = Interpreter(model_path=path)
    interpreter.allocate_tensors()
    indices = {
        d["name"].split("serving_default_")[-1].split(":")[0]: d["index"]
        for d in interpreter.get_input_details()
    }
    (output,) = interpreter.get_output_details()
    target, source = floats(1, 1, 8), floats(1, 3, 8)

    def run(index):
        feed = {
            "x": target,
            "s": source,
            "c": keras.ops.convert_to_numpy(cache[0]),
            "i": np.array([index], "int32"),
        }
        for name, value in feed.items():
            interpreter.set_tensor(indices[name], value)
        interpreter.invoke()
        return interpreter.get_tensor(output["index"])

    _, (expected,) = decoder(
        target, source, self_attention_cache=cache, self_attention_cache_update_index=3
    )
    np.testing.assert_allclose(run(3), keras.ops.convert_to_numpy(expected), atol=1e-5)
    for index in [4, -1]:
        with pytest.raises(RuntimeError, match="gather index out of bounds"):
            run(index)


@pytest.mark.parametrize("max_length", [0, -3, 4.0, True])
def test_initial_cache_rejects_a_bad_max_length(max_length):
    decoder, _ = decoder_with_cache()
    with pytest.raises(ValueError, match=received("max_length", max_length)):
        decoder.initial_self_attention_cache(1, max_length)
