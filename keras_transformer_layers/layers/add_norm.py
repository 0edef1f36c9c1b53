"""Residual connection followed by layer normalization (paper section 3.1, 5.4)."""

import keras

from keras_transformer_layers import _validation


@keras.saving.register_keras_serializable(package="keras_transformer_layers")
class AddNorm(keras.layers.Layer):
    """Residual connection followed by layer normalization ("Add & Norm").

    Computes `LayerNorm(inputs + Dropout(sublayer_output))`, the box drawn
    after every sublayer in Figure 1 of Vaswani et al. (2017): section 3.1
    gives `LayerNorm(x + Sublayer(x))` and section 5.4 applies dropout to the
    sublayer output before the sum. LayerNorm normalizes each position over
    its features, with the biased variance and `epsilon` inside the square
    root, so padding in a batch never changes real positions.

    Args:
        dropout: float in `[0, 1)`. Rate applied to `sublayer_output` before
            the sum. Defaults to `0.0`.
        epsilon: finite positive float added to the variance. Defaults to
            `1e-6`.
        **kwargs: base layer arguments such as `name` and `dtype`.

    Call arguments:
        inputs: float residual stream of shape `(batch, seq_len, model_dim)`.
        sublayer_output: float tensor with the same shape as `inputs` (no
            broadcasting).
        training: bool; enables dropout.

    Returns:
        A tensor shaped like `inputs`. The Keras mask of `inputs` passes through.

    Raises:
        ValueError: at construction, for a `dropout` outside `[0, 1)` or an
            `epsilon` that is not a finite positive number; at call time (in
            graph mode too), for non-float inputs, a `sublayer_output` whose
            static shape differs from `inputs.shape`, or a `model_dim` other
            than the one the layer was built with.

    Example:

    >>> layer = keras_transformer_layers.AddNorm(dropout=0.1)
    >>> x = np.ones((2, 4, 8), "float32")
    >>> tuple(layer(x, x).shape)
    (2, 4, 8)

    Reference:
        Vaswani et al., "Attention Is All You Need", 2017, sections 3.1, 5.4;
        Ba et al., "Layer Normalization", 2016.
    """

    def __init__(self, dropout=0.0, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        _validation.check_rate("dropout", dropout)
        _validation.check_positive_float("epsilon", epsilon)
        self.dropout = dropout
        self.epsilon = epsilon
        self.supports_masking = True
        self._model_dim = None  # set by build()
        self.dropout_layer = keras.layers.Dropout(dropout, dtype=self.dtype_policy, name="dropout")
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=epsilon, dtype=self.dtype_policy, name="layer_norm"
        )

    def build(self, inputs_shape, sublayer_output_shape):
        self.layer_norm.build(inputs_shape)
        self._model_dim = inputs_shape[-1]

    def _check_inputs(self, inputs, sublayer_output):
        _validation.check_features("inputs", inputs, self._model_dim)
        _validation.check_float_tensor("sublayer_output", sublayer_output)
        # No broadcasting: a (batch, 1, dim) output added to every position
        # is a wiring mistake.
        _validation.check_static_shape(
            "sublayer_output", sublayer_output.shape, tuple(inputs.shape), "equal to `inputs.shape`"
        )

    def call(self, inputs, sublayer_output, training=None):
        self._check_inputs(inputs, sublayer_output)
        summed = inputs + self.dropout_layer(sublayer_output, training=training)
        return self.layer_norm(summed)

    def get_config(self):
        config = super().get_config()
        config.update({"dropout": self.dropout, "epsilon": self.epsilon})
        return config
