"""Arguments and residual wiring shared by the encoder and decoder layers."""

import keras

from keras_transformer_layers import _validation
from keras_transformer_layers._quantization import dtype_config
from keras_transformer_layers.layers._initializers import clone_initializer
from keras_transformer_layers.layers.add_norm import AddNorm
from keras_transformer_layers.layers.attention import MultiHeadAttention
from keras_transformer_layers.layers.feed_forward import FeedForward

# Shared "Args:" section of the block and stack docstrings.
BLOCK_ARGS_DOC = """
        num_heads: positive int, `h` in the paper.
        intermediate_dim: positive int, inner width of the feed-forward
            network, `d_ff` in the paper.
        dropout: float in `[0, 1)`, the residual dropout of section 5.4,
            applied to each sublayer's output before it is added to the
            residual stream. Defaults to `0.0`.
        activation: activation of the feed-forward network. Defaults to
            `"relu"`.
        layer_norm_epsilon: finite positive float, LayerNorm epsilon.
            Defaults to `1e-6`.
        normalize_first: bool (a Python `bool`; strings and ints are
            rejected). `False` is the paper's post-norm
            `LayerNorm(x + Sublayer(x))`; `True` is pre-norm
            `x + Sublayer(LayerNorm(x))`, which is not the original
            architecture but trains deep stacks without warm-up. Defaults to
            `False`.
        key_dim: positive int, per-head size. Defaults to `None`, which means
            `model_dim // num_heads`; then `model_dim` must be divisible by
            `num_heads`.
        kernel_initializer: initializer of all kernels. Defaults to
            `"glorot_uniform"`.
        bias_initializer: initializer of all biases. Defaults to `"zeros"`.
        **kwargs: base layer arguments such as `name` and `dtype`."""


class TransformerLayerBase(keras.layers.Layer):
    """Holds the arguments every block and stack takes, and makes their sublayers.

    Each block wraps its sublayers (self-attention, cross-attention,
    feed-forward) in residual connections (section 3.1), and creates the
    layers of each one in `build()` as plain attributes named after the
    sublayer: post-norm, the paper's form, `LayerNorm(x + Dropout(F(x)))`,
    uses one `AddNorm` (`<sublayer>_add_norm`); pre-norm
    (`normalize_first=True`, not the original architecture),
    `x + Dropout(F(LayerNorm(x)))`, uses a `<sublayer>_layer_norm` and a
    `<sublayer>_dropout`. The attributes of the other form are `None`.
    """

    def __init__(
        self,
        num_heads,
        intermediate_dim,
        dropout=0.0,
        activation="relu",
        layer_norm_epsilon=1e-6,
        normalize_first=False,
        key_dim=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        _validation.check_positive_int("num_heads", num_heads)
        _validation.check_positive_int("intermediate_dim", intermediate_dim)
        _validation.check_rate("dropout", dropout)
        _validation.check_positive_float("layer_norm_epsilon", layer_norm_epsilon)
        _validation.check_bool("normalize_first", normalize_first)
        _validation.check_optional_positive_int("key_dim", key_dim)
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.activation = _validation.get_activation("activation", activation)
        self.layer_norm_epsilon = layer_norm_epsilon
        self.normalize_first = normalize_first
        self.key_dim = key_dim
        self.kernel_initializer = _validation.get_initializer(
            "kernel_initializer", kernel_initializer
        )
        self.bias_initializer = _validation.get_initializer("bias_initializer", bias_initializer)
        self.supports_masking = True
        self._model_dim = None  # set by build()

    # keras-hub's spellings of call arguments (its `TransformerEncoder` and
    # `TransformerDecoder`), each with what this layer takes instead; set by
    # each subclass.
    keras_hub_arguments = {}

    def __call__(self, *args, **kwargs):
        for name in sorted(kwargs.keys() & self.keras_hub_arguments.keys()):
            raise ValueError(
                f"`{type(self).__name__}` takes {self.keras_hub_arguments[name]} "
                f"(`{name}` is keras-hub's spelling). "
                f"Received: {name}={_validation.describe(kwargs[name])}"
            )
        return super().__call__(*args, **kwargs)

    def _block_kwargs(self):
        """The constructor arguments a stack passes on to each of its blocks."""
        return {
            "num_heads": self.num_heads,
            "intermediate_dim": self.intermediate_dim,
            "dropout": self.dropout,
            "activation": self.activation,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "normalize_first": self.normalize_first,
            "key_dim": self.key_dim,
            "kernel_initializer": clone_initializer(self.kernel_initializer),
            "bias_initializer": clone_initializer(self.bias_initializer),
            "dtype": self.dtype_policy,
        }

    def _resolve_key_dim(self, model_dim):
        if self.key_dim is not None:
            return self.key_dim
        if model_dim % self.num_heads != 0:
            raise ValueError(
                "The last dimension of the input must be divisible by `num_heads`. "
                f"Received: model_dim={model_dim}, num_heads={self.num_heads}"
            )
        return model_dim // self.num_heads

    def _check_sequence(self, name, tensor, layout):
        """A float rank-3 tensor whose width is the `model_dim` the layer was built with.

        Static shapes only, so the check also runs when a graph is traced
        (`tf.function`, XLA) and when a functional model is built.
        """
        _validation.check_float_tensor(name, tensor)
        _validation.check_rank(name, tensor.shape, 3, layout)
        _validation.check_static_shape(
            name,
            tensor.shape,
            (None, None, self._model_dim),
            f"{layout} with the model_dim the layer was built with",
        )

    def _check_padding_mask(self, name, mask, sequence_name, sequence_shape):
        """A padding mask must be `(batch, seq_len)` of its sequence: no broadcasting."""
        if mask is not None:
            _validation.check_static_shape(
                name,
                mask.shape,
                tuple(sequence_shape[:2]),
                f"(batch, seq_len) of `{sequence_name}`",
            )

    def _make_attention(self, model_dim, name):
        return MultiHeadAttention(
            num_heads=self.num_heads,
            key_dim=self._resolve_key_dim(model_dim),
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name=name,
        )

    def _make_feed_forward(self):
        return FeedForward(
            self.intermediate_dim,
            activation=self.activation,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name="feed_forward",
        )

    def _make_layer_norm(self, name):
        return keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name=name
        )

    def _make_add_norm(self, name, shape):
        """A built post-norm `LayerNorm(x + Dropout(F(x)))` (sections 3.1, 5.4)."""
        if self.normalize_first:
            return None
        add_norm = AddNorm(
            dropout=self.dropout,
            epsilon=self.layer_norm_epsilon,
            dtype=self.dtype_policy,
            name=name,
        )
        add_norm.build(shape, shape)
        return add_norm

    def _make_pre_norm(self, name, shape):
        """A built pre-norm LayerNorm of a sublayer's input."""
        if not self.normalize_first:
            return None
        layer_norm = self._make_layer_norm(name)
        layer_norm.build(shape)
        return layer_norm

    def _make_residual_dropout(self, name):
        """The pre-norm dropout of a sublayer's output (section 5.4)."""
        if not self.normalize_first:
            return None
        return keras.layers.Dropout(self.dropout, dtype=self.dtype_policy, name=name)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "dtype": dtype_config(self),
                "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim,
                "dropout": self.dropout,
                "activation": keras.activations.serialize(self.activation),
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "normalize_first": self.normalize_first,
                "key_dim": self.key_dim,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config


class TransformerStackBase(TransformerLayerBase):
    """`num_layers` blocks of `block_class`, sharing the block arguments.

    With `normalize_first=True` a final LayerNorm (`output_layer_norm`)
    follows the last block, as pre-norm stacks need; post-norm stacks end
    with the last block's Add & Norm.
    """

    block_class = None  # set by each subclass

    def __init__(self, num_layers, num_heads, intermediate_dim, **kwargs):
        _validation.check_positive_int("num_layers", num_layers)
        super().__init__(num_heads, intermediate_dim, **kwargs)
        self.num_layers = num_layers
        self.blocks = [
            self.block_class(**self._block_kwargs(), name=f"block_{index}")
            for index in range(num_layers)
        ]

    def _build_blocks(self, inputs_shape, block_shapes=None):
        """Builds each block (block `i` also with `block_shapes[i]`), then the final norm."""
        self._model_dim = inputs_shape[-1]
        for index, block in enumerate(self.blocks):
            if block_shapes is None:
                block.build(inputs_shape)
            else:
                block.build(inputs_shape, block_shapes[index])
        self.output_layer_norm = None
        if self.normalize_first:
            self.output_layer_norm = self._make_layer_norm("output_layer_norm")
            self.output_layer_norm.build(inputs_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"num_layers": self.num_layers})
        return config
