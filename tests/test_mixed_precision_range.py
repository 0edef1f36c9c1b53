"""Large activations under 16-bit policies: no overflow, results close to exact.

An attention logit is the product of two activations, so in float16 it passes
65504 once `|q|` and `|k|` reach a few hundred (inputs x200 gave NaN before the
logits were computed in float32).

The encoder block is compared with exact values: its outputs with the NumPy
reference in float64, its input gradient with central differences of that
reference. The tolerances count roundings. A result computed in a type of
unit roundoff `u` (float32 2**-24, float16 2**-11, bfloat16 2**-8) is the
exact result of a computation whose every stored tensor was rounded once
(relative error at most `u`; products and sums accumulate in float32): the 16
weights when they are cast (query, key, value and output kernels and biases,
two feed-forward kernels and biases, two LayerNorm scales and offsets), then
12 activations (q, k, v, the attention weights, the attended values, the
attention output, the residual sum, the first LayerNorm's output, the
feed-forward hidden and output layers, the second residual sum, the output),
then for a gradient 16 gradient tensors (at the output and at each
LayerNorm's input, the feed-forward hidden layer and input, the residual sum,
the attended values, the attention weights, v, q and k, and x through q, k
and v with their three sums). To first order each rounding moves the result
by at most `u` relative, so outputs are within 28u and gradients within 44u
(relative norm). This holds where the attention rows are saturated, as in
these inputs (checked): one logit leads the others by more than 104, so their
weights underflow to exactly 0 in float32, the softmax selects one value and
its derivative is 0. A steep softmax that is not saturated multiplies the
rounding of the logits by their size instead (the decoder's cross-attention
below). The weight gradients are compared with the float32 block's, whose own
error (44 * 2**-24) is negligible against the 16-bit bound.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_transformer_layers as ktl
from tests import layer_weights
from tests import numpy_reference

pytestmark = pytest.mark.backend_neutral

UNIT_ROUNDOFF = {"float32": 2.0**-24, "mixed_float16": 2.0**-11, "mixed_bfloat16": 2.0**-8}
ENCODER_OUTPUT_ROUNDINGS = 16 + 12
ENCODER_GRADIENT_ROUNDINGS = ENCODER_OUTPUT_ROUNDINGS + 16
# The decoder block: 26 weights (two attentions, the feed-forward network,
# three LayerNorms) and 20 activations (six per attention and its residual sum
# and LayerNorm output, four for the feed-forward sublayer).
DECODER_OUTPUT_ROUNDINGS = 26 + 20
EPSILON = 1e-6  # the blocks' default `layer_norm_epsilon`
PADDING = np.arange(6)[None] < np.array([[4], [6]])
# The gradients are those of `sum(outputs * LOSS_WEIGHTS)`.
LOSS_WEIGHTS = np.random.default_rng(1).standard_normal((2, 6, 16)).astype("float32")


def _rounded(values, policy):
    """`values` rounded to the 16-bit type, so both blocks see the same input."""
    compute_dtype = keras.DTypePolicy(policy).compute_dtype
    return keras.ops.convert_to_numpy(
        keras.ops.cast(keras.ops.cast(values, compute_dtype), "float32")
    )


def _norm(tensors):
    return np.sqrt(sum(float(np.sum(np.square(t))) for t in tensors))


def _relative_error(tensors, expected):
    """`|tensors - expected| / |expected|`, all tensors together (some weight
    gradients are zero in exact arithmetic, e.g. the key bias, so only their
    sum is relative)."""
    return _norm([t - e for t, e in zip(tensors, expected, strict=True)]) / _norm(expected)


def _outputs_and_gradients(block, inputs, call, jit_compile=False):
    """The float32 outputs, and the gradients of a weighted sum of them with
    respect to the inputs then the trainable variables (TensorFlow, JAX or
    PyTorch, which has no compiler here: `jit_compile` runs eagerly)."""
    weights = LOSS_WEIGHTS
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
    return block(inputs, mask=PADDING)


def _decoder_call(block, inputs, source):
    return block(
        inputs,
        source,
        decoder_inputs_mask=PADDING,
        encoder_outputs_mask=np.arange(7)[None] < np.array([[5], [7]]),
    )


def _exact_encoder(block, inputs):
    """The outputs and input gradient of `block` in exact arithmetic (float64).

    The outputs of the NumPy reference with the block's weights, and central
    differences of `sum(outputs * LOSS_WEIGHTS)` with a step of `1e-5` times
    the inputs' size (truncation and rounding errors both near 1e-10
    relative: the block is smooth on the scale of its LayerNorms' standard
    deviation, the inputs' size). Checks first that every attention row is
    saturated (see the module docstring).
    """
    params = layer_weights.block_params(block)
    inputs = inputs.astype("float64")
    attention_mask = PADDING[:, :, None] & PADDING[:, None, :]
    for example, mask in zip(inputs, attention_mask, strict=True):
        weights = numpy_reference.multi_head_attention(
            example, example, params["self_attention"], mask
        )[1]  # (heads, query_len, key_len)
        second = np.sort(weights, axis=-1)[..., -2]
        assert (second < 2.0**-149).all(), "an attention row is not saturated"

    def loss(index, example):
        outputs = numpy_reference.encoder_block(example, params, PADDING[index], EPSILON)
        return float(np.sum(outputs * LOSS_WEIGHTS[index]))

    outputs = np.stack(
        [
            numpy_reference.encoder_block(example, params, PADDING[index], EPSILON)
            for index, example in enumerate(inputs)
        ]
    )
    step = 1e-5 * np.abs(inputs).max()
    gradient = np.zeros_like(inputs)
    for index in np.ndindex(inputs.shape):
        shift = np.zeros_like(inputs[0])
        shift[index[1:]] = step
        example = inputs[index[0]]
        gradient[index] = (loss(index[0], example + shift) - loss(index[0], example - shift)) / (
            2 * step
        )
    return outputs, gradient


# The blocks start from the backend's initializers: JAX draws other weights,
# whose attention rows at inputs x100 are steep but not saturated, so the
# count of roundings (module docstring) does not bound their gradient there.
NOT_SATURATED_ON_JAX = pytest.mark.skipif(
    keras.config.backend() == "jax",
    reason="JAX's initial weights do not saturate the attention rows at x100",
)


@pytest.mark.parametrize(
    "scale", [pytest.param(1e2, marks=NOT_SATURATED_ON_JAX), 2e2, 1e3, 1e4]
)  # 2e2: the reported NaN
@pytest.mark.parametrize("policy", ["float32", "mixed_float16", "mixed_bfloat16"])
def test_encoder_block_at_large_inputs_is_finite_and_close_to_exact(policy, scale):
    u = UNIT_ROUNDOFF[policy]
    rng = np.random.default_rng(0)
    inputs = (_rounded(rng.standard_normal((2, 6, 16)) * scale, policy),)
    reference, block = _block_pair(ktl.TransformerEncoderBlock, policy, inputs, _encoder_call)
    exact_outputs, exact_gradient = _exact_encoder(reference, inputs[0])
    outputs, gradients = _outputs_and_gradients(block, inputs, _encoder_call)
    assert np.isfinite(outputs).all()
    assert all(np.isfinite(g).all() for g in gradients)
    assert _relative_error([outputs], [exact_outputs]) <= ENCODER_OUTPUT_ROUNDINGS * u
    assert _relative_error(gradients[:1], [exact_gradient]) <= ENCODER_GRADIENT_ROUNDINGS * u
    if policy != "float32":
        _, expected_gradients = _outputs_and_gradients(reference, inputs, _encoder_call)
        assert (
            _relative_error(gradients[1:], expected_gradients[1:]) <= ENCODER_GRADIENT_ROUNDINGS * u
        )


@pytest.mark.skipif(keras.config.backend() != "tensorflow", reason="TensorFlow's kernels")
def test_encoder_block_at_large_inputs_on_tensorflow_eigen_kernels():
    # The test above at 1e4 with oneDNN off, in a new process (the variable
    # is read when TensorFlow is imported): TensorFlow turns oneDNN on by
    # default on some x86 CPUs only, and runs its Eigen kernels elsewhere.
    # Eigen's softmax gives 1 - 2**-24 for a saturated row, and the standard
    # softmax gradient then made the attention's input gradient 10.7x the
    # exact one in every dtype.
    env = {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_")}
    env["TF_ENABLE_ONEDNN_OPTS"] = "0"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__]
        + ["-k", "close_to_exact and 10000"],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "3 passed" in result.stdout


def test_encoder_block_at_large_inputs_under_xla():
    policy = "mixed_float16"  # bfloat16 has the float32 range
    u = UNIT_ROUNDOFF[policy]
    inputs = (_rounded(np.random.default_rng(0).standard_normal((2, 6, 16)) * 1e4, policy),)
    reference, mixed = _block_pair(ktl.TransformerEncoderBlock, policy, inputs, _encoder_call)
    expected, _ = _outputs_and_gradients(reference, inputs, _encoder_call)
    outputs, gradients = _outputs_and_gradients(mixed, inputs, _encoder_call, jit_compile=True)
    assert all(np.isfinite(g).all() for g in gradients)
    assert _relative_error([outputs], [expected]) <= ENCODER_OUTPUT_ROUNDINGS * u


@pytest.mark.parametrize("scale", [1e2, 1e3, 1e4])
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_decoder_block_at_large_inputs_is_finite_and_close_to_float32(policy, scale):
    # Self- and cross-attention. The gradients are finite but not compared:
    # cross-attention logits grow like the source (not its square), so near
    # x100 the softmax is steep but not saturated, and the 16-bit rounding of
    # the keys alone moves the float32 gradients by up to ~180u.
    u = UNIT_ROUNDOFF[policy]
    rng = np.random.default_rng(0)
    inputs = tuple(
        _rounded(rng.standard_normal(shape) * scale, policy) for shape in ((2, 6, 16), (2, 7, 16))
    )
    reference, mixed = _block_pair(ktl.TransformerDecoderBlock, policy, inputs, _decoder_call)
    expected, _ = _outputs_and_gradients(reference, inputs, _decoder_call)
    outputs, gradients = _outputs_and_gradients(mixed, inputs, _decoder_call)
    assert all(np.isfinite(g).all() for g in gradients)
    assert _relative_error([outputs], [expected]) <= DECODER_OUTPUT_ROUNDINGS * u


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
