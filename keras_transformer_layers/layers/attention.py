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
            (decoder self-attention, section 3.2.3). Defaults to `False`.

    Returns:
        A tensor of shape `(batch, query_len, query_dim)`, or with
        `return_attention_scores=True` a tuple `(output, scores)` where scores
        has shape `(batch, num_heads, query_len, key_len)` (weights before
        dropout), in eager and functional calls alike.

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
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.value_dim = value_dim
        self.dropout = dropout
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
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
    ):
        key = value if key is None else key
        if attention_mask is not None:
            self._check_attention_mask(attention_mask, query, key)
        mask = masks.merge_masks(
            masks.attention_mask_from_padding(query_mask, value_mask),
            masks.attention_mask_from_padding(None, key_mask),
            attention_mask,
            masks.causal_mask(ops.shape(query)[1], ops.shape(key)[1])
            if use_causal_mask
            else None,
        )  # (batch, query_len, key_len) or None
        query = self.query_dense(query)  # (batch, query_len, heads, key_dim)
        key = self.key_dense(key)  # (batch, key_len, heads, key_dim)
        value = self.value_dense(value)  # (batch, key_len, heads, value_dim)
        weights = attention_weights(query, key, mask)
        weights = ops.cast(weights, self.compute_dtype)  # (batch, heads, q, k)
        attended = ops.einsum(
            "bhqk,bkhd->bqhd",
            self.dropout_layer(weights, training=training),
            value,
        )  # (batch, query_len, heads, value_dim)
        output = self.output_dense(attended)  # (batch, query_len, query_dim)
        if return_attention_scores:
            return output, weights
        return output

    def compute_output_spec(
        self, query, value, key=None, return_attention_scores=False, **kwargs
    ):
        output = keras.KerasTensor(query.shape, dtype=self.compute_dtype)
        if not return_attention_scores:
            return output
        key = value if key is None else key
        scores = keras.KerasTensor(
            (query.shape[0], self.num_heads, query.shape[1], key.shape[1]),
            dtype=self.compute_dtype,
        )
        return output, scores

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
