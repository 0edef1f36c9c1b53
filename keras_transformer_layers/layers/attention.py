"""Multi-head scaled dot-product attention (paper section 3.2)."""

import math

import keras
from keras import ops

from keras_transformer_layers import _validation
from keras_transformer_layers.layers._initializers import clone_initializer
from keras_transformer_layers.layers import masks

# Masked scores are filled before the float32 softmax. A finite fill keeps a
# row whose keys are all masked free of NaN; those rows are zeroed afterwards.
_MASKED_SCORE = -1e9


def attention_weights(query, key, mask=None):
    """`softmax(Q K^T / sqrt(d_k))` per head, with a boolean mask.

    The weights of equation (1) of Vaswani et al. (2017); the caller applies
    them to the values. The softmax runs in float32 and the weights of masked
    keys are exactly zero, so a query row whose keys are all masked attends to
    nothing: its weights, and so its output, are zero.

    Args:
        query: tensor of shape `(batch, query_len, heads, key_dim)`.
        key: tensor of shape `(batch, key_len, heads, key_dim)`.
        mask: optional boolean tensor broadcastable to
            `(batch, query_len, key_len)`, True where a query may attend.

    Returns:
        A float32 tensor of shape `(batch, heads, query_len, key_len)`.
    """
    query = query * ops.cast(1.0 / math.sqrt(query.shape[-1]), query.dtype)
    scores = ops.einsum("bqhd,bkhd->bhqk", query, key)  # (batch, heads, q, k)
    scores = ops.cast(scores, "float32")
    if mask is None:
        return ops.softmax(scores, axis=-1)
    mask = ops.expand_dims(mask, 1)  # (batch, 1, q, k)
    weights = ops.softmax(ops.where(mask, scores, _MASKED_SCORE), axis=-1)
    return ops.where(mask, weights, 0.0)


@keras.saving.register_keras_serializable(package="keras_transformer_layers")
class MultiHeadAttention(keras.layers.Layer):
    """Multi-head attention, `Concat(head_1, ..., head_h) W^O` (section 3.2.2).

    Each head computes scaled dot-product attention (equation 1),
    `softmax(Q K^T / sqrt(d_k)) V`, on its own projections
    `Q W_i^Q, K W_i^K, V W_i^V`. Dividing by `sqrt(key_dim)` keeps the dot
    products at unit variance, so the softmax does not saturate as `key_dim`
    grows (footnote 4 of the paper).

    Constructor names, call signature and weight layout follow
    `keras.layers.MultiHeadAttention`: the `query`, `key`, `value` and
    `attention_output` sublayers hold kernels of shape `(dim, num_heads,
    key_dim)` and `(num_heads, value_dim, dim)`, in that order, so weights move
    between the two with `get_weights()` / `set_weights()`.

    Masks: booleans, True = attend. The Keras masks of `query`, `value` and
    `key` (from `Embedding(mask_zero=True)`) are combined with
    `attention_mask` and, with `use_causal_mask=True`, the causal mask. The
    softmax runs in float32 under every dtype policy, and a query row whose
    keys are all masked gets all-zero weights: its attention output is zero
    before the output projection (so the layer returns the output bias), in
    every dtype, with or without dropout, and without NaN.

    Args:
        num_heads: positive int, `h` in the paper.
        key_dim: positive int, size of each head for query and key, `d_k`.
        value_dim: positive int, size of each head for value, `d_v`.
            Defaults to `key_dim`.
        dropout: float in `[0, 1)`, dropout on the attention weights.
            Defaults to `0.0`.
        use_bias: bool, whether the projections have biases. Defaults to `True`.
        kernel_initializer: initializer of the projection kernels. Defaults to
            `"glorot_uniform"`.
        bias_initializer: initializer of the biases. Defaults to `"zeros"`.
        seed: optional int, seed of the attention dropout. Defaults to `None`.
        **kwargs: base layer arguments such as `name` and `dtype`.

    Call arguments:
        query: tensor of shape `(batch, query_len, query_dim)`.
        value: tensor of shape `(batch, key_len, value_dim_in)`.
        key: optional tensor of shape `(batch, key_len, key_dim_in)`; defaults
            to `value`.
        attention_mask: optional boolean tensor of shape
            `(batch, query_len, key_len)`, True where a query may attend.
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
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _validation.check_positive_int("num_heads", num_heads)
        _validation.check_positive_int("key_dim", key_dim)
        _validation.check_optional_positive_int("value_dim", value_dim)
        _validation.check_rate("dropout", dropout)
        _validation.check_bool("use_bias", use_bias)
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.value_dim = value_dim
        self.dropout = dropout
        self.use_bias = use_bias
        self.kernel_initializer = _validation.get_initializer(
            "kernel_initializer", kernel_initializer
        )
        self.bias_initializer = _validation.get_initializer(
            "bias_initializer", bias_initializer
        )
        self.seed = seed
        self.supports_masking = True
        self.dropout_layer = keras.layers.Dropout(
            dropout, seed=seed, dtype=self.dtype_policy, name="dropout"
        )

    def _projection(self, equation, output_shape, bias_axes, name):
        projection = keras.layers.EinsumDense(
            equation,
            output_shape=output_shape,
            bias_axes=bias_axes if self.use_bias else None,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name=name,
        )
        # The padding masks are consumed by this layer; the projections only
        # carry them along instead of warning that they drop them.
        projection.supports_masking = True
        return projection

    def build(self, query_shape, value_shape, key_shape=None):
        _validation.check_rank("query", query_shape, 3, "(batch, seq_len, dim)")
        _validation.check_rank("value", value_shape, 3, "(batch, seq_len, dim)")
        key_shape = value_shape if key_shape is None else key_shape
        _validation.check_rank("key", key_shape, 3, "(batch, seq_len, dim)")
        value_dim = self.value_dim or self.key_dim
        self.query_dense = self._projection(
            "abc,cde->abde", (None, self.num_heads, self.key_dim), "de", "query"
        )
        self.query_dense.build(query_shape)
        self.key_dense = self._projection(
            "abc,cde->abde", (None, self.num_heads, self.key_dim), "de", "key"
        )
        self.key_dense.build(key_shape)
        self.value_dense = self._projection(
            "abc,cde->abde", (None, self.num_heads, value_dim), "de", "value"
        )
        self.value_dense.build(value_shape)
        self.output_dense = self._projection(
            "abcd,cde->abe", (None, query_shape[-1]), "e", "attention_output"
        )
        self.output_dense.build(tuple(query_shape[:-1]) + (self.num_heads, value_dim))

    def _check_attention_mask(self, attention_mask, query, key):
        expected = (query.shape[1], key.shape[1])
        shape = tuple(attention_mask.shape)
        matches = len(shape) == 3 and all(
            got is None or want is None or got == want
            for got, want in zip(shape[1:], expected)
        )
        if not matches:
            raise ValueError(
                "`attention_mask` must have shape (batch, query_len, key_len) = "
                f"(batch, {expected[0]}, {expected[1]}). "
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
        query_len = ops.shape(query)[1]
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
            new_key_value = ops.stack(
                [self.key_dense(key), self.value_dense(value)], axis=1
            )  # (batch, 2, new_len, heads, key_dim)
            cache = ops.slice_update(
                cache, (0, 0, cache_update_index, 0, 0), new_key_value
            )  # (batch, 2, max_length, heads, key_dim)
            projected_key, projected_value = cache[:, 0], cache[:, 1]
            key_len, query_start = ops.shape(cache)[2], cache_update_index
            mask = self._padding_mask(
                query_mask,
                self._cached_key_mask(value_mask, key_len, cache_update_index),
                self._cached_key_mask(key_mask, key_len, cache_update_index),
            )
            if not use_causal_mask:  # the causal mask below covers this
                written = ops.arange(key_len) < cache_update_index + query_len
                mask = masks.merge_masks(mask, written[None, None, :])  # (., ., max_length)
        if use_causal_mask:
            # Query i sits at absolute position query_start + i.
            causal = masks.causal_mask(query_len, key_len, query_start)
            mask = masks.merge_masks(mask, causal)  # (batch, query_len, key_len)
        return self._attend(
            self.query_dense(query),  # (batch, query_len, heads, key_dim)
            projected_key,
            projected_value,
            mask,
            attention_mask,
            return_attention_scores,
            training,
            cache,
        )

    def _padding_mask(self, query_mask, value_mask, key_mask):
        return masks.merge_masks(
            masks.attention_mask_from_padding(query_mask, value_mask),
            masks.attention_mask_from_padding(None, key_mask),
        )  # broadcastable to (batch, query_len, key_len), or None

    def _cached_key_mask(self, new_mask, cache_len, cache_update_index):
        """Padding mask of the new keys placed at their cache positions.

        The cache holds projections only, so positions written by earlier
        steps count as real tokens; the new keys keep their own padding mask.
        """
        if new_mask is None:
            return None
        full = ops.ones((ops.shape(new_mask)[0], cache_len), "bool")
        return ops.slice_update(
            full, (0, cache_update_index), ops.cast(new_mask, "bool")
        )  # (batch, max_length)

    def _check_cache(self, cache):
        value_dim = self.value_dim or self.key_dim
        if len(cache.shape) != 5 or value_dim != self.key_dim:
            raise ValueError(
                "`cache` must have shape (batch, 2, max_length, num_heads, key_dim) "
                "and needs `value_dim == key_dim`. Received: "
                f"cache.shape={tuple(cache.shape)}, key_dim={self.key_dim}, "
                f"value_dim={value_dim}"
            )

    def _attend(
        self, query, key, value, mask, attention_mask, return_attention_scores,
        training, cache,
    ):
        """Equation (1) on projected heads, then the output projection."""
        if attention_mask is not None:
            self._check_attention_mask(attention_mask, query, key)
            mask = masks.merge_masks(mask, attention_mask)
        weights = attention_weights(query, key, mask)
        weights = ops.cast(weights, self.compute_dtype)  # (batch, heads, q, k)
        attended = ops.einsum(
            "bhqk,bkhd->bqhd",
            self.dropout_layer(weights, training=training),
            value,
        )  # (batch, query_len, heads, value_dim)
        output = self.output_dense(attended)  # (batch, query_len, query_dim)
        outputs = (output, weights) if return_attention_scores else (output,)
        if cache is not None:
            outputs += (cache,)
        return outputs if len(outputs) > 1 else output

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

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "value_dim": self.value_dim,
                "dropout": self.dropout,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(
                    self.bias_initializer
                ),
                "seed": self.seed,
            }
        )
        return config
