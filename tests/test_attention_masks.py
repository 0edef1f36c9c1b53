"""`attention_mask` shapes: every shape Keras MHA accepts, and nothing else."""

import functools
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_transformer_layers as ktl
from tests.layer_weights import randomize

# Batch, heads, query length and key length all differ, so a mask axis that
# lined up with the wrong scores axis could not go unnoticed.
BATCH, HEADS, QUERY_LEN, KEY_LEN = 3, 2, 4, 5
SIZES = {"B": BATCH, "N": HEADS, "T": QUERY_LEN, "S": KEY_LEN, "1": 1}

# Every shape `keras.layers.MultiHeadAttention` (Keras 3.15) accepts: Keras
# inserts the missing axes before the query axis, so rank 2 is (query, key),
# rank 3 (batch, query, key), rank 4 (batch, heads, query, key), and each
# dimension is 1 or the full size.
ACCEPTED = [
    "TS",
    "1S",
    "T1",
    "11",
    "BTS",
    "B1S",
    "1TS",
    "BT1",
    "11S",
    "1T1",
    "B11",
    "111",
    "BNTS",
    "B1TS",
    "1NTS",
    "BN1S",
    "BNT1",
    "11TS",
    "1N1S",
    "111S",
    "1111",
]
REJECTED = [
    "S",
    "1",
    "",  # rank 0 and 1: Keras fails on them too
    "ST",
    "TT",
    "BS",
    "NS",
    "2S",  # a dimension that is neither 1 nor its size
    "BST",
    "BTT",
    "2TS",
    "NTS",
    "BT3",
    "BBTS",
    "NBTS",
    "B3TS",
    "BNTT",
    "1BNTS",
    "BNTS1",  # rank 5
]


def _shape(code, key_len=KEY_LEN):
    sizes = dict(SIZES, S=key_len)
    return tuple(sizes[c] if c in sizes else int(c) for c in code)


def _random_mask(shape, rng):
    return rng.random(shape) > 0.4


def _copied_pair(query, value):
    theirs = keras.layers.MultiHeadAttention(num_heads=HEADS, key_dim=3)
    ours = ktl.MultiHeadAttention(num_heads=HEADS, key_dim=3)
    theirs(query, value)
    ours(query, value)
    randomize(theirs)
    ours.set_weights(theirs.get_weights())
    return ours, theirs


@pytest.mark.parametrize("context", ["cross", "cross_padded", "self_causal_padded"])
@pytest.mark.parametrize("code", ACCEPTED)
def test_every_mask_shape_keras_accepts_gives_the_keras_result(code, context):
    """Ours against Keras MHA with copied weights: the mask alone, with padding
    masks from `Embedding(mask_zero=True)` on both sides, and with padding and
    the causal mask in self-attention (there also inside `tf.function`)."""
    rng = np.random.default_rng(0)
    padded = context.endswith("padded")
    self_attention = context.startswith("self")
    key_len = QUERY_LEN if self_attention else KEY_LEN
    query_ids = rng.integers(1, 20, (BATCH, QUERY_LEN))
    key_ids = query_ids if self_attention else rng.integers(1, 20, (BATCH, key_len))
    if padded:  # trailing padding of different lengths; the last row is unpadded
        query_ids = np.where(np.arange(QUERY_LEN) < np.array([[2], [3], [QUERY_LEN]]), query_ids, 0)
        key_ids = (
            query_ids
            if self_attention
            else np.where(np.arange(key_len) < np.array([[3], [1], [key_len]]), key_ids, 0)
        )
    mask = _random_mask(_shape(code, key_len), rng)
    # Embedding(mask_zero=True) attaches the padding masks; `plain` gives the
    # same vectors without them.
    embedding = keras.layers.Embedding(20, 8, mask_zero=padded)
    plain = keras.layers.Embedding(20, 8)
    for layer in (embedding, plain):
        layer.build((None, None))
    randomize(embedding, scale=1.0)
    plain.set_weights(embedding.get_weights())
    ours, theirs = _copied_pair(plain(query_ids), plain(key_ids))
    causal = context == "self_causal_padded"

    def run(layer, scores, attention_mask=mask, embed=embedding):
        # A fresh embedding per call: Keras MHA deletes the masks of its inputs.
        return layer(
            embed(query_ids),
            embed(key_ids),
            attention_mask=attention_mask,
            use_causal_mask=causal,
            return_attention_scores=scores,
        )

    if padded and len(code) == 4:
        # Keras ANDs a rank-4 mask with its (batch, q, k) padding mask by right
        # alignment, batch against heads, and fails. Reference: Keras given
        # the combined mask spelt out, on unmasked inputs.
        combined = (
            np.broadcast_to(mask, (BATCH, HEADS, QUERY_LEN, key_len))
            & (query_ids != 0)[:, None, :, None]
            & (key_ids != 0)[:, None, None, :]
        )
        reference = functools.partial(run, attention_mask=combined, embed=plain)
    else:
        reference = run
    # Keras' unfused path (scores requested) zeroes rows with no visible key,
    # as ours does, so the outputs and weights agree everywhere.
    out_theirs, scores_theirs = reference(theirs, True)
    for call in (run, tf.function(run)) if causal else (run,):
        out_ours, scores_ours = call(ours, True)
        np.testing.assert_allclose(np.asarray(out_ours), np.asarray(out_theirs), atol=1e-5)
        np.testing.assert_allclose(np.asarray(scores_ours), np.asarray(scores_theirs), atol=1e-6)
    # Keras' fused path (no scores) gives rows with no visible key the mean
    # of the values; ours keeps them at zero. Compare the other rows.
    visible = np.asarray(scores_theirs).sum(-1).min(1) > 0.5  # (batch, query)
    assert visible.any()
    np.testing.assert_allclose(
        np.asarray(run(ours, False))[visible],
        np.asarray(reference(theirs, False))[visible],
        atol=1e-5,
    )


@pytest.mark.parametrize("code", REJECTED)
def test_other_mask_shapes_are_a_value_error_naming_the_mask(code):
    query = np.random.rand(BATCH, QUERY_LEN, 8).astype("float32")
    value = np.random.rand(BATCH, KEY_LEN, 8).astype("float32")
    layer = ktl.MultiHeadAttention(HEADS, 3)
    mask = np.ones(_shape(code), bool)
    match = r"`attention_mask` must have shape .*" + re.escape(
        f"Received: attention_mask.shape={tuple(mask.shape)!r}"
    )
    with pytest.raises(ValueError, match=match):
        layer(query, value, attention_mask=mask)
    with pytest.raises(ValueError, match="attention_mask"):
        tf.function(lambda q, v, m: layer(q, v, attention_mask=m))(query, value, mask)


def test_mask_shapes_are_checked_when_traced_with_unknown_batch():
    layer = ktl.MultiHeadAttention(HEADS, 3)
    spec = tf.TensorSpec((None, QUERY_LEN, 8), tf.float32)

    def trace(mask_shape):
        return tf.function(
            lambda x, m: layer(x, x, attention_mask=m),
            input_signature=[spec, tf.TensorSpec(mask_shape, tf.bool)],
        ).get_concrete_function()

    trace((None, 1, QUERY_LEN))
    trace((QUERY_LEN, None))
    with pytest.raises(ValueError, match=r"Received: attention_mask.shape=\(None, 3, 4\)"):
        trace((None, 3, QUERY_LEN))


def test_mask_with_a_cache_spans_the_cache_length():
    # With a self-attention cache the keys are the cache's `max_length`
    # positions; the mask broadcasts against them like any key axis. Each
    # step must equal the full causal computation under the same mask.
    rng = np.random.default_rng(2)
    max_length = 6
    layer = ktl.MultiHeadAttention(HEADS, 3)
    x = rng.random((BATCH, max_length, 8)).astype("float32")
    layer(x, x)
    randomize(layer)
    for code in ("1S", "BTS", "B1S", "BNTS", "11S"):
        full_mask = _random_mask(_shape(code.replace("T", "S"), max_length), rng)
        full_mask[..., 0] = True  # every query sees at least the first key
        expected = np.asarray(layer(x, x, attention_mask=full_mask, use_causal_mask=True))
        cache = np.zeros((BATCH, 2, max_length, HEADS, 3), "float32")
        for step in range(max_length):
            step_mask = full_mask[..., step : step + 1, :] if "T" in code else full_mask
            output, cache = layer(
                x[:, step : step + 1],
                x[:, step : step + 1],
                attention_mask=step_mask,
                use_causal_mask=True,
                cache=cache,
                cache_update_index=step,
            )
            np.testing.assert_allclose(np.asarray(output)[:, 0], expected[:, step], atol=1e-5)
    with pytest.raises(ValueError, match=r"Received: attention_mask.shape=\(3, 1, 5\)"):
        layer(
            x[:, :1],
            x[:, :1],
            attention_mask=np.ones((BATCH, 1, 5), bool),
            cache=cache,
            cache_update_index=0,
        )


@pytest.mark.parametrize("shape", [(BATCH, KEY_LEN), (1, KEY_LEN), (BATCH, 1), (1, 1)])
def test_padding_masks_broadcast_as_in_keras(shape):
    # Keras MHA takes `value_mask`/`key_mask` as given (its `query_mask`
    # comes from the query's Keras mask), so compare those; the query mask is
    # compared with the same padding spelt out as an attention mask.
    rng = np.random.default_rng(3)
    query = rng.random((BATCH, QUERY_LEN, 8)).astype("float32")
    value = rng.random((BATCH, KEY_LEN, 8)).astype("float32")
    ours, theirs = _copied_pair(query, value)
    padding = _random_mask(shape, rng)
    padding[..., 0] = True
    for name in ("value_mask", "key_mask"):
        out_ours, scores_ours = ours(query, value, return_attention_scores=True, **{name: padding})
        out_theirs, scores_theirs = theirs(
            query, value, value, return_attention_scores=True, **{name: padding}
        )
        np.testing.assert_allclose(np.asarray(scores_ours), np.asarray(scores_theirs), atol=1e-6)
        np.testing.assert_allclose(np.asarray(out_ours), np.asarray(out_theirs), atol=1e-5)
    query_padding = _random_mask(tuple(QUERY_LEN if d == KEY_LEN else d for d in shape), rng)
    out_ours = ours(query, value, query_mask=query_padding)
    spelt_out = np.broadcast_to(query_padding[:, :, None], (BATCH, QUERY_LEN, KEY_LEN))
    # With scores requested Keras zeroes fully masked rows, as ours does.
    out_theirs, _ = theirs(query, value, attention_mask=spelt_out, return_attention_scores=True)
    np.testing.assert_allclose(np.asarray(out_ours), np.asarray(out_theirs), atol=1e-5)


@pytest.mark.parametrize(
    "name, shape",
    [
        ("query_mask", (BATCH, QUERY_LEN + 1)),
        ("query_mask", (QUERY_LEN,)),
        ("value_mask", (BATCH, QUERY_LEN)),
        ("value_mask", (2, KEY_LEN)),
        ("key_mask", (BATCH, KEY_LEN, 1)),
    ],
)
def test_padding_masks_of_other_shapes_are_a_value_error(name, shape):
    query = np.random.rand(BATCH, QUERY_LEN, 8).astype("float32")
    value = np.random.rand(BATCH, KEY_LEN, 8).astype("float32")
    layer = ktl.MultiHeadAttention(HEADS, 3)
    mask = np.ones(shape, bool)
    match = rf"`{name}` must have shape \(batch, seq_len\) = .*" + re.escape(
        f"Received: {name}.shape={shape!r}"
    )
    with pytest.raises(ValueError, match=match):
        layer(query, value, **{name: mask})
    with pytest.raises(ValueError, match=match):
        tf.function(lambda q, v, m: layer(q, v, **{name: m}))(query, value, mask)


def test_padding_mask_with_a_cache_may_broadcast_over_the_new_positions():
    layer = ktl.MultiHeadAttention(HEADS, 3)
    x = np.random.rand(BATCH, 2, 8).astype("float32")
    layer(x, x)
    cache = np.zeros((BATCH, 2, 4, HEADS, 3), "float32")
    padding = np.array([[True], [False], [True]])  # (batch, 1): both new positions
    output, _ = layer(x, x, value_mask=padding, cache=cache, cache_update_index=0)
    expected, _ = layer(
        x, x, value_mask=np.repeat(padding, 2, axis=1), cache=cache, cache_update_index=0
    )
    np.testing.assert_allclose(np.asarray(output), np.asarray(expected), atol=1e-6)


def test_broadcast_masks_under_xla_match_eager():
    rng = np.random.default_rng(4)
    query = rng.random((BATCH, QUERY_LEN, 8)).astype("float32")
    value = rng.random((BATCH, KEY_LEN, 8)).astype("float32")
    layer = ktl.MultiHeadAttention(HEADS, 3)
    layer(query, value)
    randomize(layer)
    compiled = tf.function(
        lambda q, v, m: layer(q, v, attention_mask=m, return_attention_scores=True),
        jit_compile=True,
    )
    for code in ("1S", "B1S", "BNTS"):
        mask = _random_mask(_shape(code), rng)
        for got, want in zip(
            compiled(query, value, mask),
            layer(query, value, attention_mask=mask, return_attention_scores=True),
            strict=True,
        ):
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)


@pytest.mark.parametrize("mode", ["eager", "graph"])
@pytest.mark.parametrize(
    "argument, query, value",
    [
        ("query", np.ones((1, 3, 6), "float32"), np.ones((1, 3, 8), "float32")),
        ("value", np.ones((1, 3, 8), "float32"), np.ones((1, 3, 6), "float32")),
        ("query", np.ones((1, 3, 8), "int32"), np.ones((1, 3, 8), "float32")),
    ],
    ids=["query_width", "value_width", "integer_query"],
)
def test_inputs_of_another_width_or_dtype_are_value_errors(mode, argument, query, value):
    layer = ktl.MultiHeadAttention(num_heads=2, key_dim=4)
    x = np.ones((1, 3, 8), "float32")
    expected = np.asarray(layer(x, x))
    call = layer if mode == "eager" else tf.function(layer)
    with pytest.raises(
        ValueError, match=rf"`{argument}` must .*Received: {argument}\.(shape|dtype)="
    ):
        call(query, value)
    # A good call afterwards still gives the same numbers.
    np.testing.assert_allclose(call(x, x), expected, atol=1e-6)
    symbolic = keras.Input((3, query.shape[-1]), dtype=str(query.dtype))
    with pytest.raises(ValueError, match=rf"`{argument}` must "):
        layer(symbolic, keras.Input((3, value.shape[-1])))
