"""The encoder of Figure 1 (left): one block, and a stack of N blocks."""

import keras

from keras_transformer_layers import _validation
from keras_transformer_layers.layers._block import BLOCK_ARGS_DOC
from keras_transformer_layers.layers._block import TransformerLayerBase
from keras_transformer_layers.layers._block import TransformerStackBase

# keras-hub's spellings of the call arguments (see `TransformerLayerBase`).
KERAS_HUB_ARGUMENTS = {"padding_mask": "the padding mask as `mask`"}


def _check_encoder_call(layer, inputs, mask):
    layer._check_sequence("inputs", inputs, "(batch, seq_len, model_dim)")
    layer._check_padding_mask("mask", mask, "inputs", inputs.shape)


@keras.saving.register_keras_serializable(package="keras_transformer_layers")
class TransformerEncoderBlock(TransformerLayerBase):
    """One encoder layer: self-attention, Add & Norm, feed-forward, Add & Norm.

    Section 3.1 and Figure 1 (left) of Vaswani et al. (2017). Every position
    attends to every non-padding position of the same sequence; the Keras
    padding mask of `inputs` (from `PositionalEmbedding(mask_zero=True)`) is
    applied to the keys and passes through to the output.

    Args:{args}

    Call arguments:
        inputs: float tensor of shape `(batch, seq_len, model_dim)`.
        mask: optional boolean padding mask `(batch, seq_len)`, True for real
            tokens. Keras fills it from the mask of `inputs`.
        training: bool; enables dropout.

    Returns:
        A tensor shaped like `inputs`, carrying the same Keras mask.

    Raises:
        ValueError: at construction, for an argument out of range, a
            non-bool `normalize_first` or an unknown `activation` or
            initializer; at call time (in graph mode and when building a
            functional model too), for non-float `inputs`, a `model_dim`
            other than the one the layer was built with, a `mask` that is
            not `(batch, seq_len)` of `inputs`, or keras-hub's spelling
            `padding_mask` (the message names `mask`).

    Example:

    >>> block = keras_transformer_layers.TransformerEncoderBlock(
    ...     num_heads=2, intermediate_dim=16)
    >>> tuple(block(np.ones((2, 5, 8), "float32")).shape)
    (2, 5, 8)

    Reference:
        Vaswani et al., "Attention Is All You Need", 2017, section 3.1.
    """

    keras_hub_arguments = KERAS_HUB_ARGUMENTS

    def build(self, inputs_shape):
        _validation.check_rank("inputs", inputs_shape, 3, "(batch, seq_len, model_dim)")
        model_dim = inputs_shape[-1]
        self._model_dim = model_dim
        self.self_attention = self._make_attention(model_dim, "self_attention")
        self.self_attention.build(inputs_shape, inputs_shape)
        self.self_attention_layer_norm = self._make_pre_norm(
            "self_attention_layer_norm", inputs_shape
        )
        self.self_attention_dropout = self._make_residual_dropout("self_attention_dropout")
        self.self_attention_add_norm = self._make_add_norm("self_attention_add_norm", inputs_shape)
        self.feed_forward = self._make_feed_forward()
        self.feed_forward.build(inputs_shape)
        self.feed_forward_layer_norm = self._make_pre_norm("feed_forward_layer_norm", inputs_shape)
        self.feed_forward_dropout = self._make_residual_dropout("feed_forward_dropout")
        self.feed_forward_add_norm = self._make_add_norm("feed_forward_add_norm", inputs_shape)

    def call(self, inputs, mask=None, training=None):
        _check_encoder_call(self, inputs, mask)
        x = inputs
        if self.normalize_first:
            # Pre-norm: x + Dropout(Sublayer(LayerNorm(x))) around each sublayer.
            h = self.self_attention_layer_norm(x)
            h = self.self_attention(h, h, query_mask=mask, value_mask=mask, training=training)
            x = x + self.self_attention_dropout(h, training=training)
            h = self.feed_forward_layer_norm(x)
            h = self.feed_forward(h, training=training)
            return x + self.feed_forward_dropout(h, training=training)
        # Post-norm, Figure 1: LayerNorm(x + Dropout(Sublayer(x))) after each sublayer.
        h = self.self_attention(x, x, query_mask=mask, value_mask=mask, training=training)
        x = self.self_attention_add_norm(x, h, training=training)
        h = self.feed_forward(x, training=training)
        return self.feed_forward_add_norm(x, h, training=training)


@keras.saving.register_keras_serializable(package="keras_transformer_layers")
class TransformerEncoder(TransformerStackBase):
    """The encoder stack: `num_layers` identical `TransformerEncoderBlock`s.

    Section 3.1 of Vaswani et al. (2017) (N = 6 in the base model). The padding
    mask goes to every block. With `normalize_first=True` a final LayerNorm
    follows the last block, as pre-norm stacks need.

    By default the stack returns the last block's output, which the paper's
    decoder attends to in every block (Figure 1). With
    `return_all_outputs=True` it returns the output of every block instead,
    for a `TransformerDecoder(encoder_connection="layerwise")`, whose block
    `i` attends to encoder block `i`. Pre-norm: the residual stream between
    pre-norm blocks is not normalized (its scale grows with depth), so the
    final LayerNorm (`output_layer_norm`, one set of weights) is applied to
    every returned output, not only the last; the last output is then the
    same tensor in both settings, and the weights are the same.

    Args:
        num_layers: positive int, `N` in the paper.{args}
        return_all_outputs: bool, return the list of the `num_layers` block
            outputs instead of the last one. Defaults to `False`.

    Call arguments:
        inputs: tensor of shape `(batch, seq_len, model_dim)`, usually the
            output of `PositionalEmbedding`.
        mask: optional boolean padding mask `(batch, seq_len)`. Keras fills it
            from the mask of `inputs`.
        training: bool; enables dropout.

    Returns:
        The encoder output, shaped like `inputs`, carrying the same Keras mask;
        with `return_all_outputs=True`, a list of `num_layers` such tensors,
        block 0 first, each carrying the mask.

    Raises:
        ValueError: as `TransformerEncoderBlock`, and for a non-bool
            `return_all_outputs`.

    Example:

    >>> encoder = keras_transformer_layers.TransformerEncoder(
    ...     num_layers=2, num_heads=2, intermediate_dim=16)
    >>> tuple(encoder(np.ones((2, 5, 8), "float32")).shape)
    (2, 5, 8)
    >>> all_outputs = keras_transformer_layers.TransformerEncoder(
    ...     num_layers=2, num_heads=2, intermediate_dim=16,
    ...     return_all_outputs=True)(np.ones((2, 5, 8), "float32"))
    >>> [tuple(output.shape) for output in all_outputs]
    [(2, 5, 8), (2, 5, 8)]

    Reference:
        Vaswani et al., "Attention Is All You Need", 2017, section 3.1.
    """

    block_class = TransformerEncoderBlock
    keras_hub_arguments = KERAS_HUB_ARGUMENTS

    def __init__(self, num_layers, num_heads, intermediate_dim, return_all_outputs=False, **kwargs):
        _validation.check_bool("return_all_outputs", return_all_outputs)
        super().__init__(num_layers, num_heads, intermediate_dim, **kwargs)
        self.return_all_outputs = return_all_outputs

    def build(self, inputs_shape):
        _validation.check_rank("inputs", inputs_shape, 3, "(batch, seq_len, model_dim)")
        self._build_blocks(inputs_shape)

    def call(self, inputs, mask=None, training=None):
        _check_encoder_call(self, inputs, mask)
        x = inputs
        outputs = []
        for block in self.blocks:
            x = block(x, mask=mask, training=training)
            outputs.append(x)
        if not self.return_all_outputs:
            outputs = outputs[-1:]
        if self.output_layer_norm is not None:
            outputs = [self.output_layer_norm(output) for output in outputs]
        return outputs if self.return_all_outputs else outputs[0]

    def compute_mask(self, inputs, mask=None):
        return [mask] * self.num_layers if self.return_all_outputs else mask

    def get_config(self):
        config = super().get_config()
        config.update({"return_all_outputs": self.return_all_outputs})
        return config


TransformerEncoderBlock.__doc__ = TransformerEncoderBlock.__doc__.format(args=BLOCK_ARGS_DOC)
TransformerEncoder.__doc__ = TransformerEncoder.__doc__.format(args=BLOCK_ARGS_DOC)
