"""The encoder of Figure 1 (left): one block, and a stack of N blocks."""

import keras

from keras_transformer_layers import _validation
from keras_transformer_layers.layers._block import BLOCK_ARGS_DOC
from keras_transformer_layers.layers._block import TransformerLayerBase
from keras_transformer_layers.layers._block import TransformerStackBase


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
            other than the one the layer was built with, or a `mask` that is
            not `(batch, seq_len)` of `inputs`.

    Example:

    >>> block = keras_transformer_layers.TransformerEncoderBlock(
    ...     num_heads=2, intermediate_dim=16)
    >>> tuple(block(np.ones((2, 5, 8), "float32")).shape)
    (2, 5, 8)

    Reference:
        Vaswani et al., "Attention Is All You Need", 2017, section 3.1.
    """

    def build(self, inputs_shape):
        _validation.check_rank("inputs", inputs_shape, 3, "(batch, seq_len, model_dim)")
        model_dim = inputs_shape[-1]
        self._model_dim = model_dim
        self.self_attention = self._make_attention(model_dim, "self_attention")
        self.self_attention.build(inputs_shape, inputs_shape)
        self._build_residual("self_attention", inputs_shape)
        self.feed_forward = self._make_feed_forward()
        self.feed_forward.build(inputs_shape)
        self._build_residual("feed_forward", inputs_shape)

    def call(self, inputs, mask=None, training=None):
        _check_encoder_call(self, inputs, mask)
        # Sublayer 1: multi-head self-attention, then Add & Norm.
        x = self._sublayer_input("self_attention", inputs)
        x = self.self_attention(x, x, query_mask=mask, value_mask=mask, training=training)
        x = self._residual("self_attention", inputs, x, training)
        # Sublayer 2: position-wise feed-forward, then Add & Norm.
        residual = x
        x = self._sublayer_input("feed_forward", x)
        x = self.feed_forward(x, training=training)
        return self._residual("feed_forward", residual, x, training)

    def compute_output_shape(self, inputs_shape):
        return inputs_shape

    def compute_output_spec(self, inputs, mask=None, training=None):
        _check_encoder_call(self, inputs, mask)
        return keras.KerasTensor(inputs.shape, dtype=self.compute_dtype)


@keras.saving.register_keras_serializable(package="keras_transformer_layers")
class TransformerEncoder(TransformerStackBase):
    """The encoder stack: `num_layers` identical `TransformerEncoderBlock`s.

    Section 3.1 of Vaswani et al. (2017) (N = 6 in the base model). The padding
    mask goes to every block. With `normalize_first=True` a final LayerNorm
    follows the last block, as pre-norm stacks need.

    Args:
        num_layers: positive int, `N` in the paper.{args}

    Call arguments:
        inputs: tensor of shape `(batch, seq_len, model_dim)`, usually the
            output of `PositionalEmbedding`.
        mask: optional boolean padding mask `(batch, seq_len)`. Keras fills it
            from the mask of `inputs`.
        training: bool; enables dropout.

    Returns:
        The encoder output, shaped like `inputs`, carrying the same Keras mask.

    Raises:
        ValueError: as `TransformerEncoderBlock`.

    Example:

    >>> encoder = keras_transformer_layers.TransformerEncoder(
    ...     num_layers=2, num_heads=2, intermediate_dim=16)
    >>> tuple(encoder(np.ones((2, 5, 8), "float32")).shape)
    (2, 5, 8)

    Reference:
        Vaswani et al., "Attention Is All You Need", 2017, section 3.1.
    """

    block_class = TransformerEncoderBlock

    def build(self, inputs_shape):
        _validation.check_rank("inputs", inputs_shape, 3, "(batch, seq_len, model_dim)")
        self._build_blocks(inputs_shape)

    def call(self, inputs, mask=None, training=None):
        _check_encoder_call(self, inputs, mask)
        x = inputs
        for block in self.blocks:
            x = block(x, mask=mask, training=training)
        if self.output_layer_norm is not None:
            x = self.output_layer_norm(x)
        return x

    def compute_output_shape(self, inputs_shape):
        return inputs_shape

    def compute_output_spec(self, inputs, mask=None, training=None):
        _check_encoder_call(self, inputs, mask)
        return keras.KerasTensor(inputs.shape, dtype=self.compute_dtype)


TransformerEncoderBlock.__doc__ = TransformerEncoderBlock.__doc__.format(
    args=BLOCK_ARGS_DOC
)
TransformerEncoder.__doc__ = TransformerEncoder.__doc__.format(args=BLOCK_ARGS_DOC)
