"""The key/value cache: step-by-step equals one full causal pass.

In the attention layer and the decoder stack, and through the decoding
interface (`CachedDecoding`) of encoder-decoder and decoder-only models.
"""

import keras
import numpy as np
import pytest
from keras import ops

import keras_transformer_layers as ktl
from tests import numpy_reference as ref
from tests.generation_fixtures import cached_step_logits
from tests.generation_fixtures import full_logits
from tests.generation_fixtures import small_model
from tests.layer_weights import attention_params
from tests.layer_weights import randomize

pytestmark = pytest.mark.backend_neutral


def _attention(query):
    layer = ktl.MultiHeadAttention(num_heads=2, key_dim=4)
    layer(query, query)
    randomize(layer)
    return layer


def test_cached_self_attention_matches_numpy_reference_step_by_step():
    query = np.random.normal(size=(2, 5, 8)).astype("float32")
    layer = _attention(query)
    cache = np.zeros((2, 2, 7, 2, 4), "float32")  # two unused cache slots at the end
    outputs = []
    for step in range(5):
        output, scores, cache = layer(
            query[:, step : step + 1],
            query[:, step : step + 1],
            use_causal_mask=True,
            cache=cache,
            cache_update_index=step,
            return_attention_scores=True,
        )
        outputs.append(ops.convert_to_numpy(output))
        # Nothing is attended beyond the current step, unused slots included.
        np.testing.assert_array_equal(ops.convert_to_numpy(scores)[:, :, 0, step + 1 :], 0.0)
    causal = np.tril(np.ones((5, 5), bool))
    for example in range(2):
        expected, _ = ref.multi_head_attention(
            query[example], query[example], attention_params(layer), causal
        )
        np.testing.assert_allclose(np.concatenate(outputs, axis=1)[example], expected, atol=1e-5)


def test_cached_prefill_then_step_matches_one_pass_with_padding():
    query = np.random.normal(size=(2, 5, 8)).astype("float32")
    padding = np.array([[True] * 5, [True, True, True, False, True]])
    layer = _attention(query)
    full = ops.convert_to_numpy(
        layer(query, query, query_mask=padding, value_mask=padding, use_causal_mask=True)
    )
    cache = np.zeros((2, 2, 6, 2, 4), "float32")
    first, cache = layer(
        query[:, :3],
        query[:, :3],
        query_mask=padding[:, :3],
        value_mask=padding[:, :3],
        use_causal_mask=True,
        cache=cache,
        cache_update_index=0,
    )
    second, cache = layer(
        query[:, 3:],
        query[:, 3:],
        query_mask=padding[:, 3:],
        value_mask=padding[:, 3:],
        use_causal_mask=True,
        cache=cache,
        cache_update_index=3,
    )
    np.testing.assert_allclose(
        np.concatenate([ops.convert_to_numpy(first), ops.convert_to_numpy(second)], axis=1),
        full,
        atol=1e-5,
    )


@pytest.mark.parametrize("kind", ["float", "lora", "int8"])
def test_cached_steps_project_with_the_keras_kernels(kind, monkeypatch):
    """Float (and LoRA) decoding steps bypass the `EinsumDense` calls; int8 ones keep them.

    Either way the steps give the full causal pass of the same layer.
    """
    query = np.random.normal(size=(2, 4, 8)).astype("float32")
    layer = _attention(query)
    if kind == "lora":
        layer.enable_lora(2)
        lora_b = layer.value_dense.lora_kernel_b
        lora_b.assign(np.full(lora_b.shape, 0.5, "float32"))
    projections = (layer.query_dense, layer.key_dense, layer.value_dense, layer.output_dense)
    if kind == "int8":
        for projection in projections:
            projection.quantize("int8")
    full = ops.convert_to_numpy(layer(query, query, use_causal_mask=True))
    calls = []
    method = "quantized_call" if kind == "int8" else "call"  # what `Layer.__call__` runs
    for projection in projections:
        original = getattr(projection, method)

        def counted(*args, original=original, **kwargs):
            calls.append(1)
            return original(*args, **kwargs)

        monkeypatch.setattr(projection, method, counted)
    cache = np.zeros((2, 2, 4, 2, 4), "float32")
    outputs = []
    for step in range(4):
        output, cache = layer(
            query[:, step : step + 1],
            query[:, step : step + 1],
            use_causal_mask=True,
            cache=cache,
            cache_update_index=step,
        )
        outputs.append(ops.convert_to_numpy(output))
    np.testing.assert_allclose(np.concatenate(outputs, axis=1), full, atol=1e-5)
    assert len(calls) == (16 if kind == "int8" else 0)  # 4 projections x 4 steps


def test_precomputed_cross_attention_cache_matches_projection():
    query = np.random.normal(size=(2, 3, 8)).astype("float32")
    value = np.random.normal(size=(2, 6, 8)).astype("float32")
    value_mask = np.array([[True] * 6, [True, True, False, False, False, False]])
    layer = _attention(query)
    expected = ops.convert_to_numpy(layer(query, value, value_mask=value_mask))
    cache = layer.compute_cache(value)
    output, returned = layer(query, None, value_mask=value_mask, cache=cache)
    np.testing.assert_allclose(ops.convert_to_numpy(output), expected, atol=1e-5)
    np.testing.assert_array_equal(ops.convert_to_numpy(returned), ops.convert_to_numpy(cache))


def test_cache_output_spec_matches_eager_structure():
    layer = ktl.MultiHeadAttention(num_heads=2, key_dim=4)
    query = keras.Input((1, 8))
    cache = keras.Input((2, 7, 2, 4))
    symbolic = layer(query, query, cache=cache, cache_update_index=0, return_attention_scores=True)
    eager = layer(
        np.ones((3, 1, 8), "float32"),
        np.ones((3, 1, 8), "float32"),
        cache=np.zeros((3, 2, 7, 2, 4), "float32"),
        cache_update_index=0,
        return_attention_scores=True,
    )
    assert [tuple(t.shape)[1:] for t in symbolic] == [tuple(t.shape)[1:] for t in eager]
    assert [tuple(t.shape)[1:] for t in symbolic] == [(1, 8), (2, 1, 7), (2, 7, 2, 4)]


def test_cache_needs_matching_value_dim():
    layer = ktl.MultiHeadAttention(num_heads=2, key_dim=4, value_dim=3)
    x = np.ones((1, 1, 8), "float32")
    layer(x, x)
    with pytest.raises(ValueError, match="value_dim=3"):
        layer(x, x, cache=np.zeros((1, 2, 4, 2, 4), "float32"), cache_update_index=0)


@pytest.mark.parametrize("normalize_first", [False, True], ids=["post_norm", "pre_norm"])
def test_decoder_stack_cached_steps_match_full_pass(normalize_first):
    decoder = ktl.TransformerDecoder(2, 2, 16, normalize_first=normalize_first)
    target = np.random.normal(size=(2, 5, 8)).astype("float32")
    source = np.random.normal(size=(2, 6, 8)).astype("float32")
    source_mask = np.array([[True] * 6, [True, True, True, False, False, False]])
    full = ops.convert_to_numpy(decoder(target, source, encoder_outputs_mask=source_mask))
    cache = decoder.initial_self_attention_cache(2, 5)
    assert [tuple(block.shape) for block in cache] == [(2, 2, 5, 2, 4)] * 2
    cross = decoder.compute_cross_attention_cache(source)
    assert [tuple(block.shape) for block in cross] == [(2, 2, 6, 2, 4)] * 2
    steps = []
    for step in range(5):
        output, cache = decoder(
            target[:, step : step + 1],
            None,
            encoder_outputs_mask=source_mask,
            self_attention_cache=cache,
            self_attention_cache_update_index=step,
            cross_attention_cache=cross,
        )
        steps.append(ops.convert_to_numpy(output))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)


def test_decoder_stack_cache_output_spec():
    decoder = ktl.TransformerDecoder(2, 2, 16)
    target, source = keras.Input((1, 8)), keras.Input((6, 8))
    cache = (keras.Input((2, 5, 2, 4)), keras.Input((2, 5, 2, 4)))
    output, new_cache = decoder(
        target, source, self_attention_cache=cache, self_attention_cache_update_index=0
    )
    assert tuple(output.shape) == (None, 1, 8)
    assert [tuple(block.shape) for block in new_cache] == [(None, 2, 5, 2, 4)] * 2


@pytest.mark.parametrize("kind", ["seq2seq", "decoder_only"])
def test_interface_cached_steps_and_prefill_match_the_full_model(kind):
    model, interface = small_model(favoured=(), seed=6, decoder_only=kind == "decoder_only")
    source = np.array([[4, 5, 6, 0], [7, 8, 9, 10]], "int32") if kind == "seq2seq" else None
    tokens = np.array([[2, 5, 7, 9, 4, 6], [2, 11, 10, 3, 8, 5]], "int32")
    full = full_logits(model, source, tokens)
    # One token per step.
    np.testing.assert_allclose(cached_step_logits(interface, tokens, source), full, atol=1e-4)
    # A prefill of four tokens, then two more in one call.
    state = {} if source is None else interface.call_encoder(source)
    cache = interface.initial_cache(2, 6)
    first, cache = interface.call_decoder_with_cache(tokens[:, :4], 0, cache, state)
    second, cache = interface.call_decoder_with_cache(tokens[:, 4:], 4, cache, state)
    assert ops.convert_to_numpy(first).dtype == np.float32
    np.testing.assert_allclose(
        np.concatenate([ops.convert_to_numpy(first), ops.convert_to_numpy(second)], axis=1),
        full,
        atol=1e-4,
    )


def _one_step(layer, index, cache):
    x = np.ones((2, 1, 8), "float32")
    return layer(x, x, use_causal_mask=True, cache=cache, cache_update_index=index)


@pytest.mark.parametrize("index", [4, 10, -1])
def test_attention_cache_index_outside_the_cache_raises_eagerly(index):
    layer = _attention(np.ones((2, 1, 8), "float32"))
    cache = np.zeros((2, 2, 4, 2, 4), "float32")
    for given in (index, ops.convert_to_tensor(index)):
        with pytest.raises(
            ValueError,
            match=rf"`cache_update_index` must be non-negative.*Received: cache_update_index={index},"
            " with 1 new positions and 4 cache positions",
        ):
            _one_step(layer, given, cache)


@pytest.mark.skipif(keras.config.backend() != "tensorflow", reason="tf.function graphs")
@pytest.mark.parametrize("index", [4, 10, -1])
def test_attention_cache_index_outside_the_cache_fails_closed_in_graphs_and_xla(index):
    import tensorflow as tf

    layer = _attention(np.ones((2, 1, 8), "float32"))
    cache = np.zeros((2, 2, 4, 2, 4), "float32")
    expected, _ = _one_step(layer, 3, cache)
    for jit_compile in (False, True):
        step = tf.function(lambda i: _one_step(layer, i, cache), jit_compile=jit_compile)
        output, _ = step(tf.constant(3))  # in range: the eager result
        np.testing.assert_allclose(ops.convert_to_numpy(output), expected, atol=1e-6)
        if jit_compile:  # XLA clamps lookups: the output is NaN instead
            output, _ = step(tf.constant(index))
            assert np.isnan(ops.convert_to_numpy(output)).all()
        else:
            with pytest.raises(tf.errors.InvalidArgumentError, match=r"is not in \[0, 1\)"):
                step(tf.constant(index))


def test_attention_cache_records_padding_for_later_calls():
    # Padding fed through the cache is masked in every later call, as in one
    # full pass: step by step equals the full causal computation.
    query = np.random.normal(size=(2, 5, 8)).astype("float32")
    padding = np.array([[True, True, False, True, True], [False, True, True, False, True]])
    layer = _attention(query)
    full = ops.convert_to_numpy(
        layer(query, query, query_mask=padding, value_mask=padding, use_causal_mask=True)
    )
    cache = np.zeros((2, 2, 5, 2, 4), "float32")
    outputs = []
    for step in range(5):
        output, cache = layer(
            query[:, step : step + 1],
            query[:, step : step + 1],
            query_mask=padding[:, step : step + 1],
            value_mask=padding[:, step : step + 1],
            use_causal_mask=True,
            cache=cache,
            cache_update_index=step,
        )
        outputs.append(ops.convert_to_numpy(output))
    np.testing.assert_allclose(np.concatenate(outputs, axis=1), full, atol=1e-5)
