"""Large activations under 16-bit policies: no overflow, results close to float32.

An attention logit is the product of two activations, so in float16 it passes
65504 once `|q|` and `|k|` reach a few hundred (inputs x200 gave NaN before the
logits were computed in float32). The tolerances are in units of the 16-bit
type's unit roundoff `u` (float16 2**-11, bfloat16 2**-8), measured on this
machine and given a margin of about 5x: the blocks end in a LayerNorm, so
their outputs are O(1); measured max |output - float32| <= 4.3u, gradients
<= 1.5u (relative norm) for the encoder block at every scale.
"""

import keras
import numpy as np
import pytest

import keras_transformer_layers as ktl

pytestmark = pytest.mark.backend_neutral_by_hand

UNIT_ROUNDOFF = {"mixed_float16": 2.0**-11, "mixed_bfloat16": 2.0**-8}
OUTPUT_TOLERANCE = 20  # x u, absolute, on O(1) outputs
GRADIENT_TOLERANCE = 10  # x u, relative norm


def _rounded(values, policy):
    """`values` rounded to the 16-bit type, so both blocks see the same input."""
    compute_dtype = keras.DTypePolicy(policy).compute_dtype
    return keras.ops.convert_to_numpy(
        keras.ops.cast(keras.ops.cast(values, compute_dtype), "float32")
    )


def _norm(tensors):
    return np.sqrt(sum(float(np.sum(np.square(t))) for t in tensors))


def _outputs_and_gradients(block, inputs, call, jit_compile=False):
    """The float32 outputs, and the gradients of a weighted sum of them with
    respect to the inputs then the trainable variables (TensorFlow, JAX or
    PyTorch, which has no compiler here: `jit_compile` runs eagerly)."""
    weights = np.random.default_rng(1).standard_normal((2, 6, 16)).astype("float32")
    if keras.config.backend() == "torch":
        import torch

        tensors = [torch.tensor(x, requires_grad=True) for x in inputs]
        outputs = keras.ops.cast(call(block, *tensors), "float32")
        loss = torch.sum(outputs * torch.from_numpy(weights))
        gradients = torch.autograd.grad(
            loss, tensors + [v.value for v in block.trainable_variables]
        )
        outputs = outputs.detach()
    elif keras.config.backend() == "jax":
        import jax

        variables = block.trainable_variables

        def forward(tensors, values):
            with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
                outputs = keras.ops.cast(call(block, *tensors), "float32")
            return keras.ops.sum(outputs * weights), outputs

        gradient = jax.grad(forward, argnums=(0, 1), has_aux=True)
        if jit_compile:
            gradient = jax.jit(gradient)
        (input_gradients, weight_gradients), outputs = gradient(
            tuple(keras.ops.convert_to_tensor(x) for x in inputs), [v.value for v in variables]
        )
        gradients = list(input_gradients) + list(weight_gradients)
    else:
        import tensorflow as tf

        def forward(*tensors):
            with tf.GradientTape() as tape:
                tape.watch(tensors)
                outputs = tf.cast(call(block, *tensors), "float32")
                loss = tf.reduce_sum(outputs * weights)
            return outputs, tape.gradient(loss, list(tensors) + block.trainable_variables)

        if jit_compile:
            forward = tf.function(forward, jit_compile=True)
        outputs, gradients = forward(*(tf.constant(x) for x in inputs))
    return keras.ops.convert_to_numpy(outputs), [
        keras.ops.convert_to_numpy(g).astype("float32") for g in gradients
    ]


def _block_pair(block_class, policy, inputs, call):
    blocks = [block_class(num_heads=2, intermediate_dim=32, dtype=p) for p in ("float32", policy)]
    for block in blocks:
        call(block, *inputs)
    blocks[1].set_weights(blocks[0].get_weights())
    return blocks


def _encoder_call(block, inputs):
    return block(inputs, mask=np.arange(6)[None] < np.array([[4], [6]]))


def _decoder_call(block, inputs, source):
    return block(
        inputs,
        source,
        decoder_inputs_mask=np.arange(6)[None] < np.array([[4], [6]]),
        encoder_outputs_mask=np.arange(7)[None] < np.array([[5], [7]]),
    )


@pytest.mark.parametrize("scale", [1e2, 2e2, 1e3, 1e4])  # 2e2: the reported NaN
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_encoder_block_at_large_inputs_is_finite_and_close_to_float32(policy, scale):
    u = UNIT_ROUNDOFF[policy]
    rng = np.random.default_rng(0)
    inputs = (_rounded(rng.standard_normal((2, 6, 16)) * scale, policy),)
    reference, mixed = _block_pair(ktl.TransformerEncoderBlock, policy, inputs, _encoder_call)
    expected, expected_gradients = _outputs_and_gradients(reference, inputs, _encoder_call)
    outputs, gradients = _outputs_and_gradients(mixed, inputs, _encoder_call)
    assert np.isfinite(outputs).all()
    assert all(np.isfinite(g).all() for g in gradients)
    assert np.abs(outputs - expected).max() <= OUTPUT_TOLERANCE * u
    # The input gradient, then all weight gradients together (some are zero
    # in exact arithmetic, e.g. the key bias, so only their sum is relative).
    input_error = _norm([gradients[0] - expected_gradients[0]]) / _norm(expected_gradients[:1])
    weight_error = _norm(
        [g - e for g, e in zip(gradients[1:], expected_gradients[1:], strict=True)]
    ) / _norm(expected_gradients[1:])
    assert input_error <= GRADIENT_TOLERANCE * u
    assert weight_error <= GRADIENT_TOLERANCE * u


def test_encoder_block_at_large_inputs_under_xla():
    policy = "mixed_float16"  # bfloat16 has the float32 range
    u = UNIT_ROUNDOFF[policy]
    inputs = (_rounded(np.random.default_rng(0).standard_normal((2, 6, 16)) * 1e4, policy),)
    reference, mixed = _block_pair(ktl.TransformerEncoderBlock, policy, inputs, _encoder_call)
    expected, _ = _outputs_and_gradients(reference, inputs, _encoder_call)
    outputs, gradients = _outputs_and_gradients(mixed, inputs, _encoder_call, jit_compile=True)
    assert all(np.isfinite(g).all() for g in gradients)
    assert np.abs(outputs - expected).max() <= OUTPUT_TOLERANCE * u


@pytest.mark.parametrize("scale", [1e2, 1e3, 1e4])
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_decoder_block_at_large_inputs_is_finite_and_close_to_float32(policy, scale):
    # Self- and cross-attention. The gradients are finite but not compared:
    # cross-attention logits grow like the source (not its square), so near
    # x100 the softmax is steep and the 16-bit rounding of the keys alone
    # moves the float32 gradients by up to ~180u; the outputs stay within 7u.
    u = UNIT_ROUNDOFF[policy]
    rng = np.random.default_rng(0)
    inputs = tuple(
        _rounded(rng.standard_normal(shape) * scale, policy) for shape in ((2, 6, 16), (2, 7, 16))
    )
    reference, mixed = _block_pair(ktl.TransformerDecoderBlock, policy, inputs, _decoder_call)
    expected, _ = _outputs_and_gradients(reference, inputs, _decoder_call)
    outputs, gradients = _outputs_and_gradients(mixed, inputs, _decoder_call)
    assert all(np.isfinite(g).all() for g in gradients)
    assert np.abs(outputs - expected).max() <= OUTPUT_TOLERANCE * u


def test_attention_logits_beyond_the_float16_range():
    # Identity projections, one head of size 2: the logit of query i and key
    # j is x_i . x_j / sqrt(2). Activations of 1e3 give logits of 1.4e6, inf
    # in float16.
    layer = ktl.MultiHeadAttention(1, 2, use_bias=False, dtype="mixed_float16")
    x = np.array([[[1e3, 1e3], [-1e3, -1e3], [2e3, 2e3]]], "float32")
    layer(x, x)
    for dense in (layer.query_dense, layer.key_dense, layer.value_dense):
        dense.kernel.assign(np.eye(2, dtype="float32").reshape(2, 1, 2))
    layer.output_dense.kernel.assign(np.eye(2, dtype="float32").reshape(1, 2, 2))
    mask = np.array([[[True, True, False]] * 3])
    output, scores = layer(x, x, attention_mask=mask, return_attention_scores=True)
    expected = [[1, 0, 0], [0, 1, 0], [1, 0, 0]]
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(scores).astype("float32")[0, 0], expected
    )
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(output).astype("float32")[0], x[0, [0, 1, 0]]
    )
    # Every visible logit of query 2 is below -1e9 (-5.1e9 and -4.2e9): a
    # fill of -1e9 would give the masked key the weight, then zero it.
    x = np.array([[[6e4, 6e4], [5e4, 5e4], [-6e4, -6e4]]], "float32")
    _, scores = layer(x, x, attention_mask=mask, return_attention_scores=True)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(scores).astype("float32")[0, 0],
        [[1, 0, 0], [1, 0, 0], [0, 1, 0]],
    )
