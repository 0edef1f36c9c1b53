"""Multi-head scaled dot-product attention (paper section 3.2), on Keras' own layer."""

import keras
from keras import ops

from keras_transformer_layers import _validation
from keras_transformer_layers._quantization import dtype_config
from keras_transformer_layers.layers import decode_step
from keras_transformer_layers.layers import masks


def _check_size(name, value, optional=False):
    """A positive int (not a bool), with Keras' own message for its size arguments."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        expected = "a positive integer or `None`" if optional else "a positive integer"
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected {expected}. "
            f"Received: {name}={value!r}"
        )


@keras.saving.register_keras_serializable(package="keras_transformer_layers")
class MultiHeadAttention(keras.layers.MultiHeadAttention):
    """Multi-head attention, `Concat(head_1, ..., head_h) W^O` (section 3.2.2).

    Each head computes scaled dot-product attention (equation 1),
    `softmax(Q K^T / sqrt(d_k)) V`, on its own projections
    `Q W_i^Q, K W_i^K, V W_i^V`. Dividing by `sqrt(key_dim)` keeps the dot
    products at unit variance, so the softmax does not saturate as `key_dim`
    grows (footnote 4 of the paper).

    `keras.layers.MultiHeadAttention` with the same arguments, weights and
    results, plus these guarantees, built on Keras' override points
    (`build`, `_compute_attention`, `_masked_softmax`):

    - The logits `Q K^T / sqrt(key_dim)` and the softmax are computed in
      float32 under every dtype policy: a logit is a product of two
      activations, so in float16 it passes 65504 (and becomes inf, then NaN)
      once `|q|` and `|k|` reach a few hundred.
    - A masked key gets exactly zero weight, so a query row whose keys are
      all masked gets all-zero weights and a zero attention output (the
      layer then returns the output bias), in float32, float16 and bfloat16,
      with or without dropout, and without NaN. (Keras' own layer gives such
      a row uniform weights whenever its fused kernel runs.)
    - The query's padding mask is used whether it comes from the query's
      Keras mask or from `query_mask`.
    - Inputs, padding masks and `attention_mask` of the wrong shape or dtype
      are a `ValueError` naming the argument, when a graph is traced too.
    - A key/value cache for decoding (`cache`, `cache_update_index`, as in
      keras-hub's `CachedMultiHeadAttention`), computed by
      `keras_transformer_layers.layers.decode_step`.
    - A quantized layer reloads from `.keras`: its config records the
      projections' int8 policies in a `keras.dtype_policies.DTypePolicyMap`,
      so they are rebuilt quantized.

    Everything else is Keras': the projections `query_dense`, `key_dense`,
    `value_dense`, `output_dense` (and with `use_gate` the gate) are
    `EinsumDense` layers with kernels of shape `(dim, num_heads, key_dim)`
    and `(num_heads, value_dim) + output_shape`, so weights move between the
    two layers with `get_weights()` / `set_weights()`; inputs of any rank
    with `attention_axes`; `output_shape`; `sliding_window`; `use_gate`;
    `quantize("int8")`; LoRA (`enable_lora`); regularizers and constraints.
    `flash_attention=True` runs the backend's flash kernel through
    `keras.ops.dot_product_attention` where Keras' layer does (rank-3
    inputs), so it is refused where Keras refuses it (on TensorFlow, and
    without a supported GPU); its logits and softmax are then the kernel's.

    Args:
        num_heads: positive int, `h` in the paper.
        key_dim: positive int, size of each head for query and key, `d_k`.
        value_dim: positive int, size of each head for value, `d_v`.
            Defaults to `None`, which means `key_dim` (the `value_dim`
            attribute and config then hold `key_dim`, as in Keras).
        dropout: float in `[0, 1)`, dropout on the attention weights.
            Defaults to `0.0`.
        use_bias: bool, whether the projections have biases. Defaults to `True`.
        output_shape: optional int or tuple of ints, the shape of the output
            besides the batch and query axes. Defaults to `None`, the query's
            last dimension.
        attention_axes: optional int or tuple of ints, the axes attention is
            applied over. Defaults to `None`, every axis but the batch, heads
            and features.
        sliding_window: optional positive int: query `i` attends to keys `j`
            with `|i - j| < sliding_window` only (with `use_causal_mask`, the
            `sliding_window` positions up to `i`). Defaults to `None`.
        flash_attention: `None`, `True` or `False`. `True` asks for the
            backend's flash kernel, as described above; `None` and `False`
            compute the float32 softmax. Defaults to `None`.
        kernel_initializer: initializer of the projection kernels. Defaults to
            `"glorot_uniform"`.
        bias_initializer: initializer of the biases. Defaults to `"zeros"`.
        kernel_regularizer: optional regularizer of the projection kernels
            (its loss is in `layer.losses`). Defaults to `None`.
        bias_regularizer: optional regularizer of the biases. Defaults to
            `None`.
        activity_regularizer: optional regularizer of the projections'
            outputs. Defaults to `None`.
        kernel_constraint: optional constraint the optimizer applies to the
            projection kernels after each update. Defaults to `None`.
        bias_constraint: optional constraint of the biases. Defaults to
            `None`.
        use_gate: bool, multiply the attention output by
            `sigmoid(query W^G)` before the output projection (Keras' gated
            attention, not in the paper). Defaults to `False`.
        seed: optional int, seed of the attention dropout. Defaults to `None`.
        **kwargs: base layer arguments such as `name` and `dtype`.

    Call arguments:
        query: tensor of shape `(batch, query_len, query_dim)`, or any rank
            with `attention_axes`.
        value: tensor of shape `(batch, key_len, value_dim_in)`.
        key: optional tensor of shape `(batch, key_len, key_dim_in)`;
            defaults to `value`.
        query_mask: optional boolean padding mask `(batch, query_len)`, True
            for real tokens; Keras fills it from the mask of `query`.
        value_mask: optional boolean padding mask `(batch, key_len)`; Keras
            fills it from the mask of `value`. With a cache and
            `cache_update_index`, it covers the new positions, and the cache
            records their padding, so later calls mask them too.
        key_mask: optional boolean padding mask `(batch, key_len)`, like
            `value_mask`. In each padding mask any dimension may be 1.
        attention_mask: optional boolean tensor, True where a query may
            attend: `(batch, query_len, key_len)`, or any shape
            `keras.layers.MultiHeadAttention` accepts, `(query_len, key_len)`
            or `(batch, num_heads, query_len, key_len)`, where any dimension
            may be 1. With a `cache`, `key_len` is the cache length. It is
            combined (logical AND) with the padding, causal and
            sliding-window masks.
        return_attention_scores: bool, also return the attention weights.
            Defaults to `False`.
        training: bool, enables dropout.
        use_causal_mask: bool, forbid query `i` from attending keys `j > i`
            (decoder self-attention, section 3.2.3). With a cache, query `i`
            sits at position `cache_update_index + i`. Defaults to `False`.
        cache: optional tensor of shape
            `(batch, 2, max_length, num_heads, key_dim)`: keys (index 0) and
            values (index 1) after projection, for incremental decoding
            (rank-3 inputs and `value_dim == key_dim`). With
            `cache_update_index`, the projected `key` and `value` are written
            into the cache at that index and the query attends to the cache
            positions `< cache_update_index + query_len`. Without it, the
            cache holds precomputed keys and values (see `compute_cache`;
            used for cross-attention) and `key`/`value` are not projected;
            their padding masks still mask the keys. Defaults to `None`.
        cache_update_index: optional int or scalar int tensor, the position
            of the first query in the cache; the new positions must fit in
            the cache. Defaults to `None`.

    Returns:
        A tensor of shape `(batch, query_len) + output_shape`, or with
        `return_attention_scores=True` a tuple `(output, scores)` where scores
        has shape `(batch, num_heads, query_len, key_len)` (weights before
        dropout; for other ranks, Keras' layout), in eager and functional
        calls alike. With a `cache`, the (updated) cache is appended:
        `(output, cache)` or `(output, scores, cache)`.

    Raises:
        ValueError: at construction, for a setting out of range or of the
            wrong type (for `num_heads`, `key_dim` and `value_dim`, in
            Keras' words). At call (or trace) time, if `query`, `value` or
            `key` is not a float tensor of the rank and width the layer was
            built with, if `attention_mask` or a padding mask has a
            statically known shape other than those above, for keras-hub's
            spelling `padding_mask`, or for a cache of the wrong shape or a
            `cache_update_index` whose positions do not fit in the cache. An
            index known in Python or eagerly raises here; in a graph and in
            TFLite the call fails when it runs, and under XLA (where lookups
            clamp) its output is NaN.

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
        output_shape=None,
        attention_axes=None,
        sliding_window=None,
        flash_attention=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        use_gate=False,
        seed=None,
        **kwargs,
    ):
        _check_size("num_heads", num_heads)
        _check_size("key_dim", key_dim)
        _check_size("value_dim", value_dim, optional=True)
        _validation.check_rate("dropout", dropout)
        _validation.check_bool("use_bias", use_bias)
        _validation.check_optional_positive_int("sliding_window", sliding_window)
        if flash_attention is not None:
            _validation.check_bool("flash_attention", flash_attention)
        _validation.check_bool("use_gate", use_gate)
        super().__init__(
            num_heads=num_heads,
            key_dim=key_dim,
            value_dim=value_dim,
            dropout=dropout,
            use_bias=use_bias,
            output_shape=output_shape,
            attention_axes=attention_axes,
            sliding_window=sliding_window,
            flash_attention=flash_attention,
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
            use_gate=use_gate,
            seed=seed,
            **kwargs,
        )
        self.flash_attention = flash_attention

    def build(self, query_shape, value_shape, key_shape=None):
        key_shape = value_shape if key_shape is None else key_shape
        super().build(query_shape, value_shape, key_shape)
        for name, shape in (("query", query_shape), ("value", value_shape), ("key", key_shape)):
            if len(shape) < 3 or len(shape) != len(query_shape):
                raise ValueError(
                    f"`{name}` must be a rank-3 tensor (batch, seq_len, dim), or with "
                    "`attention_axes` a tensor of the rank of `query`, at least 3. "
                    f"Received: {name}.shape={tuple(shape)}, query.shape={tuple(query_shape)}"
                )
        for projection in self._projections():
            # The padding masks are consumed by this layer; the projections
            # only carry them along instead of warning that they drop them.
            projection.supports_masking = True
        self._input_shapes = {
            "query": tuple(query_shape),
            "value": tuple(value_shape),
            "key": tuple(key_shape),
        }

    @property
    def gate_dense(self):
        """The gate projection (`use_gate=True`), else `None`."""
        return self._gate_dense if self._use_gate else None

    @property
    def dropout_layer(self):
        """The dropout on the attention weights (saved under this name)."""
        return self._dropout_layer

    def _projections(self):
        projections = (self.query_dense, self.key_dense, self.value_dense, self.output_dense)
        return projections + ((self.gate_dense,) if self._use_gate else ())

    def __call__(self, *args, **kwargs):
        if "padding_mask" in kwargs:
            raise ValueError(
                "`MultiHeadAttention` takes the padding masks as `query_mask`, "
                "`value_mask` and `key_mask` (`padding_mask` is keras-hub's spelling). "
                "Received: padding_mask="
                f"{_validation.describe(kwargs['padding_mask'])}"
            )
        return super().__call__(*args, **kwargs)

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
        self._check_inputs(query, value, key, cache)
        if cache is None and cache_update_index is not None:
            raise ValueError(
                "`cache_update_index` needs a `cache`. Received: cache=None, "
                f"cache_update_index={cache_update_index!r}"
            )
        if cache is None:
            key_shape, key_len = tuple(key.shape), ops.shape(key)[1]
        else:
            self._check_cache(cache, query)
            key_shape = (query.shape[0], cache.shape[2], self._input_shapes["key"][-1])
            key_len = ops.shape(cache)[2]
        # The padding masks cover the keys given: the new ones with an index.
        self._check_padding_masks(
            query,
            key.shape if cache_update_index is not None else key_shape,
            query_mask,
            value_mask,
            key_mask,
        )
        query_start, index_ok, new_key_mask = 0, None, None
        if cache_update_index is not None:
            new_len = key.shape[1] if key.shape[1] is not None else ops.shape(key)[1]
            index_ok = decode_step.check_cache_index(
                "cache_update_index", cache_update_index, new_len, key_shape[1] or key_len
            )
            cache_update_index = ops.cast(cache_update_index, "int32")
            query_start = cache_update_index = decode_step.fail_closed(cache_update_index, index_ok)
            # The padding of the new keys is recorded in the cache, which
            # masks it in this call and every later one.
            new_key_mask = masks.merge_masks(value_mask, key_mask)
            value_mask = key_mask = None
        mask = self._attention_mask(
            query,
            key_shape,
            key_len,
            query_mask,
            value_mask,
            key_mask,
            attention_mask,
            use_causal_mask,
            query_start,
            updating_cache=cache_update_index is not None,
        )
        if cache is not None:
            output, scores, cache = decode_step.attend_with_cache(
                self,
                query,
                value,
                key,
                mask,
                cache,
                cache_update_index,
                new_key_mask,
                return_attention_scores,
                training,
            )
            output = decode_step.fail_closed(output, index_ok)
        else:
            gate = self.gate_dense(query) if self._use_gate else None
            attended, scores = self._compute_attention(
                self.query_dense(query),  # (batch, <query axes>, heads, key_dim)
                self.key_dense(key),  # (batch, <key axes>, heads, key_dim)
                self.value_dense(value),  # (batch, <key axes>, heads, value_dim)
                mask,
                training,
                return_attention_scores,
            )
            if gate is not None:
                attended = attended * gate
            output = self.output_dense(attended)
        outputs = (output,)
        if return_attention_scores:
            outputs += (scores,)
        if cache is not None:
            outputs += (cache,)
        return outputs if len(outputs) > 1 else output

    def _attention_mask(
        self,
        query,
        key_shape,
        key_len,
        query_mask,
        value_mask,
        key_mask,
        attention_mask,
        use_causal_mask,
        query_start,
        updating_cache,
    ):
        """The boolean mask of every constraint, of the rank of the scores, or `None`.

        As Keras' `_compute_attention_mask`: the padding masks (query
        `(batch, query_len, 1)`, keys `(batch, 1, key_len)`), the causal and
        sliding-window masks of the positions, then `attention_mask`; each
        is expanded as Keras does (missing axes before the query axes)
        before they are combined. `query_start` is the position of the first
        query in a cache; when `updating_cache`, the keys at and after
        `query_start + query_len` (cache slots not written yet) are masked.
        """
        query_len = ops.shape(query)[1]
        mask = masks.merge_masks(
            masks.attention_mask_from_padding(query_mask, value_mask),
            masks.attention_mask_from_padding(None, key_mask),
        )  # broadcastable to (batch, query_len, key_len)
        if use_causal_mask:
            mask = masks.merge_masks(mask, masks.causal_mask(query_len, key_len, query_start))
        if self._sliding_window is not None:
            mask = masks.merge_masks(
                mask,
                masks.sliding_window_mask(query_len, key_len, self._sliding_window, query_start),
            )
        if updating_cache and not use_causal_mask:  # the causal mask covers them
            written = ops.arange(key_len) < query_start + query_len  # (key_len,)
            mask = masks.merge_masks(mask, written[None, None, :])
        scores_rank = len(self._scores_shape(query.shape, key_shape))
        if mask is not None:
            mask = self._expand_mask(mask, scores_rank)
        if attention_mask is not None:
            self._check_attention_mask(attention_mask, query.shape, key_shape)
            mask = masks.merge_masks(mask, self._expand_mask(attention_mask, scores_rank))
        return mask

    def _expand_mask(self, mask, rank):
        """`mask` with axes inserted before the query axes, as Keras does, up to `rank`."""
        for _ in range(rank - len(mask.shape)):
            mask = ops.expand_dims(mask, -2 * len(self._attention_axes) - 1)
        return mask

    def _expanded_shape(self, shape, rank):
        """The static shape `_expand_mask` gives a mask of shape `shape`."""
        shape = list(shape)
        while len(shape) < rank:
            shape.insert(len(shape) - 2 * len(self._attention_axes), 1)
        return tuple(shape)

    def _scores_shape(self, query_shape, key_shape):
        """The static shape of the attention weights, in Keras' layout.

        For rank-3 inputs, `(batch, num_heads, query_len, key_len)`; in
        general the non-attention axes of the query (heads included), then
        its attention axes, then the key's.
        """
        query = tuple(query_shape[:-1]) + (self.num_heads,)
        key = tuple(key_shape[:-1]) + (self.num_heads,)
        batch_axes = [axis for axis in range(len(query)) if axis not in self._attention_axes]
        return (
            tuple(query[axis] for axis in batch_axes)
            + tuple(query[axis] for axis in self._attention_axes)
            + tuple(key[axis] for axis in self._attention_axes)
        )

    def _check_inputs(self, query, value, key, cache):
        """Float inputs of the ranks and widths the projections were built with.

        Static shapes only, so the check also runs when a graph is traced
        and when a functional model is built; it replaces a raw einsum error
        (another rank or width) or a silent integer input.
        """
        for name, tensor in (("query", query), ("value", value), ("key", key)):
            if name != "query" and cache is not None and tensor is None:
                continue
            built = self._input_shapes[name]
            _validation.check_float_tensor(name, tensor)
            _validation.check_static_shape(
                name,
                tensor.shape,
                (None,) * (len(built) - 1) + (built[-1],),
                f"rank {len(built)} and last dimension {built[-1]}, as the layer was built",
            )

    def _check_attention_mask(self, attention_mask, query_shape, key_shape):
        """Checks the mask against the shapes `keras.layers.MultiHeadAttention` accepts.

        Keras inserts the missing axes before the query axes: for rank-3
        inputs a rank-2 mask is `(query_len, key_len)`, rank 3
        `(batch, query_len, key_len)`, rank 4
        `(batch, num_heads, query_len, key_len)`; each dimension is 1 or the
        full size, so the mask broadcasts to the scores.
        """
        expected = self._scores_shape(query_shape, key_shape)
        shape = tuple(attention_mask.shape)
        matches = 2 * len(self._attention_axes) <= len(shape) <= len(expected) and all(
            got is None or want is None or got in (1, want)
            for got, want in zip(self._expanded_shape(shape, len(expected)), expected, strict=True)
        )
        if not matches:
            raise ValueError(
                "`attention_mask` must have shape (query_len, key_len), "
                "(batch, query_len, key_len) or (batch, num_heads, query_len, key_len) = "
                f"{expected} (a shape `keras.layers.MultiHeadAttention` accepts), where "
                f"any dimension may be 1. Received: attention_mask.shape={shape}"
            )

    def _check_padding_masks(self, query, key_shape, query_mask, value_mask, key_mask):
        """Padding masks are `(batch, seq_len)` of their input, any dimension 1, as in Keras."""
        for name, mask, shape in (
            ("query_mask", query_mask, query.shape),
            ("value_mask", value_mask, key_shape),
            ("key_mask", key_mask, key_shape),
        ):
            if mask is None:
                continue
            expected, got = tuple(shape[:-1]), tuple(mask.shape)
            if len(got) != len(expected) or not all(
                size is None or want is None or size in (1, want)
                for size, want in zip(got, expected, strict=True)
            ):
                raise ValueError(
                    f"`{name}` must have shape (batch, seq_len) = {expected}, "
                    f"where any dimension may be 1. Received: {name}.shape={got}"
                )

    def _check_cache(self, cache, query):
        if (
            len(cache.shape) != 5
            or len(self._input_shapes["query"]) != 3
            or self.value_dim != self.key_dim
        ):
            raise ValueError(
                "`cache` must have shape (batch, 2, max_length, num_heads, key_dim), "
                "for rank-3 inputs and `value_dim == key_dim`. Received: "
                f"cache.shape={tuple(cache.shape)}, query.shape={tuple(query.shape)}, "
                f"key_dim={self.key_dim}, value_dim={self.value_dim}"
            )
        _validation.check_static_shape(
            "cache",
            cache.shape,
            (query.shape[0], 2, None, self.num_heads, self.key_dim),
            "(batch, 2, max_length, num_heads, key_dim)",
        )

    def _masked_softmax(self, attention_scores, attention_mask=None):
        """The weights of equation (1): the softmax in float32, exactly 0 where masked.

        Keras' override point, with Keras' mask expansion (missing axes go
        before the query axes); the rule itself is `masks.masked_softmax`.

        Args:
            attention_scores: logits in Keras' layout, e.g.
                `(batch, heads, query_len, key_len)`.
            attention_mask: optional boolean mask broadcastable to them
                after the expansion.

        Returns:
            Float32 weights shaped like `attention_scores`.
        """
        if attention_mask is not None:
            attention_mask = self._expand_mask(attention_mask, len(attention_scores.shape))
        return masks.masked_softmax(attention_scores, attention_mask, axis=self._softmax.axis)

    def _compute_attention(
        self,
        query,
        key,
        value,
        attention_mask=None,
        training=None,
        return_attention_scores=False,
        use_causal_mask=False,
    ):
        """Equation (1) on projected heads: Keras' override point, with our numerics.

        The logits are float32 products of the float32 query and key (the
        query scaled first, which keeps the products at the size of the
        logits), the weights come from `_masked_softmax` and are cast to the
        compute dtype before dropout and the weighted sum of the values.
        With `use_causal_mask`, the causal mask of the positions joins
        `attention_mask`, as in Keras.

        Args:
            query: tensor `(batch, query_len, heads, key_dim)` (Keras' layout
                for other ranks).
            key: tensor `(batch, key_len, heads, key_dim)`.
            value: tensor `(batch, key_len, heads, value_dim)`.
            attention_mask: optional boolean mask broadcastable to the
                scores (see `_masked_softmax`).
            training: bool or `None`, enables dropout.
            return_attention_scores: bool; with `flash_attention=True` it is
                Keras' `ValueError`.
            use_causal_mask: bool.

        Returns:
            `(attended, weights)`: `(batch, query_len, heads, value_dim)` and
            the weights `(batch, heads, query_len, key_len)` before dropout
            in the compute dtype (`None` from the flash kernel).
        """
        if self._flash_attention and return_attention_scores:
            raise ValueError(
                "Returning attention scores is not supported when flash "
                "attention is enabled. Please disable flash attention to access"
                " attention scores."
            )
        if use_causal_mask:
            causal = self._compute_causal_mask(query, value)  # (1, query_len, key_len)
            attention_mask = masks.merge_masks(attention_mask, causal)
        if self._flash_attention and len(query.shape) == 4:
            return self._flash_kernel_attention(query, key, value, attention_mask), None
        query = ops.cast(query, "float32") * self._inverse_sqrt_key_dim
        scores = ops.einsum(self._dot_product_equation, ops.cast(key, "float32"), query)
        weights = ops.cast(self._masked_softmax(scores, attention_mask), self.compute_dtype)
        attended = ops.einsum(
            self._combine_equation, self._dropout_layer(weights, training=training), value
        )
        return attended, weights

    def _flash_kernel_attention(self, query, key, value, attention_mask):
        """Keras' fused call with `flash_attention=True`: the backend runs or refuses it.

        A query row whose keys are all masked is set to zero, as everywhere.
        """
        if attention_mask is None:
            return ops.dot_product_attention(
                query, key, value, scale=self._inverse_sqrt_key_dim, flash_attention=True
            )
        mask = ops.broadcast_to(
            self._expand_mask(ops.cast(attention_mask, "bool"), 4),
            (ops.shape(query)[0], self.num_heads, ops.shape(query)[1], ops.shape(key)[1]),
        )  # (batch, heads, query_len, key_len)
        attended = ops.dot_product_attention(
            query, key, value, mask=mask, scale=self._inverse_sqrt_key_dim, flash_attention=True
        )  # (batch, query_len, heads, value_dim)
        has_key = ops.transpose(ops.any(mask, axis=-1, keepdims=True), (0, 2, 1, 3))
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

    def compute_output_spec(self, *args, **kwargs):
        # What `call` returns, traced from `call` itself (Keras' default for
        # layers): the structure, shapes and dtypes follow its one signature.
        return keras.Operation.compute_output_spec(self, *args, **kwargs)

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
        config["flash_attention"] = self.flash_attention
        config["dtype"] = dtype_config(self)
        return config
