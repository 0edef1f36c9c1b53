"""Multi-head scaled dot-product attention (paper section 3.2)."""

import math

import keras
from keras import ops

from keras_transformer_layers import _validation
from keras_transformer_layers._quantization import dtype_config
from keras_transformer_layers.layers import masks

# Masked scores are filled before the float32 softmax. A fill near the lowest
# float32 value keeps every masked key below every real one, however large the
# logits (-1e9 did not: real logits can be lower); being finite, it keeps a row
# whose keys are all masked free of NaN. Such rows are zeroed afterwards.
_MASKED_SCORE = -3.0e38

# One query position (a decoding step) as elementwise products and sums (see
# `MultiHeadAttention._single_query_attention`): faster on TensorFlow's XLA
# and graphs, slower under JAX's XLA than the matrix-product form, measured
# with benchmarks/decode.py (docs/generation.md). The only backend switch of
# the layers.
_SINGLE_QUERY_AS_REDUCTIONS = keras.config.backend() == "tensorflow"


def attention_weights(query, key, mask=None):
    """`softmax(Q K^T / sqrt(d_k))` per head, with a boolean mask.

    The weights of equation (1) of Vaswani et al. (2017); the caller applies
    them to the values. The logits and the softmax are computed in float32
    under every dtype policy: a logit is a product of two activations, so in
    float16 it passes 65504 (and becomes inf, then NaN) once `|q|` and `|k|`
    reach a few hundred, far below the range of the activations themselves.
    The weights of masked keys are exactly zero, so a query row whose keys
    are all masked attends to nothing: its weights, and so its output, are
    zero.

    Args:
        query: tensor of shape `(batch, query_len, heads, key_dim)`.
        key: tensor of shape `(batch, key_len, heads, key_dim)`.
        mask: optional boolean tensor broadcastable to
            `(batch, heads, query_len, key_len)`, True where a query may
            attend.

    Returns:
        A float32 tensor of shape `(batch, heads, query_len, key_len)`.
    """
    # Scaling the query first keeps the products at the size of the logits.
    query = ops.cast(query, "float32") * (1.0 / math.sqrt(query.shape[-1]))
    scores = ops.einsum("bqhd,bkhd->bhqk", query, ops.cast(key, "float32"))  # (batch, heads, q, k)
    if mask is None:
        return ops.softmax(scores, axis=-1)
    weights = ops.softmax(ops.where(mask, scores, _MASKED_SCORE), axis=-1)
    return ops.where(mask, weights, 0.0)


@keras.saving.register_keras_serializable(package="keras_transformer_layers")
class MultiHeadAttention(keras.layers.MultiHeadAttention):
    """Multi-head attention, `Concat(head_1, ..., head_h) W^O` (section 3.2.2).

    Each head computes scaled dot-product attention (equation 1),
    `softmax(Q K^T / sqrt(d_k)) V`, on its own projections
    `Q W_i^Q, K W_i^K, V W_i^V`. Dividing by `sqrt(key_dim)` keeps the dot
    products at unit variance, so the softmax does not saturate as `key_dim`
    grows (footnote 4 of the paper).

    A subclass of `keras.layers.MultiHeadAttention`: its `query`, `key`,
    `value` and `attention_output` projections (`query_dense`, `key_dense`,
    `value_dense`, `output_dense`) are Keras' own `EinsumDense` layers with
    kernels of shape `(dim, num_heads, key_dim)` and
    `(num_heads, value_dim, dim)`, so weights move between the two with
    `get_weights()` / `set_weights()`, and what Keras gives its layer works
    here too: `quantize("int8")` (on the layer or on a model holding it),
    LoRA (`enable_lora`), and kernel/bias regularizers and constraints. This
    subclass adds the masking guarantees below, the decoding caches, and
    input checks; it supports rank-3 inputs `(batch, seq_len, dim)` only
    (no `attention_axes`, `output_shape`, `use_gate` or `sliding_window`).
    Unlike Keras' own layer, a quantized one reloads from `.keras`: its
    config records the projections' int8 policies in a
    `keras.dtype_policies.DTypePolicyMap`, so they are rebuilt quantized
    (the layers and models of this package all do this).

    Decoding steps (calls with a `cache`) compute the projections of
    unquantized layers as plain 2-D matrix products on the same kernels,
    viewed as `(dim, heads * key_dim)` and `(heads * value_dim, dim)`; a
    cached self-attention step (`query`, `value` and `key` the same tensor)
    computes its query, key and value in one product. At one token per row
    that is several times faster than the `EinsumDense` calls on
    TensorFlow's CPU backend, with and without XLA (see docs/generation.md);
    the results agree with those calls up to float rounding, the weights and
    saved files do not change, and quantized projections keep their own call.

    Without dropout in effect and without `return_attention_scores`, on the
    TensorFlow backend, a call with one query position (a decoding step)
    computes equation (1) as
    elementwise products and sums over the keys and values in their stored
    layout, with the same float32 softmax and masking (see
    `_single_query_attention`); longer queries in a float32 compute dtype,
    with `value_dim == key_dim`, use the fused
    `keras.ops.dot_product_attention`, which is then provably the same
    computation (see `_compute_attention`); otherwise the explicit float32
    softmax below runs.

    Masks: booleans, True = attend. The Keras masks of `query`, `value` and
    `key` (from `Embedding(mask_zero=True)`) are combined with
    `attention_mask` and, with `use_causal_mask=True`, the causal mask. The
    softmax runs in float32 under every dtype policy, and a query row whose
    keys are all masked gets all-zero weights: its attention output is zero
    before the output projection (so the layer returns the output bias), in
    every dtype, with or without dropout, and without NaN. The logits
    `Q K^T / sqrt(key_dim)` are computed in float32 too, so they cannot
    overflow under `mixed_float16`.

    Args:
        num_heads: positive int, `h` in the paper.
        key_dim: positive int, size of each head for query and key, `d_k`.
        value_dim: positive int, size of each head for value, `d_v`.
            Defaults to `None`, which means `key_dim` (as in Keras, the
            `value_dim` attribute and config then hold `key_dim`).
        dropout: float in `[0, 1)`, dropout on the attention weights.
            Defaults to `0.0`.
        use_bias: bool, whether the projections have biases. Defaults to `True`.
        kernel_initializer: initializer of the projection kernels. Defaults to
            `"glorot_uniform"`.
        bias_initializer: initializer of the biases. Defaults to `"zeros"`.
        kernel_regularizer: optional regularizer of the four projection
            kernels (its loss is in `layer.losses`). Defaults to `None`.
        bias_regularizer: optional regularizer of the biases. Defaults to
            `None`.
        activity_regularizer: optional regularizer of the projections'
            outputs. Defaults to `None`.
        kernel_constraint: optional constraint the optimizer applies to the
            projection kernels after each update. Defaults to `None`.
        bias_constraint: optional constraint of the biases. Defaults to
            `None`.
        seed: optional int, seed of the attention dropout. Defaults to `None`.
        **kwargs: base layer arguments such as `name` and `dtype`.

    Call arguments:
        query: tensor of shape `(batch, query_len, query_dim)`.
        value: tensor of shape `(batch, key_len, value_dim_in)`.
        key: optional tensor of shape `(batch, key_len, key_dim_in)`; defaults
            to `value`.
        query_mask: optional boolean padding mask `(batch, query_len)`, True
            for real tokens; Keras fills it from the mask of `query`.
        value_mask: optional boolean padding mask `(batch, key_len)`; Keras
            fills it from the mask of `value`. With a cache and
            `cache_update_index`, it covers the new positions only.
        key_mask: optional boolean padding mask `(batch, key_len)`, like
            `value_mask`. In each padding mask any dimension may be 1.
        attention_mask: optional boolean tensor, True where a query may
            attend, of shape `(batch, query_len, key_len)`, or any shape
            `keras.layers.MultiHeadAttention` accepts:
            `(query_len, key_len)`, `(batch, query_len, key_len)` or
            `(batch, num_heads, query_len, key_len)`, where any dimension may
            be 1, e.g. `(batch, 1, key_len)` or `(1, key_len)`. With a
            `cache`, `key_len` is the cache length. It is combined (logical
            AND) with the padding and causal masks.
        return_attention_scores: bool, also return the attention weights.
            Defaults to `False`.
        training: bool, enables dropout.
        use_causal_mask: bool, forbid query `i` from attending keys `j > i`
            (decoder self-attention, section 3.2.3). With a cache, query `i`
            sits at position `cache_update_index + i`. Defaults to `False`.
        cache: optional tensor of shape
            `(batch, 2, max_length, num_heads, key_dim)`: keys (index 0) and
            values (index 1) after projection, for incremental decoding (needs
            `value_dim == key_dim`). With `cache_update_index`, the projected
            `key`/`value` of the new positions are written into the cache at
            that index and the query attends to cache positions
            `< cache_update_index + query_len` (padding masks of `key`/`value`
            apply to the new positions only). Without `cache_update_index`, the
            cache holds precomputed keys and values (see `compute_cache`; used
            for cross-attention) and `key`/`value` are not projected; their
            Keras masks (or `value_mask`) still mask the keys. Defaults to
            `None`.
        cache_update_index: optional int or scalar int tensor, the position of
            the first query in the cache. Defaults to `None`.

    Returns:
        A tensor of shape `(batch, query_len, query_dim)`, or with
        `return_attention_scores=True` a tuple `(output, scores)` where scores
        has shape `(batch, num_heads, query_len, key_len)` (weights before
        dropout), in eager and functional calls alike. With a `cache`, the
        (updated) cache is appended: `(output, cache)` or
        `(output, scores, cache)`.

    Raises:
        ValueError: at construction, for a setting out of range or of the
            wrong type. At call (or trace) time, if `query`, `value` or `key`
            is not a float tensor of the width the layer was built with, or
            if `attention_mask` or a padding mask has a statically known
            shape other than those above (wrong rank, or a dimension that is
            neither 1 nor its size).

    Example:

    >>> layer = keras_transformer_layers.MultiHeadAttention(num_heads=2, key_dim=4)
    >>> x = np.ones((1, 3, 8), "float32")
    >>> output, scores = layer(x, x, return_attention_scores=True)
    >>> tuple(output.shape), tuple(scores.shape)
    ((1, 3, 8), (1, 2, 3, 3))

    Reference:
        Vaswani et al., "Attention Is All You Need", 2017, section 3.2.
    """

    def __init__(
        self,
        num_heads,
        key_dim,
        value_dim=None,
        dropout=0.0,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        seed=None,
        **kwargs,
    ):
        _validation.check_positive_int("num_heads", num_heads)
        _validation.check_positive_int("key_dim", key_dim)
        _validation.check_optional_positive_int("value_dim", value_dim)
        _validation.check_rate("dropout", dropout)
        _validation.check_bool("use_bias", use_bias)
        super().__init__(
            num_heads=num_heads,
            key_dim=key_dim,
            value_dim=value_dim,
            dropout=dropout,
            use_bias=use_bias,
            kernel_initializer=_validation.get_initializer(
                "kernel_initializer", kernel_initializer
            ),
            bias_initializer=_validation.get_initializer("bias_initializer", bias_initializer),
            kernel_regularizer=_validation.get_regularizer(
                "kernel_regularizer", kernel_regularizer
            ),
            bias_regularizer=_validation.get_regularizer("bias_regularizer", bias_regularizer),
            activity_regularizer=_validation.get_regularizer(
                "activity_regularizer", activity_regularizer
            ),
            kernel_constraint=_validation.get_constraint("kernel_constraint", kernel_constraint),
            bias_constraint=_validation.get_constraint("bias_constraint", bias_constraint),
            seed=seed,
            **kwargs,
        )

    def build(self, query_shape, value_shape, key_shape=None):
        _validation.check_rank("query", query_shape, 3, "(batch, seq_len, dim)")
        _validation.check_rank("value", value_shape, 3, "(batch, seq_len, dim)")
        key_shape = value_shape if key_shape is None else key_shape
        _validation.check_rank("key", key_shape, 3, "(batch, seq_len, dim)")
        super().build(query_shape, value_shape, key_shape)
        for projection in self._projections():
            # The padding masks are consumed by this layer; the projections
            # only carry them along instead of warning that they drop them.
            projection.supports_masking = True
        self._input_dims = {
            "query": query_shape[-1],
            "value": value_shape[-1],
            "key": key_shape[-1],
        }

    def _projections(self):
        return (self.query_dense, self.key_dense, self.value_dense, self.output_dense)

    @property
    def dropout_layer(self):
        """The dropout on the attention weights (saved under this name)."""
        return self._dropout_layer

    def _check_inputs(self, query, value, key):
        """Float inputs of the widths the projections were built with.

        Static shapes only, so the check also runs when a graph is traced
        and when a functional model is built; it replaces a raw reshape error
        (another width) or a silent integer input.
        """
        for name, tensor in (("query", query), ("value", value), ("key", key)):
            if tensor is not None:  # a precomputed cache may stand for them
                _validation.check_features(name, tensor, self._input_dims[name])

    def _check_attention_mask(self, attention_mask, query, key):
        """Checks the mask against the shapes `keras.layers.MultiHeadAttention` accepts.

        Keras inserts the missing axes before `query_len`: a rank-2 mask is
        `(query_len, key_len)`, rank 3 `(batch, query_len, key_len)`, rank 4
        `(batch, num_heads, query_len, key_len)`; each dimension is 1 or the
        full size, so the mask broadcasts to the scores.
        """
        batch, query_len, key_len = query.shape[0], query.shape[1], key.shape[1]
        expected = {
            2: (query_len, key_len),
            3: (batch, query_len, key_len),
            4: (batch, self.num_heads, query_len, key_len),
        }
        shape = tuple(attention_mask.shape)
        matches = len(shape) in expected and all(
            got is None or want is None or got in (1, want)
            for got, want in zip(shape, expected[len(shape)], strict=True)
        )
        if not matches:
            raise ValueError(
                "`attention_mask` must have shape (query_len, key_len), "
                "(batch, query_len, key_len) or "
                "(batch, num_heads, query_len, key_len) = "
                f"{expected[4]}, where any dimension may be 1. "
                f"Received: attention_mask.shape={shape}"
            )

    def call(
        self,
        query,
        value,
        key=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        return_attention_scores=False,
        training=None,
        use_causal_mask=False,
        cache=None,
        cache_update_index=None,
    ):
        key = value if key is None else key
        self._check_inputs(query, value, key)
        self._check_padding_masks(
            query, value, key, query_mask, value_mask, key_mask, cache, cache_update_index
        )
        query_len = ops.shape(query)[1]
        decoding = cache is not None and self._plain_projections()
        projected_query = None
        if cache is None:
            projected_key = self.key_dense(key)  # (batch, key_len, heads, key_dim)
            projected_value = self.value_dense(value)  # (batch, key_len, heads, value_dim)
            mask = self._padding_mask(query_mask, value_mask, key_mask)
            key_len, query_start = ops.shape(projected_key)[1], 0
        elif cache_update_index is None:
            # Precomputed keys and values (cross-attention while decoding).
            self._check_cache(cache)
            projected_key, projected_value = cache[:, 0], cache[:, 1]
            mask = self._padding_mask(query_mask, value_mask, key_mask)
            key_len, query_start = ops.shape(cache)[2], 0
        else:
            self._check_cache(cache)
            # Write the new keys and values at `cache_update_index`, then attend
            # over the whole fixed-size cache, masking positions not yet written.
            if decoding and query is value and key is value:
                projected_query, new_key, new_value = self._fused_projections(
                    (self.query_dense, self.key_dense, self.value_dense), query
                )
            elif decoding:
                new_key = self._project(self.key_dense, key)
                new_value = self._project(self.value_dense, value)
            else:
                new_key, new_value = self.key_dense(key), self.value_dense(value)
            new_key_value = ops.stack(
                [new_key, new_value], axis=1
            )  # (batch, 2, new_len, heads, key_dim)
            cache = ops.slice_update(
                cache, (0, 0, cache_update_index, 0, 0), new_key_value
            )  # (batch, 2, max_length, heads, key_dim)
            projected_key, projected_value = cache[:, 0], cache[:, 1]
            key_len, query_start = ops.shape(cache)[2], cache_update_index
            mask = self._padding_mask(
                query_mask,
                self._cached_key_mask(value_mask, value, key_len, cache_update_index),
                self._cached_key_mask(key_mask, key, key_len, cache_update_index),
            )
            if not use_causal_mask:  # the causal mask below covers this
                written = ops.arange(key_len) < cache_update_index + query_len
                mask = masks.merge_masks(mask, written[None, None, :])  # (., ., max_length)
        if use_causal_mask:
            # Query i sits at absolute position query_start + i.
            causal = masks.causal_mask(query_len, key_len, query_start)
            mask = masks.merge_masks(mask, causal)  # (batch, query_len, key_len)
        if projected_query is None:
            projected_query = (
                self._project(self.query_dense, query) if decoding else self.query_dense(query)
            )  # (batch, query_len, heads, key_dim)
        return self._attend(
            projected_query,
            projected_key,
            projected_value,
            mask,
            attention_mask,
            return_attention_scores,
            training,
            cache,
            decoding,
        )

    def _plain_projections(self):
        """True when every projection is `inputs @ kernel + bias` on a float kernel.

        Then decoding steps (calls with a `cache`) compute the projections as
        plain 2-D matrix products on the same kernels, reshaped (see
        `_fused_projections`); a quantized projection keeps its own call.
        """
        return all(projection.quantization_mode is None for projection in self._projections())

    def _fused_projections(self, projections, inputs):
        """`[p(inputs) for p in projections]` as one matrix product.

        Each `EinsumDense` here contracts the last axis of `inputs` with the
        first axis of its kernel `(dim, heads, size)`. Their kernels, in
        Keras' layout, are viewed as `(dim, heads * size)` and concatenated,
        so a decoding step reads them in one product instead of one einsum
        each: at batch 1 the einsums cost several times the product on
        TensorFlow with XLA, and each einsum several times a 2-D product
        without it (see docs/generation.md,
        "Where a step spends its time"). LoRA kernels are included (`kernel`
        is the adapted one).

        Args:
            projections: `EinsumDense` layers of this layer, each with a
                kernel `(dim, heads, size)`.
            inputs: tensor `(batch, seq_len, dim)`.

        Returns:
            A list of tensors `(batch, seq_len, heads, size)`, one per
            projection.
        """
        batch, seq_len = ops.shape(inputs)[0], ops.shape(inputs)[1]
        widths = [math.prod(projection.kernel.shape[1:]) for projection in projections]
        kernel = ops.concatenate(
            [
                ops.cast(ops.reshape(projection.kernel, (inputs.shape[-1], width)), inputs.dtype)
                for projection, width in zip(projections, widths, strict=True)
            ],
            axis=1,
        )  # (dim, sum of heads * size)
        outputs = ops.matmul(
            ops.reshape(inputs, (-1, inputs.shape[-1])), kernel
        )  # (batch * seq_len, sum of heads * size)
        if self.use_bias:
            outputs = outputs + ops.cast(
                ops.concatenate(
                    [ops.reshape(projection.bias, (-1,)) for projection in projections], axis=0
                ),
                inputs.dtype,
            )
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

    def _project(self, projection, inputs):
        """`projection(inputs)` as one matrix product (see `_fused_projections`)."""
        return self._fused_projections((projection,), inputs)[0]

    def _project_output(self, attended):
        """`output_dense(attended)` as one matrix product, its kernel viewed as 2-D.

        Args:
            attended: tensor `(batch, seq_len, heads, value_dim)`.

        Returns:
            A tensor `(batch, seq_len, dim)`.
        """
        kernel = self.output_dense.kernel  # (heads, value_dim, dim)
        batch, seq_len = ops.shape(attended)[0], ops.shape(attended)[1]
        heads_width, dim = kernel.shape[0] * kernel.shape[1], kernel.shape[2]
        outputs = ops.matmul(
            ops.reshape(attended, (-1, heads_width)),
            ops.cast(ops.reshape(kernel, (heads_width, dim)), attended.dtype),
        )  # (batch * seq_len, dim)
        if self.use_bias:
            outputs = outputs + ops.cast(self.output_dense.bias, attended.dtype)
        return ops.reshape(outputs, (batch, seq_len, dim))

    def _padding_mask(self, query_mask, value_mask, key_mask):
        return masks.merge_masks(
            masks.attention_mask_from_padding(query_mask, value_mask),
            masks.attention_mask_from_padding(None, key_mask),
        )  # broadcastable to (batch, query_len, key_len), or None

    def _check_padding_masks(
        self, query, value, key, query_mask, value_mask, key_mask, cache, cache_update_index
    ):
        """Padding masks are `(batch, seq_len)`, any dimension 1, as in Keras MHA."""
        precomputed = cache is not None and cache_update_index is None
        for name, mask, seq_len in (
            ("query_mask", query_mask, query.shape[1]),
            ("value_mask", value_mask, cache.shape[2] if precomputed else value.shape[1]),
            ("key_mask", key_mask, cache.shape[2] if precomputed else key.shape[1]),
        ):
            if mask is None:
                continue
            expected = (query.shape[0], seq_len)
            shape = tuple(mask.shape)
            if len(shape) != 2 or not all(
                got is None or want is None or got in (1, want)
                for got, want in zip(shape, expected, strict=True)
            ):
                raise ValueError(
                    f"`{name}` must have shape (batch, seq_len) = {expected}, "
                    f"where any dimension may be 1. Received: {name}.shape={shape}"
                )

    def _cached_key_mask(self, new_mask, new_keys, cache_len, cache_update_index):
        """Padding mask of the new keys placed at their cache positions.

        The cache holds projections only, so positions written by earlier
        steps count as real tokens; the new keys keep their own padding mask.
        """
        if new_mask is None:
            return None
        batch = ops.shape(new_mask)[0]
        new_mask = ops.broadcast_to(
            ops.cast(new_mask, "bool"), (batch, ops.shape(new_keys)[1])
        )  # (batch or 1, new_len)
        full = ops.ones((batch, cache_len), "bool")
        return ops.slice_update(full, (0, cache_update_index), new_mask)  # (., max_length)

    def _check_cache(self, cache):
        if len(cache.shape) != 5 or self.value_dim != self.key_dim:
            raise ValueError(
                "`cache` must have shape (batch, 2, max_length, num_heads, key_dim) "
                "and needs `value_dim == key_dim`. Received: "
                f"cache.shape={tuple(cache.shape)}, key_dim={self.key_dim}, "
                f"value_dim={self.value_dim}"
            )

    def _attend(
        self,
        query,
        key,
        value,
        mask,
        attention_mask,
        return_attention_scores,
        training,
        cache,
        decoding=False,
    ):
        """Equation (1) on projected heads, then the output projection.

        `decoding`: compute the output projection as a 2-D matrix product
        (see `_plain_projections`).
        """
        if mask is not None:
            mask = ops.expand_dims(mask, 1)  # (batch, 1, query_len, key_len)
        if attention_mask is not None:
            self._check_attention_mask(attention_mask, query, key)
            # As Keras does: missing leading axes go before query_len.
            for _ in range(4 - len(attention_mask.shape)):
                attention_mask = ops.expand_dims(attention_mask, -3)
            mask = masks.merge_masks(mask, attention_mask)  # (batch, heads, q, k)
        attended, weights = self._compute_attention(
            query, key, value, mask, training, return_attention_scores
        )  # (batch, query_len, heads, value_dim), (batch, heads, q, k) or None
        if decoding:
            output = self._project_output(attended)  # (batch, query_len, query_dim)
        else:
            output = self.output_dense(attended)  # (batch, query_len, query_dim)
        outputs = (output, weights) if return_attention_scores else (output,)
        if cache is not None:
            outputs += (cache,)
        return outputs if len(outputs) > 1 else output

    def _compute_attention(
        self,
        query,
        key,
        value,
        attention_mask=None,
        training=None,
        return_attention_scores=False,
    ):
        """Equation (1) on projected heads: the Keras hook, with our masking.

        `attention_mask` is the combined boolean mask, broadcastable to
        `(batch, heads, query_len, key_len)`, or `None`. Returns the attended
        values `(batch, query_len, heads, value_dim)` and the weights
        `(batch, heads, query_len, key_len)` before dropout, or `None` for
        them when the fused kernel ran.

        On TensorFlow, one query position without dropout or weights
        requested goes to `_single_query_attention`. Otherwise the fused
        `ops.dot_product_attention` runs only where it provably
        computes the same thing: in a float32 compute dtype (its logits and
        softmax are then float32, as here; under `mixed_float16` its logits
        would be float16 and could overflow), with `value_dim == key_dim`
        (JAX's kernel needs it), no dropout in effect (it has none) and no
        weights requested (it returns none). A masked key
        gets a fill near `-0.7 * float32 max` there instead of `-3e38` here:
        both give it exactly zero weight whenever the row has a real key. The
        kernels disagree on rows whose keys are all masked (uniform weights,
        or NaN on PyTorch), so those rows are let attend to every key, which
        is finite everywhere, and their output is then set to zero, as here.
        The flash kernels are never used: they need 16-bit inputs.
        """
        weights_unused = not return_attention_scores and not (training and self.dropout > 0.0)
        if weights_unused and _SINGLE_QUERY_AS_REDUCTIONS and query.shape[1] == 1:
            return self._single_query_attention(query, key, value, attention_mask), None
        fused = (
            weights_unused and self.compute_dtype == "float32" and self.value_dim == self.key_dim
        )
        if fused:
            return self._fused_attention(query, key, value, attention_mask), None
        weights = attention_weights(query, key, attention_mask)
        weights = ops.cast(weights, self.compute_dtype)  # (batch, heads, q, k)
        attended = ops.einsum(
            "bhqk,bkhd->bqhd",
            self.dropout_layer(weights, training=training),
            value,
        )  # (batch, query_len, heads, value_dim)
        return attended, weights

    def _single_query_attention(self, query, key, value, mask):
        """Equation (1) for one query position, as elementwise products and sums.

        A decoding step has one query per row. Its logits and its weighted sum
        of the values are then reductions over the cached keys and values in
        their `(batch, key_len, heads, size)` layout, which XLA fuses with
        the mask and the cache write, reading each cached tensor once. The
        matrix-product form (`ops.dot_product_attention` or the einsums
        below) has `heads` as a batch axis, so it first copies the keys and
        values into a heads-major layout at every step. The logits and the
        softmax are float32 and masked keys get exactly zero weight, as in
        `attention_weights`; a row whose keys are all masked gets a zero
        output.

        Args:
            query: tensor `(batch, 1, heads, key_dim)`.
            key: tensor `(batch, key_len, heads, key_dim)`.
            value: tensor `(batch, key_len, heads, value_dim)`.
            mask: optional boolean tensor broadcastable to
                `(batch, heads, 1, key_len)`.

        Returns:
            A tensor `(batch, 1, heads, value_dim)` in the compute dtype.
        """
        query = ops.cast(query, "float32") * (1.0 / math.sqrt(self.key_dim))
        scores = ops.sum(query * ops.cast(key, "float32"), axis=-1)  # (batch, key_len, heads)
        scores = ops.transpose(scores, (0, 2, 1))  # (batch, heads, key_len)
        if mask is None:
            weights = ops.softmax(scores, axis=-1)
        else:
            mask = ops.broadcast_to(
                mask, (ops.shape(key)[0], self.num_heads, 1, ops.shape(key)[1])
            )[:, :, 0]  # (batch, heads, key_len)
            weights = ops.softmax(ops.where(mask, scores, _MASKED_SCORE), axis=-1)
            weights = ops.where(mask, weights, 0.0)
        weights = ops.transpose(ops.cast(weights, self.compute_dtype), (0, 2, 1))  # (b, k, h)
        return ops.sum(
            ops.expand_dims(weights, -1) * value, axis=1, keepdims=True
        )  # (batch, 1, heads, value_dim)

    def _fused_attention(self, query, key, value, mask):
        """`ops.dot_product_attention`, with all-zero rows for fully masked queries."""
        scale = 1.0 / math.sqrt(self.key_dim)
        if mask is None:
            return ops.dot_product_attention(
                query, key, value, scale=scale, flash_attention=False
            )  # (batch, query_len, heads, value_dim)
        mask = ops.broadcast_to(
            mask,
            (ops.shape(query)[0], self.num_heads, ops.shape(query)[1], ops.shape(key)[1]),
        )  # (batch, heads, q, k)
        has_key = ops.any(mask, axis=-1, keepdims=True)  # (batch, heads, q, 1)
        attended = ops.dot_product_attention(
            query,
            key,
            value,
            mask=ops.logical_or(mask, ops.logical_not(has_key)),
            scale=scale,
            flash_attention=False,
        )  # (batch, query_len, heads, value_dim)
        has_key = ops.transpose(has_key, (0, 2, 1, 3))  # (batch, q, heads, 1)
        return ops.where(has_key, attended, ops.zeros_like(attended))

    def compute_cache(self, value, key=None):
        """Projects keys and values once, for `call(..., cache=...)` without an index.

        Cross-attention over a fixed encoder output computes its keys and
        values once per input with this method instead of once per step.

        Args:
            value: tensor of shape `(batch, key_len, value_dim_in)`.
            key: optional tensor of shape `(batch, key_len, key_dim_in)`;
                defaults to `value`.

        Returns:
            A tensor of shape `(batch, 2, key_len, num_heads, key_dim)`.
        """
        key = value if key is None else key
        return ops.stack(
            [self.key_dense(key), self.value_dense(value)], axis=1
        )  # (batch, 2, key_len, heads, key_dim)

    def compute_output_spec(
        self,
        query,
        value,
        key=None,
        return_attention_scores=False,
        cache=None,
        cache_update_index=None,
        **kwargs,
    ):
        self._check_inputs(query, value, value if key is None else key)
        outputs = (keras.KerasTensor(query.shape, dtype=self.compute_dtype),)
        if return_attention_scores:
            if cache is not None:
                key_len = cache.shape[2]
            else:
                key_len = (value if key is None else key).shape[1]
            outputs += (
                keras.KerasTensor(
                    (query.shape[0], self.num_heads, query.shape[1], key_len),
                    dtype=self.compute_dtype,
                ),
            )
        if cache is not None:
            outputs += (keras.KerasTensor(cache.shape, dtype=cache.dtype),)
        return outputs if len(outputs) > 1 else outputs[0]

    def enable_lora(self, rank, lora_alpha=None, a_initializer="he_uniform", b_initializer="zeros"):
        """Low-rank adaptation of the query and value projections.

        Calls Keras' `EinsumDense.enable_lora` on `query_dense` and
        `value_dense`, the two matrices Hu et al. (2021) adapt (`W^Q`, `W^V`),
        and freezes every other weight of the layer, so that its trainable
        weights are the four LoRA matrices only. The adapted kernel is
        `W + (alpha / rank) A B`; with `b_initializer="zeros"` the layer's
        output is unchanged until training moves `B`.

        Args:
            rank: positive int, the rank of the adaptation.
            lora_alpha: optional positive number, the scale `alpha`. Defaults
                to `rank`.
            a_initializer: initializer of `A`. Defaults to `"he_uniform"`.
            b_initializer: initializer of `B`. Defaults to `"zeros"`.

        Raises:
            ValueError: for a `rank` that is not a positive int, or (from
                Keras) a layer that is not built or already has LoRA.

        Reference:
            Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models",
            2021, section 4.2.
        """
        _validation.check_positive_int("rank", rank)
        for variable in self.trainable_weights:
            variable.trainable = False
        for projection in (self.query_dense, self.value_dense):
            projection.enable_lora(
                rank,
                lora_alpha=lora_alpha,
                a_initializer=a_initializer,
                b_initializer=b_initializer,
            )  # adds trainable `lora_kernel_a` and `lora_kernel_b`

    def get_config(self):
        config = super().get_config()
        config["dtype"] = dtype_config(self)
        # Settings of the Keras layer this rank-3 subclass does not take.
        for name in ("use_gate", "output_shape", "attention_axes", "sliding_window"):
            config.pop(name)
        return config
