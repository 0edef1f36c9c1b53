"""Sinusoidal positional encoding and token embedding (paper section 3.4, 3.5)."""

import math

import keras
from keras import ops

from keras_transformer_layers import _validation


def sinusoidal_table(sequence_length, dim, start_index=0, max_wavelength=10000):
    """The paper's interleaved sinusoid table, computed in float32.

    `PE(pos, 2i) = sin(pos / max_wavelength^(2i / dim))` and
    `PE(pos, 2i + 1) = cos(pos / max_wavelength^(2i / dim))` for
    `pos = start_index, ..., start_index + sequence_length - 1`.

    Positions stay float32 even under a 16-bit policy: in bfloat16, integer
    positions above 256 are already rounded, which moves the sinusoids by up
    to their full range.

    Args:
        sequence_length: int or scalar tensor, number of positions.
        dim: int, width of the encoding.
        start_index: int or scalar tensor, first position. Defaults to `0`.
        max_wavelength: positive number, the paper's 10000. Defaults to `10000`.

    Returns:
        A float32 tensor of shape `(sequence_length, dim)`.
    """
    positions = ops.cast(ops.arange(sequence_length), "float32") + ops.cast(
        start_index, "float32"
    )  # (seq,)
    channels = ops.arange(dim)
    even_channels = ops.cast(channels - channels % 2, "float32")  # 2i for 2i and 2i+1
    inverse_frequencies = ops.exp(
        even_channels * (-math.log(max_wavelength) / dim)
    )  # (dim,)
    angles = ops.expand_dims(positions, 1) * ops.expand_dims(
        inverse_frequencies, 0
    )  # (seq, dim)
    return ops.where(channels % 2 == 0, ops.sin(angles), ops.cos(angles))


@keras.saving.register_keras_serializable(package="keras_transformer_layers")
class PositionalEncoding(keras.layers.Layer):
    """Adds the fixed sinusoidal positional encoding to its input.

    Implements section 3.5 of Vaswani et al. (2017): the input (usually a
    scaled token embedding) plus `PE(pos, 2i) = sin(pos / 10000^(2i/d))`,
    `PE(pos, 2i+1) = cos(pos / 10000^(2i/d))`, with sine and cosine
    interleaved on even and odd channels. Any sequence length works; there is
    no table of fixed size. The table is computed in float32 and cast to the
    compute dtype. The layer has no weights.

    The Keras mask of `inputs` passes through unchanged.

    Args:
        max_wavelength: positive number, the base of the geometric progression
            of wavelengths (10000 in the paper). Defaults to `10000`.
        **kwargs: base layer arguments such as `name` and `dtype`.

    Call arguments:
        inputs: float tensor of shape `(batch, seq_len, dim)`.
        start_index: int or scalar int tensor, the position of the first
            element; a decoding step at position `p` passes `start_index=p`.
            Defaults to `0`.

    Returns:
        A tensor shaped like `inputs`: `inputs + PE[start_index:start_index + seq_len]`.

    Example:

    >>> layer = keras_transformer_layers.PositionalEncoding()
    >>> x = np.zeros((1, 3, 4), "float32")
    >>> np.round(np.asarray(layer(x))[0, 0], 3)
    array([0., 1., 0., 1.], dtype=float32)

    Reference:
        Vaswani et al., "Attention Is All You Need", 2017, section 3.5.
    """

    def __init__(self, max_wavelength=10000, **kwargs):
        super().__init__(**kwargs)
        _validation.check_positive_float("max_wavelength", max_wavelength)
        self.max_wavelength = max_wavelength
        self.supports_masking = True

    def call(self, inputs, start_index=0):
        _validation.check_rank("inputs", inputs.shape, 3, "(batch, seq_len, dim)")
        table = sinusoidal_table(
            ops.shape(inputs)[1], inputs.shape[-1], start_index, self.max_wavelength
        )
        return inputs + ops.cast(ops.expand_dims(table, 0), inputs.dtype)

    def compute_output_shape(self, inputs_shape):
        return inputs_shape

    def get_config(self):
        config = super().get_config()
        config.update({"max_wavelength": self.max_wavelength})
        return config


@keras.saving.register_keras_serializable(package="keras_transformer_layers")
class PositionalEmbedding(keras.layers.Layer):
    """Token embedding scaled by `sqrt(embedding_dim)` plus a positional encoding.

    Section 3.4 of Vaswani et al. (2017) multiplies the embedding weights by
    `sqrt(d_model)`; section 3.5 adds the sinusoidal encoding (see
    `PositionalEncoding`). With `learned_positions=True` the sinusoid is
    replaced by a trained table of `sequence_length` rows, the variant the
    paper reports as giving nearly identical results (Table 3, row E).

    With `mask_zero=True`, id 0 is padding and the layer emits the Keras
    padding mask `ids != 0`, which the encoder and decoder layers consume.

    Args:
        vocabulary_size: positive int, number of token ids.
        embedding_dim: positive int, `d_model` in the paper.
        mask_zero: bool, whether id 0 is padding. Defaults to `True`.
        max_wavelength: positive number, base of the sinusoid. Defaults to
            `10000`.
        learned_positions: bool, learn the positional table instead of using
            the sinusoid. Defaults to `False`.
        sequence_length: positive int, rows of the learned table (the maximum
            length); required when `learned_positions=True`, ignored
            otherwise. Defaults to `None`.
        embeddings_initializer: initializer of the token table. Defaults to
            `"uniform"` (the Keras `Embedding` default).
        **kwargs: base layer arguments such as `name` and `dtype`.

    Call arguments:
        inputs: int tensor of token ids, shape `(batch, seq_len)`.
        start_index: int or scalar int tensor, position of the first token.
            Defaults to `0`.

    Returns:
        A tensor of shape `(batch, seq_len, embedding_dim)` carrying the
        padding mask when `mask_zero=True`.

    Example:

    >>> layer = keras_transformer_layers.PositionalEmbedding(100, 8)
    >>> tuple(layer(np.array([[5, 7, 0]])).shape)
    (1, 3, 8)

    Reference:
        Vaswani et al., "Attention Is All You Need", 2017, sections 3.4, 3.5.
    """

    def __init__(
        self,
        vocabulary_size,
        embedding_dim,
        mask_zero=True,
        max_wavelength=10000,
        learned_positions=False,
        sequence_length=None,
        embeddings_initializer="uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        _validation.check_positive_int("vocabulary_size", vocabulary_size)
        _validation.check_positive_int("embedding_dim", embedding_dim)
        _validation.check_positive_float("max_wavelength", max_wavelength)
        if learned_positions:
            _validation.check_positive_int("sequence_length", sequence_length)
        else:
            _validation.check_optional_positive_int("sequence_length", sequence_length)
        self.vocabulary_size = vocabulary_size
        self.embedding_dim = embedding_dim
        self.mask_zero = mask_zero
        self.max_wavelength = max_wavelength
        self.learned_positions = learned_positions
        self.sequence_length = sequence_length
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.supports_masking = mask_zero
        self.token_embedding = keras.layers.Embedding(
            vocabulary_size,
            embedding_dim,
            embeddings_initializer=self.embeddings_initializer,
            mask_zero=mask_zero,
            dtype=self.dtype_policy,
            name="token_embedding",
        )

    def build(self, inputs_shape):
        self.token_embedding.build(inputs_shape)
        if self.learned_positions:
            self.position_embeddings = self.add_weight(
                shape=(self.sequence_length, self.embedding_dim),
                initializer="uniform",
                name="position_embeddings",
            )

    def call(self, inputs, start_index=0):
        _validation.check_rank("inputs", inputs.shape, 2, "(batch, seq_len)")
        embedded = self.token_embedding(inputs)  # (batch, seq, dim)
        embedded = embedded * ops.cast(math.sqrt(self.embedding_dim), embedded.dtype)
        seq_len = ops.shape(inputs)[1]
        if self.learned_positions:
            positions = ops.slice(
                self.position_embeddings, (start_index, 0), (seq_len, self.embedding_dim)
            )  # (seq, dim)
        else:
            positions = sinusoidal_table(
                seq_len, self.embedding_dim, start_index, self.max_wavelength
            )  # (seq, dim)
        return embedded + ops.cast(ops.expand_dims(positions, 0), embedded.dtype)

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero:
            return None
        return ops.not_equal(inputs, 0)

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape) + (self.embedding_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "embedding_dim": self.embedding_dim,
                "mask_zero": self.mask_zero,
                "max_wavelength": self.max_wavelength,
                "learned_positions": self.learned_positions,
                "sequence_length": self.sequence_length,
                "embeddings_initializer": keras.initializers.serialize(
                    self.embeddings_initializer
                ),
            }
        )
        return config
