"""Attention over a key/value cache: the computation of a decoding step.

`MultiHeadAttention` hands every call with a `cache` to `attend_with_cache`;
the decoder blocks, the decoder stack and the models' decoding interface all
reach it that way. It computes equation (1) of Vaswani et al. (2017) on the
attention layer's own weights (read here, never copied), with the kernels
that make a step fast:

- the projections as plain 2-D matrix products of the same kernels, viewed
  as `(dim, heads * size)` and `(heads * value_dim, dim)`; a self-attention
  step (`query`, `value` and `key` the same tensor) computes its query, key
  and value in one product. At one token per row these are plain
  matrix-vector products, which TensorFlow runs faster than `EinsumDense`
  on the 3-D kernels, with and without XLA (docs/results.md); quantized
  projections keep their own call;
- on TensorFlow, one query position (the usual step) as elementwise products
  and sums over the cached keys and values in their stored layout, which XLA
  fuses with the mask and the cache write, reading each cached tensor once;
  other backends, longer queries and calls that need the weights use the
  layer's `_compute_attention` (Keras' documented hook for attention on
  projected heads).

The masking rule is `masks.masked_softmax` in both forms.

The cache records which positions were padding, so that every later step
masks them as a full forward pass masks padding: a padded position's keys
are written as NaN and its values as zeros, and a step masks the positions
whose keys are NaN (a NaN activation at a real position, itself bad input,
is masked the same way). The cache stays one tensor per attention layer.

The module also holds the guards of the decoding state: `check_cache_index`
(the positions written must fit in the cache) and `fail_closed` (what a
failed check does where values are not known).
"""

import math

import keras
from keras import ops

from keras_transformer_layers import _validation
from keras_transformer_layers.layers import masks


def check_cache_index(name, index, new_len, cache_len):
    """Checks that positions `index` to `index + new_len - 1` lie in the cache.

    A cache write past the cache would be clamped by the backend and
    overwrite its last slots, so a bad index is refused wherever it is
    known: Python ints and eager tensors raise here (with the static lengths).

    Args:
        name: the argument's name, for the message.
        index: int or scalar int tensor, the first new position.
        new_len: int or scalar int tensor, the number of new positions.
        cache_len: int or scalar int tensor, the number of cache positions.

    Returns:
        `None` when the check ran in Python, else a scalar bool tensor, True
        when the positions fit, for `fail_closed`.

    Raises:
        ValueError: for a known index outside `[0, cache_len - new_len]`.
    """
    value = index if isinstance(index, int) else _validation.concrete_value(index)
    lengths_known = isinstance(new_len, int) and isinstance(cache_len, int)
    if value is not None and (value < 0 or (lengths_known and value + new_len > cache_len)):
        raise ValueError(
            f"`{name}` must be non-negative, and `{name}` plus the number of new "
            "positions at most the cache length. Received: "
            f"{name}={int(value)}, with {new_len} new positions and {cache_len} cache "
            "positions"
        )
    if value is not None and lengths_known:
        return None
    index = ops.cast(index, "int32")
    return ops.logical_and(index >= 0, index + new_len <= cache_len)


def fail_closed(value, ok):
    """`value`, made to fail when `ok` (a scalar bool tensor from a check) is False.

    Where a check could not run in Python (in a graph, under XLA, in an
    export) its result decides the value instead: `value` is read through a
    lookup in a one-row table at row `1 - ok`, which fails when the graph
    runs on CPU and in TFLite (both refuse out-of-range gathers). XLA clamps
    the lookup, so there a float `value` also becomes NaN where `ok` is
    False. `ok=None` (the check ran in Python) returns `value` unchanged.

    Args:
        value: int or float tensor that depends on the check (an index to
            guard what is computed from it, an output to show the failure).
        ok: `None` or a scalar bool tensor.

    Returns:
        A tensor like `value`.
    """
    if ok is None:
        return value
    value = ops.convert_to_tensor(value)
    row = ops.where(ok, 0, 1)  # int32: 1 (past the table) when the check failed
    guard = ops.take(ops.zeros((1,), value.dtype), row)  # 0, or a failing lookup
    if keras.backend.is_float_dtype(keras.backend.standardize_dtype(value.dtype)):
        # A scalar select (broadcasting one does not convert to TFLite).
        guard = guard + ops.cast(ops.where(ok, 0.0, float("nan")), value.dtype)
    return value + guard


def attend_with_cache(
    attention,
    query,
    value,
    key,
    mask,
    cache,
    cache_update_index,
    new_key_mask,
    return_attention_scores,
    training,
):
    """`MultiHeadAttention.call` with a cache, after the masks (see the module docstring).

    Args:
        attention: the built `MultiHeadAttention` layer (rank-3 inputs).
        query: tensor `(batch, query_len, dim)`.
        value: tensor `(batch, new_len, dim)`, the new positions (ignored
            with a precomputed cache).
        key: tensor like `value`.
        mask: `None` or a boolean tensor broadcastable to
            `(batch, heads, query_len, max_length)`, of rank 4.
        cache: tensor `(batch, 2, max_length, heads, key_dim)`.
        cache_update_index: `None` (precomputed keys and values) or the
            checked int32 position of the first new key.
        new_key_mask: `None` or a boolean tensor broadcastable to
            `(batch, new_len)`, False at the new positions that are padding.
        return_attention_scores: bool.
        training: bool or `None`.

    Returns:
        `(output, scores, cache)`: the output `(batch, query_len, ...)`, the
        weights `(batch, heads, query_len, max_length)` or `None`, and the
        cache, updated when `cache_update_index` is given.
    """
    if cache_update_index is None:
        (projected_query,) = _project(attention, query, (attention.query_dense,))
    else:
        if query is value and key is value:
            projections = (attention.query_dense, attention.key_dense, attention.value_dense)
            projected_query, new_key, new_value = _project(attention, query, projections)
        else:
            (projected_query,) = _project(attention, query, (attention.query_dense,))
            (new_key,) = _project(attention, key, (attention.key_dense,))
            (new_value,) = _project(attention, value, (attention.value_dense,))
        if new_key_mask is not None:
            padding = ops.logical_not(ops.cast(new_key_mask, "bool"))[:, :, None, None]
            new_key = ops.where(padding, ops.cast(float("nan"), new_key.dtype), new_key)
            new_value = ops.where(padding, ops.zeros_like(new_value), new_value)
        new_key_value = ops.stack([new_key, new_value], axis=1)  # (batch, 2, new_len, h, d)
        cache = ops.slice_update(cache, (0, 0, cache_update_index, 0, 0), new_key_value)
        # Positions recorded as padding (NaN keys), from this call or earlier ones.
        recorded = ops.logical_not(ops.isnan(cache[:, 0, :, 0, 0]))  # (batch, max_length)
        mask = masks.merge_masks(mask, recorded[:, None, None, :])  # (batch, ., ., max_length)
    attended, scores = _attend(
        attention,
        projected_query,
        cache[:, 0],
        cache[:, 1],
        mask,
        return_attention_scores,
        training,
    )  # (batch, query_len, heads, value_dim)
    if attention.gate_dense is not None:
        attended = attended * attention.gate_dense(query)
    return _project_output(attention, attended), scores, cache


def _as_matrices(projection):
    """True when `projection(x)` is `x @ kernel + bias` on a float kernel (LoRA included)."""
    return projection.quantization_mode is None


def _project(attention, inputs, projections):
    """`[p(inputs) for p in projections]`, as one 2-D matrix product when all are float.

    Each `EinsumDense` here contracts the last axis of `inputs` with the
    first axis of its kernel `(dim, heads, size)`; the kernels, in Keras'
    layout, are viewed as `(dim, heads * size)` and concatenated. LoRA
    kernels are included (`kernel` is the adapted one).

    Args:
        attention: the `MultiHeadAttention` layer owning `projections`.
        inputs: tensor `(batch, seq_len, dim)`.
        projections: `EinsumDense` layers with kernels `(dim, heads, size)`.

    Returns:
        A list of tensors `(batch, seq_len, heads, size)`, one per projection.
    """
    if not all(_as_matrices(projection) for projection in projections):
        return [projection(inputs) for projection in projections]
    batch, seq_len = ops.shape(inputs)[0], ops.shape(inputs)[1]
    dim = inputs.shape[-1]
    widths = [math.prod(projection.kernel.shape[1:]) for projection in projections]
    kernel = ops.concatenate(
        [
            ops.cast(ops.reshape(projection.kernel, (dim, width)), inputs.dtype)
            for projection, width in zip(projections, widths, strict=True)
        ],
        axis=1,
    )  # (dim, sum of heads * size)
    outputs = ops.matmul(ops.reshape(inputs, (-1, dim)), kernel)  # (batch * seq_len, sum)
    if attention.use_bias:
        biases = [ops.reshape(projection.bias, (-1,)) for projection in projections]
        outputs = outputs + ops.cast(ops.concatenate(biases, axis=0), inputs.dtype)
    results, start = [], 0
    for projection, width in zip(projections, widths, strict=True):
        results.append(
            ops.reshape(
                outputs[:, start : start + width],
                (batch, seq_len) + tuple(projection.kernel.shape[1:]),
            )  # (batch, seq_len, heads, size)
        )
        start += width
    return results


def _project_output(attention, attended):
    """`output_dense(attended)` as one 2-D matrix product when its kernel is float.

    Args:
        attended: tensor `(batch, seq_len, heads, value_dim)`.

    Returns:
        A tensor `(batch, seq_len) + output_shape` (`output_shape` is the
        query's width unless the layer sets another).
    """
    projection = attention.output_dense
    if not _as_matrices(projection):
        return projection(attended)
    kernel = projection.kernel  # (heads, value_dim) + output_shape
    heads_width = kernel.shape[0] * kernel.shape[1]
    output_shape = tuple(kernel.shape[2:])
    batch, seq_len = ops.shape(attended)[0], ops.shape(attended)[1]
    outputs = ops.matmul(
        ops.reshape(attended, (-1, heads_width)),
        ops.cast(ops.reshape(kernel, (heads_width, -1)), attended.dtype),
    )  # (batch * seq_len, prod(output_shape))
    if attention.use_bias:
        outputs = outputs + ops.cast(ops.reshape(projection.bias, (-1,)), attended.dtype)
    return ops.reshape(outputs, (batch, seq_len) + output_shape)


def _attend(attention, query, key, value, mask, return_attention_scores, training):
    """Equation (1) on projected heads: `(attended, weights or None)`."""
    weights_unused = not return_attention_scores and not (training and attention.dropout > 0)
    if keras.config.backend() == "tensorflow" and query.shape[1] == 1 and weights_unused:
        return _one_query_attention(attention, query, key, value, mask), None
    return attention._compute_attention(query, key, value, mask, training, return_attention_scores)


def _one_query_attention(attention, query, key, value, mask):
    """Equation (1) for one query position, as elementwise products and sums.

    The logits and the weighted sum of the values are reductions over the
    cached keys and values in their `(batch, key_len, heads, size)` layout.
    The matrix-product form has `heads` as a batch axis, so it first copies
    the keys and values into a heads-major layout at every step: slower on
    TensorFlow (with and without XLA), faster under JAX's XLA, measured with
    benchmarks/decode.py (docs/results.md). The logits and the softmax are
    float32, as in the layer's own path.

    Args:
        attention: the `MultiHeadAttention` layer.
        query: tensor `(batch, 1, heads, key_dim)`.
        key: tensor `(batch, key_len, heads, key_dim)`.
        value: tensor `(batch, key_len, heads, value_dim)`.
        mask: `None` or a boolean tensor broadcastable to
            `(batch, heads, 1, key_len)`, of rank 4.

    Returns:
        A tensor `(batch, 1, heads, value_dim)` in the compute dtype.
    """
    query = ops.cast(query, "float32") * (1.0 / math.sqrt(attention.key_dim))
    scores = ops.sum(query * ops.cast(key, "float32"), axis=-1)  # (batch, key_len, heads)
    scores = ops.transpose(scores, (0, 2, 1))  # (batch, heads, key_len)
    if mask is not None:
        mask = mask[:, :, 0, :]  # (batch or 1, heads or 1, key_len)
    weights = masks.masked_softmax(scores, mask)
    weights = ops.transpose(ops.cast(weights, attention.compute_dtype), (0, 2, 1))  # (b, k, h)
    return ops.sum(
        ops.expand_dims(weights, -1) * value, axis=1, keepdims=True
    )  # (batch, 1, heads, value_dim)
