"""The decoder of Figure 1 (right): one block, and a stack of N blocks."""

import keras
from keras import ops

from keras_transformer_layers import _validation
from keras_transformer_layers.layers import decode_step
from keras_transformer_layers.layers._block import BLOCK_ARGS_DOC
from keras_transformer_layers.layers._block import TransformerLayerBase
from keras_transformer_layers.layers._block import TransformerStackBase

# How the encoder stack feeds the decoder blocks (see `TransformerDecoder`).
ENCODER_CONNECTIONS = ("last", "layerwise")
# keras-hub's spellings of the call arguments (see `TransformerLayerBase`).
KERAS_HUB_ARGUMENTS = {
    "decoder_sequence": "the decoder's input as `decoder_inputs`",
    "encoder_sequence": "the encoder's output as `encoder_outputs`",
    "padding_mask": "the decoder's padding mask as `decoder_inputs_mask`",
    "decoder_padding_mask": "the decoder's padding mask as `decoder_inputs_mask`",
    "encoder_padding_mask": "the encoder's padding mask as `encoder_outputs_mask`",
    "use_causal_mask": "no `use_causal_mask`: its self-attention is always causal",
    "cross_attention_cache_update_index": (
        "no `cross_attention_cache_update_index`: pass the keys and values of "
        "`compute_cross_attention_cache` as `cross_attention_cache`"
    ),
}


def _split_attention_outputs(outputs, with_scores, with_cache):
    """`(output, scores, cache)` from what `MultiHeadAttention` returned; `None`s for the absent."""
    if not (with_scores or with_cache):
        return outputs, None, None
    outputs = list(outputs)
    output = outputs.pop(0)
    scores = outputs.pop(0) if with_scores else None
    cache = outputs.pop(0) if with_cache else None
    return output, scores, cache


def _check_encoder_width(decoder_inputs_shape, encoder_outputs_shape):
    _validation.check_rank(
        "encoder_outputs", encoder_outputs_shape, 3, "(batch, source_len, model_dim)"
    )
    if encoder_outputs_shape[-1] != decoder_inputs_shape[-1]:
        raise ValueError(
            "`encoder_outputs` must have the same last dimension as "
            "`decoder_inputs`. Received: "
            f"encoder_outputs.shape[-1]={encoder_outputs_shape[-1]}, "
            f"decoder_inputs.shape[-1]={decoder_inputs_shape[-1]}"
        )


def _check_decoder_call(
    layer, decoder_inputs, encoder_outputs, decoder_inputs_mask, encoder_outputs_mask
):
    """Dtypes and static shapes of the call arguments of a decoder block or stack."""
    layer._check_sequence("decoder_inputs", decoder_inputs, "(batch, target_len, model_dim)")
    layer._check_padding_mask(
        "decoder_inputs_mask", decoder_inputs_mask, "decoder_inputs", decoder_inputs.shape
    )
    if encoder_outputs is not None:
        _validation.check_float_tensor("encoder_outputs", encoder_outputs)
        _check_encoder_width(decoder_inputs.shape, encoder_outputs.shape)
        _validation.check_static_shape(
            "encoder_outputs",
            encoder_outputs.shape,
            (decoder_inputs.shape[0], None, None),
            "(batch, source_len, model_dim) with the batch size of `decoder_inputs`",
        )
        layer._check_padding_mask(
            "encoder_outputs_mask",
            encoder_outputs_mask,
            "encoder_outputs",
            encoder_outputs.shape,
        )


@keras.saving.register_keras_serializable(package="keras_transformer_layers")
class TransformerDecoderBlock(TransformerLayerBase):
    """One decoder layer: masked self-attention, cross-attention, feed-forward.

    Section 3.1 and Figure 1 (right) of Vaswani et al. (2017): causal
    self-attention, Add & Norm, attention over the encoder output
    ("encoder-decoder attention", section 3.2.3), Add & Norm, feed-forward,
    Add & Norm.

    Masks: self-attention combines the decoder's padding mask with the causal
    mask (position `i` sees positions `<= i`); cross-attention lets each
    decoder position attend to the non-padding encoder positions, using the
    Keras mask of `encoder_outputs`.

    Decoder-only (GPT-style) form: call the block without `encoder_outputs`
    the first time (`block(x)`). It is then built without cross-attention,
    and is a causal self-attention block; calling it later with
    `encoder_outputs` (or a cross-attention block without them) is a
    `ValueError`.

    Args:{args}

    Call arguments:
        decoder_inputs: float tensor of shape `(batch, target_len, model_dim)`.
        encoder_outputs: float tensor of shape
            `(batch, source_len, model_dim)`, the encoder stack's output; omit
            it for the decoder-only form.
        decoder_inputs_mask: optional boolean padding mask
            `(batch, target_len)`. Keras fills it from the mask of
            `decoder_inputs`.
        encoder_outputs_mask: optional boolean padding mask
            `(batch, source_len)`. Keras fills it from the mask of
            `encoder_outputs`.
        self_attention_cache: optional tensor of shape
            `(batch, 2, max_length, num_heads, key_dim)`, the self-attention
            keys and values of the positions decoded so far (zeros at first).
            Defaults to `None`.
        self_attention_cache_update_index: int or scalar int tensor, the
            position of the first of `decoder_inputs`; required with
            `self_attention_cache`. The new positions must fit in the cache:
            an index past it is a `ValueError` when its value is known
            (Python or eager), makes a lookup fail when a graph or TFLite
            runs (on CPU), and makes the outputs NaN under XLA. The cache
            records the padding of `decoder_inputs_mask`, so later calls mask
            those positions as a full pass does. Defaults to `None`.
        cross_attention_cache: optional tensor of shape
            `(batch, 2, source_len, num_heads, key_dim)` from
            `compute_cross_attention_cache`; replaces the projection of
            `encoder_outputs` (which may then be omitted; pass its padding
            mask as `encoder_outputs_mask`). Defaults to `None`.
        return_attention_scores: bool, also return the attention weights of
            the block, e.g. to plot them with
            `keras_transformer_layers.plotting.plot_attention_heads`.
            Defaults to `False`.
        training: bool; enables dropout.

    Returns:
        A tensor shaped like `decoder_inputs`, carrying its Keras mask. With
        `return_attention_scores=True` and/or `self_attention_cache`, a tuple
        `(outputs, scores, updated_cache)` holding only the requested parts,
        in that order: `scores` is a dict with `"self_attention"`
        `(batch, num_heads, target_len, key_len)` and, when the block has
        cross-attention, `"cross_attention"`
        `(batch, num_heads, target_len, source_len)`.

    Raises:
        ValueError: at construction, for an argument out of range, a
            non-bool `normalize_first` or an unknown `activation` or
            initializer. At call time (in graph mode and when building a
            functional model too, on static shapes): for non-float
            `decoder_inputs` or `encoder_outputs`, a `model_dim` other than
            the one the block was built with, `encoder_outputs` of another
            width or batch size than `decoder_inputs`, a padding mask that is
            not `(batch, seq_len)` of its sequence, a cache of the wrong
            shape, a known `self_attention_cache_update_index` past the
            cache, `encoder_outputs` given to a block built without
            cross-attention (or missing from one built with it), or one of
            keras-hub's spellings (`padding_mask`, `decoder_padding_mask`,
            `encoder_padding_mask`, `use_causal_mask`, ...; the message names
            the argument to use).

    Example:

    >>> block = keras_transformer_layers.TransformerDecoderBlock(
    ...     num_heads=2, intermediate_dim=16)
    >>> target = np.ones((2, 4, 8), "float32")
    >>> source = np.ones((2, 6, 8), "float32")
    >>> tuple(block(target, source).shape)
    (2, 4, 8)

    Reference:
        Vaswani et al., "Attention Is All You Need", 2017, sections 3.1, 3.2.3.
    """

    keras_hub_arguments = KERAS_HUB_ARGUMENTS

    def build(self, decoder_inputs_shape, encoder_outputs_shape=None):
        _validation.check_rank(
            "decoder_inputs", decoder_inputs_shape, 3, "(batch, target_len, model_dim)"
        )
        model_dim = decoder_inputs_shape[-1]
        self._model_dim = model_dim
        shape = decoder_inputs_shape
        self.self_attention = self._make_attention(model_dim, "self_attention")
        self.self_attention.build(shape, shape)
        self.self_attention_layer_norm = self._make_pre_norm("self_attention_layer_norm", shape)
        self.self_attention_dropout = self._make_residual_dropout("self_attention_dropout")
        self.self_attention_add_norm = self._make_add_norm("self_attention_add_norm", shape)
        self.cross_attention = None
        self.cross_attention_layer_norm = None
        self.cross_attention_dropout = None
        self.cross_attention_add_norm = None
        if encoder_outputs_shape is not None:
            _check_encoder_width(shape, encoder_outputs_shape)
            self.cross_attention = self._make_attention(model_dim, "cross_attention")
            self.cross_attention.build(shape, encoder_outputs_shape)
            self.cross_attention_layer_norm = self._make_pre_norm(
                "cross_attention_layer_norm", shape
            )
            self.cross_attention_dropout = self._make_residual_dropout("cross_attention_dropout")
            self.cross_attention_add_norm = self._make_add_norm("cross_attention_add_norm", shape)
        self.feed_forward = self._make_feed_forward()
        self.feed_forward.build(shape)
        self.feed_forward_layer_norm = self._make_pre_norm("feed_forward_layer_norm", shape)
        self.feed_forward_dropout = self._make_residual_dropout("feed_forward_dropout")
        self.feed_forward_add_norm = self._make_add_norm("feed_forward_add_norm", shape)

    def _check_cache(self, name, cache, decoder_inputs):
        if cache is not None:
            attention = self.self_attention
            _validation.check_static_shape(
                name,
                cache.shape,
                (decoder_inputs.shape[0], 2, None, attention.num_heads, attention.key_dim),
                "(batch, 2, length, num_heads, key_dim)",
            )

    def _check_call(
        self,
        decoder_inputs,
        encoder_outputs,
        decoder_inputs_mask,
        encoder_outputs_mask,
        self_attention_cache,
        cross_attention_cache,
    ):
        _check_decoder_call(
            self, decoder_inputs, encoder_outputs, decoder_inputs_mask, encoder_outputs_mask
        )
        self._check_call_form(encoder_outputs, cross_attention_cache)
        self._check_cache("self_attention_cache", self_attention_cache, decoder_inputs)
        self._check_cache("cross_attention_cache", cross_attention_cache, decoder_inputs)

    def _check_call_form(self, encoder_outputs, cross_attention_cache=None):
        has_cross_attention = self.cross_attention is not None
        has_source = encoder_outputs is not None or cross_attention_cache is not None
        if has_cross_attention != has_source:
            raise ValueError(
                f"Layer '{self.name}' was built "
                + ("with" if has_cross_attention else "without")
                + " cross-attention, so `encoder_outputs` (or "
                + "`cross_attention_cache`) must be "
                + ("passed" if has_cross_attention else "omitted")
                + ". Received: encoder_outputs="
                + ("None" if encoder_outputs is None else f"<tensor {encoder_outputs.shape}>")
            )

    def call(
        self,
        decoder_inputs,
        encoder_outputs=None,
        decoder_inputs_mask=None,
        encoder_outputs_mask=None,
        self_attention_cache=None,
        self_attention_cache_update_index=None,
        cross_attention_cache=None,
        return_attention_scores=False,
        training=None,
        mask=None,
    ):
        # With a single tensor argument Keras passes the padding mask as `mask`.
        if decoder_inputs_mask is None:
            decoder_inputs_mask = mask
        self._check_call(
            decoder_inputs,
            encoder_outputs,
            decoder_inputs_mask,
            encoder_outputs_mask,
            self_attention_cache,
            cross_attention_cache,
        )
        if self_attention_cache is not None and self_attention_cache_update_index is not None:
            # A known index is refused here, under the block's names; the
            # attention layer guards the cache write in every mode.
            decode_step.check_cache_index(
                "self_attention_cache_update_index",
                self_attention_cache_update_index,
                decoder_inputs.shape[1],
                self_attention_cache.shape[2],
            )

        def attend_to_target(h):
            """Masked (causal) multi-head self-attention: (output, scores, cache)."""
            outputs = self.self_attention(
                h,
                h,
                query_mask=decoder_inputs_mask,
                value_mask=decoder_inputs_mask,
                use_causal_mask=True,
                cache=self_attention_cache,
                cache_update_index=self_attention_cache_update_index,
                return_attention_scores=return_attention_scores,
                training=training,
            )
            return _split_attention_outputs(
                outputs, return_attention_scores, self_attention_cache is not None
            )

        def attend_to_source(h):
            """Attention over the encoder output (section 3.2.3): (output, scores)."""
            outputs = self.cross_attention(
                h,
                encoder_outputs,
                query_mask=decoder_inputs_mask,
                value_mask=encoder_outputs_mask,
                cache=cross_attention_cache,
                return_attention_scores=return_attention_scores,
                training=training,
            )
            # Precomputed keys and values come back unchanged.
            output, scores, _ = _split_attention_outputs(
                outputs, return_attention_scores, cross_attention_cache is not None
            )
            return output, scores

        scores = {}
        x = decoder_inputs
        if self.normalize_first:
            # Pre-norm: x + Dropout(Sublayer(LayerNorm(x))) around each sublayer.
            h, scores["self_attention"], updated_cache = attend_to_target(
                self.self_attention_layer_norm(x)
            )
            x = x + self.self_attention_dropout(h, training=training)
            if self.cross_attention is not None:
                h, scores["cross_attention"] = attend_to_source(self.cross_attention_layer_norm(x))
                x = x + self.cross_attention_dropout(h, training=training)
            h = self.feed_forward(self.feed_forward_layer_norm(x), training=training)
            x = x + self.feed_forward_dropout(h, training=training)
        else:
            # Post-norm, Figure 1: LayerNorm(x + Dropout(Sublayer(x))) after each sublayer.
            h, scores["self_attention"], updated_cache = attend_to_target(x)
            x = self.self_attention_add_norm(x, h, training=training)
            if self.cross_attention is not None:
                h, scores["cross_attention"] = attend_to_source(x)
                x = self.cross_attention_add_norm(x, h, training=training)
            h = self.feed_forward(x, training=training)
            x = self.feed_forward_add_norm(x, h, training=training)
        outputs = (x,)
        if return_attention_scores:
            outputs += (scores,)
        if self_attention_cache is not None:
            outputs += (updated_cache,)
        return outputs if len(outputs) > 1 else x

    def compute_cross_attention_cache(self, encoder_outputs):
        """Keys and values of the cross-attention, computed once per source.

        Args:
            encoder_outputs: tensor of shape `(batch, source_len, model_dim)`.

        Returns:
            A tensor of shape `(batch, 2, source_len, num_heads, key_dim)` to
            pass as `cross_attention_cache`.
        """
        if self.cross_attention is None:
            raise ValueError(
                f"Layer '{self.name}' was built without cross-attention, so it has "
                "no cross-attention cache. Received: encoder_outputs="
                f"<tensor {encoder_outputs.shape}>"
            )
        return self.cross_attention.compute_cache(encoder_outputs)


@keras.saving.register_keras_serializable(package="keras_transformer_layers")
class TransformerDecoder(TransformerStackBase):
    """The decoder stack: `num_layers` identical `TransformerDecoderBlock`s.

    Section 3.1 of Vaswani et al. (2017). The decoder's padding mask and the
    causal mask go to every block's self-attention, the encoder's padding
    mask to every block's cross-attention. Called without `encoder_outputs`
    it is a decoder-only (GPT-style) stack. With `normalize_first=True` a
    final LayerNorm follows the last block.

    How the N encoder blocks feed the N decoder blocks (`encoder_connection`):
    `"last"`, the paper's (section 3.1, Figure 1), gives the output of the
    *last* encoder block to every decoder block. `"layerwise"` gives decoder
    block `i` the output of encoder block `i` (from
    `TransformerEncoder(..., return_all_outputs=True)`), so both stacks need
    the same depth; `encoder_outputs` is then a list or tuple of exactly
    `num_layers` tensors, block 0 first. See
    `docs/encoder_decoder_connection.md`.

    Args:
        num_layers: positive int, `N` in the paper.{args}
        encoder_connection: `"last"` or `"layerwise"`, as above. Defaults to
            `"last"`.

    Call arguments:
        decoder_inputs: tensor of shape `(batch, target_len, model_dim)`,
            usually the output of `PositionalEmbedding`.
        encoder_outputs: tensor of shape `(batch, source_len, model_dim)`,
            or with `encoder_connection="layerwise"` a list or tuple of
            `num_layers` such tensors; omit it for the decoder-only form.
        decoder_inputs_mask: optional boolean padding mask. Keras fills it.
        encoder_outputs_mask: optional boolean padding mask
            `(batch, source_len)`; with `"layerwise"`, one mask for every
            block or a list of `num_layers` masks. Keras fills it.
        self_attention_cache: optional tuple of `num_layers` tensors
            `(batch, 2, max_length, num_heads, key_dim)`, one self-attention
            cache per block, block 0 first (see
            `initial_self_attention_cache`); carried through a compiled
            decoding loop, each block's new keys and values are written in
            place. Defaults to `None`.
        self_attention_cache_update_index: int or scalar int tensor, position
            of the first of `decoder_inputs`; required with
            `self_attention_cache`. The new positions must fit in the cache,
            as in `TransformerDecoderBlock`. Defaults to `None`.
        cross_attention_cache: optional tuple of `num_layers` tensors
            `(batch, 2, source_len, num_heads, key_dim)` from
            `compute_cross_attention_cache` (in both connections);
            `encoder_outputs` may then be omitted (pass its padding mask as
            `encoder_outputs_mask`). Defaults to `None`.
        training: bool; enables dropout.

    Returns:
        A tensor shaped like `decoder_inputs`, carrying its Keras mask; with
        `self_attention_cache`, a tuple `(outputs, updated_cache)`, the
        updated cache a tuple like the one given.

    Raises:
        ValueError: as `TransformerDecoderBlock`; for an `encoder_connection`
            other than `"last"` and `"layerwise"`; for a
            `self_attention_cache` or `cross_attention_cache` that is not a
            tuple of one tensor per block; with
            `"layerwise"`, for
            `encoder_outputs` (or a list of masks) that is not a list or tuple
            of `num_layers` items; with `"last"`, for a list of them.

    Example:

    >>> decoder = keras_transformer_layers.TransformerDecoder(
    ...     num_layers=2, num_heads=2, intermediate_dim=16)
    >>> target = np.ones((2, 4, 8), "float32")
    >>> source = np.ones((2, 6, 8), "float32")
    >>> tuple(decoder(target, source).shape)
    (2, 4, 8)
    >>> layerwise = keras_transformer_layers.TransformerDecoder(
    ...     num_layers=2, num_heads=2, intermediate_dim=16,
    ...     encoder_connection="layerwise")
    >>> tuple(layerwise(target, [source, 2 * source]).shape)
    (2, 4, 8)

    Reference:
        Vaswani et al., "Attention Is All You Need", 2017, section 3.1.
    """

    block_class = TransformerDecoderBlock
    keras_hub_arguments = KERAS_HUB_ARGUMENTS

    def __init__(
        self, num_layers, num_heads, intermediate_dim, encoder_connection="last", **kwargs
    ):
        _validation.check_one_of("encoder_connection", encoder_connection, ENCODER_CONNECTIONS)
        super().__init__(num_layers, num_heads, intermediate_dim, **kwargs)
        self.encoder_connection = encoder_connection

    def _per_block(self, name, value, is_list):
        """`value` split into one item per block, following `encoder_connection`.

        `is_list` tells whether `value` holds one item per encoder block. With
        `"last"` (or `None`) every block gets `value` itself; with
        `"layerwise"` block `i` gets `value[i]`.
        """
        if value is None or not (is_list or self.encoder_connection == "layerwise"):
            return [value] * self.num_layers
        if self.encoder_connection == "last":
            raise ValueError(
                f"`{name}` must be one tensor with encoder_connection='last' "
                "(every block attends to the last encoder output); pass "
                "encoder_connection='layerwise' for one per block. Received: "
                f"{name}=<{type(value).__name__} of length {len(value)}>"
            )
        if not is_list or len(value) != self.num_layers:
            received = f"len({name})={len(value)}" if is_list else f"{name}=<one tensor>"
            raise ValueError(
                f"With encoder_connection='layerwise', `{name}` must be a list or "
                f"tuple of num_layers={self.num_layers} items, one per encoder "
                f"block (from `TransformerEncoder(..., return_all_outputs=True)`). "
                f"Received: {received}"
            )
        return list(value)

    def _encoder_outputs_per_block(self, encoder_outputs):
        return self._per_block(
            "encoder_outputs", encoder_outputs, isinstance(encoder_outputs, (list, tuple))
        )

    def _encoder_masks_per_block(self, encoder_outputs_mask):
        # With "layerwise", a single mask serves every block (the encoder
        # outputs share the source padding).
        if not isinstance(encoder_outputs_mask, (list, tuple)):
            return [encoder_outputs_mask] * self.num_layers
        return self._per_block("encoder_outputs_mask", encoder_outputs_mask, True)

    def build(self, decoder_inputs_shape, encoder_outputs_shape=None):
        is_list = encoder_outputs_shape is not None and all(
            isinstance(shape, (list, tuple)) for shape in encoder_outputs_shape
        )
        self._build_blocks(
            decoder_inputs_shape,
            self._per_block("encoder_outputs", encoder_outputs_shape, is_list),
        )

    def _check_call(
        self, decoder_inputs, encoder_outputs, decoder_inputs_mask, encoder_outputs_mask
    ):
        """Checks every block's arguments; returns the encoder outputs and masks per block."""
        per_block = (
            self._encoder_outputs_per_block(encoder_outputs),
            self._encoder_masks_per_block(encoder_outputs_mask),
        )
        for block_outputs, block_mask in zip(*per_block, strict=True):
            _check_decoder_call(
                self, decoder_inputs, block_outputs, decoder_inputs_mask, block_mask
            )
        return per_block

    def call(
        self,
        decoder_inputs,
        encoder_outputs=None,
        decoder_inputs_mask=None,
        encoder_outputs_mask=None,
        self_attention_cache=None,
        self_attention_cache_update_index=None,
        cross_attention_cache=None,
        training=None,
        mask=None,
    ):
        # With a single tensor argument Keras passes the padding mask as `mask`.
        if decoder_inputs_mask is None:
            decoder_inputs_mask = mask
        block_encoder_outputs, block_encoder_masks = self._check_call(
            decoder_inputs, encoder_outputs, decoder_inputs_mask, encoder_outputs_mask
        )
        block_caches = self._per_block_cache("self_attention_cache", self_attention_cache)
        cross_caches = self._per_block_cache("cross_attention_cache", cross_attention_cache)
        x = decoder_inputs
        updated_caches = []
        for block, block_outputs, block_mask, block_cache, cross_cache in zip(
            self.blocks,
            block_encoder_outputs,
            block_encoder_masks,
            block_caches,
            cross_caches,
            strict=True,
        ):
            x = block(
                x,
                block_outputs,
                decoder_inputs_mask=decoder_inputs_mask,
                encoder_outputs_mask=block_mask,
                self_attention_cache=block_cache,
                self_attention_cache_update_index=self_attention_cache_update_index,
                cross_attention_cache=cross_cache,
                training=training,
            )
            if self_attention_cache is not None:
                x, block_cache = x
                updated_caches.append(block_cache)
        if self.output_layer_norm is not None:
            x = self.output_layer_norm(x)
        if self_attention_cache is None:
            return x
        return x, tuple(updated_caches)

    def _per_block_cache(self, name, cache):
        """The cache of each block: the items of a tuple of `num_layers` tensors."""
        if cache is None:
            return [None] * self.num_layers
        if not isinstance(cache, (list, tuple)) or len(cache) != self.num_layers:
            received = (
                f"a {type(cache).__name__} of {len(cache)} tensors"
                if isinstance(cache, (list, tuple))
                else f"{name}={_validation.describe(cache)}"
            )
            raise ValueError(
                f"`{name}` must be a tuple of num_layers={self.num_layers} tensors, "
                f"one per block, block 0 first. Received: {received}"
            )
        return list(cache)

    def initial_self_attention_cache(self, batch_size, max_length):
        """The all-zero self-attention cache for decoding up to `max_length` positions.

        Args:
            batch_size: int or scalar int tensor.
            max_length: positive int, the number of positions the cache holds.

        Returns:
            A tuple of `num_layers` zero tensors
            `(batch_size, 2, max_length, num_heads, key_dim)` in the compute
            dtype, one per block, block 0 first.
        """
        _validation.check_positive_int("max_length", max_length)
        attention = self.blocks[0].self_attention
        shape = (batch_size, 2, max_length, attention.num_heads, attention.key_dim)
        return tuple(ops.zeros(shape, dtype=self.compute_dtype) for _ in self.blocks)

    def compute_cross_attention_cache(self, encoder_outputs):
        """Cross-attention keys and values of every block, computed once per source.

        Args:
            encoder_outputs: tensor of shape `(batch, source_len, model_dim)`;
                with `encoder_connection="layerwise"`, a list or tuple of
                `num_layers` such tensors (block `i` projects item `i`).

        Returns:
            A tuple of `num_layers` tensors
            `(batch, 2, source_len, num_heads, key_dim)`, one per block, to
            pass as `cross_attention_cache`.

        Raises:
            ValueError: for `encoder_outputs` that do not match
                `encoder_connection`, as in `call`.
        """
        per_block = self._encoder_outputs_per_block(encoder_outputs)
        return tuple(
            block.compute_cross_attention_cache(block_outputs)
            for block, block_outputs in zip(self.blocks, per_block, strict=True)
        )

    def get_config(self):
        config = super().get_config()
        config.update({"encoder_connection": self.encoder_connection})
        return config


TransformerDecoderBlock.__doc__ = TransformerDecoderBlock.__doc__.format(args=BLOCK_ARGS_DOC)
TransformerDecoder.__doc__ = TransformerDecoder.__doc__.format(args=BLOCK_ARGS_DOC)
