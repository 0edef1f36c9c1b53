"""Position-wise feed-forward network (paper section 3.3)."""

import keras

from keras_transformer_layers import _validation
from keras_transformer_layers._quantization import dtype_config
from keras_transformer_layers.layers._initializers import clone_initializer


@keras.saving.register_keras_serializable(package="keras_transformer_layers")
class FeedForward(keras.layers.Layer):
    """Position-wise feed-forward network, `max(0, x W1 + b1) W2 + b2`.

    Equation (2) of Vaswani et al. (2017): two linear maps with a ReLU in
    between, applied to every position separately and identically. The inner
    width is `intermediate_dim` (`d_ff` in the paper, 2048 for the base
    model); the output width equals the input width (`d_model`). Dropout, when
    set, acts on the hidden activations.

    Args:
        intermediate_dim: positive int, `d_ff` in the paper.
        activation: activation of the hidden layer. Defaults to `"relu"`.
        dropout: float in `[0, 1)`, dropout on the hidden activations.
            Defaults to `0.0`.
        kernel_initializer: initializer of both kernels. Defaults to
            `"glorot_uniform"`.
        bias_initializer: initializer of both biases. Defaults to `"zeros"`.
        **kwargs: base layer arguments such as `name` and `dtype`.

    Call arguments:
        inputs: float tensor of shape `(batch, seq_len, model_dim)`.
        training: bool; enables dropout.

    Returns:
        A tensor shaped like `inputs`. The Keras mask passes through.

    Raises:
        ValueError: at construction, for an argument out of range or an
            unknown `activation` or initializer; at call time (in graph mode
            too), for non-float inputs or a `model_dim` other than the one
            the layer was built with.

    Example:

    >>> layer = keras_transformer_layers.FeedForward(intermediate_dim=32)
    >>> tuple(layer(np.ones((2, 4, 8), "float32")).shape)
    (2, 4, 8)

    Reference:
        Vaswani et al., "Attention Is All You Need", 2017, section 3.3.
    """

    def __init__(
        self,
        intermediate_dim,
        activation="relu",
        dropout=0.0,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        _validation.check_positive_int("intermediate_dim", intermediate_dim)
        _validation.check_rate("dropout", dropout)
        self.intermediate_dim = intermediate_dim
        self.activation = _validation.get_activation("activation", activation)
        self.dropout = dropout
        self.kernel_initializer = _validation.get_initializer(
            "kernel_initializer", kernel_initializer
        )
        self.bias_initializer = _validation.get_initializer("bias_initializer", bias_initializer)
        self.supports_masking = True
        self._model_dim = None  # set by build()
        self.dropout_layer = keras.layers.Dropout(dropout, dtype=self.dtype_policy, name="dropout")

    def _dense(self, units, activation, name):
        return keras.layers.Dense(
            units,
            activation=activation,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name=name,
        )

    def build(self, inputs_shape):
        self.intermediate_dense = self._dense(
            self.intermediate_dim, self.activation, "intermediate_dense"
        )
        self.intermediate_dense.build(inputs_shape)
        self.output_dense = self._dense(inputs_shape[-1], None, "output_dense")
        self.output_dense.build(tuple(inputs_shape[:-1]) + (self.intermediate_dim,))
        self._model_dim = inputs_shape[-1]

    def _check_inputs(self, inputs):
        _validation.check_features("inputs", inputs, self._model_dim)

    def call(self, inputs, training=None):
        self._check_inputs(inputs)
        hidden = self.intermediate_dense(inputs)  # (batch, seq, intermediate_dim)
        hidden = self.dropout_layer(hidden, training=training)
        return self.output_dense(hidden)  # (batch, seq, model_dim)

    def get_config(self):
        config = super().get_config()
        config["dtype"] = dtype_config(self)
        config.update(
            {
                "intermediate_dim": self.intermediate_dim,
                "activation": keras.activations.serialize(self.activation),
                "dropout": self.dropout,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
