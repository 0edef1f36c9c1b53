"""Sinusoidal positional encoding and token embedding (paper section 3.4, 3.5)."""

import math

import keras
from keras import ops

from keras_transformer_layers import _validation
from keras_transformer_layers._quantization import dtype_config


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
    inverse_frequencies = ops.exp(even_channels * (-math.log(max_wavelength) / dim))  # (dim,)
    angles = ops.expand_dims(positions, 1) * ops.expand_dims(inverse_frequencies, 0)  # (seq, dim)
    return ops.where(channels % 2 == 0, ops.sin(angles), ops.cos(angles))


def _check_encoding_inputs(inputs):
    _validation.check_rank("inputs", inputs.shape, 3, "(batch, seq_len, dim)")
    _validation.check_float_tensor("inputs", inputs)


def _check_start_index(start_index):
    """`start_index` is a non-negative int or a scalar int tensor.

    A concrete (eager) tensor is checked by value; a symbolic one cannot be.
    """
    if isinstance(start_index, (bool, int, float, str)) or start_index is None:
        _validation.check_non_negative_int("start_index", start_index)
        return
    _validation.check_int_tensor("start_index", start_index)
    _validation.check_rank("start_index", start_index.shape, 0, "()")
    value = _validation.concrete_value(start_index)
    if value is not None and value < 0:
        raise ValueError(
            f"`start_index` must be a non-negative integer. Received: start_index={int(value)}"
        )


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
        max_wavelength: finite positive number, the base of the geometric
            progression of wavelengths (10000 in the paper). Defaults to
            `10000`.
        **kwargs: base layer arguments such as `name` and `dtype`.

    Call arguments:
        inputs: float tensor of shape `(batch, seq_len, dim)`.
        start_index: non-negative int or scalar int tensor, the position of
            the first element; a decoding step at position `p` passes
            `start_index=p`. Defaults to `0`.

    Returns:
        A tensor shaped like `inputs`: `inputs + PE[start_index:start_index + seq_len]`.

    Raises:
        ValueError: for a `max_wavelength` that is not a finite positive
            number; at call time (in graph mode too), for `inputs` that are
            not a float rank-3 tensor, or a `start_index` that is not a
            non-negative int (a tensor is checked by value when eager).

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
        _check_encoding_inputs(inputs)
        _check_start_index(start_index)
        table = sinusoidal_table(
            ops.shape(inputs)[1], inputs.shape[-1], start_index, self.max_wavelength
        )
        return inputs + ops.cast(ops.expand_dims(table, 0), inputs.dtype)

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

    Token ids outside `[0, vocabulary_size)` and positions past the learned
    table are errors, never wrapped or clamped, wherever the layer can see
    them: eagerly, a `ValueError` naming the ids (or positions); in a graph
    (`tf.function`, SavedModel) and in TFLite, the table lookup fails (on CPU;
    TensorFlow's GPU gather returns zeros instead). XLA (`jit_compile=True`)
    clamps out-of-range lookups: there, lengths known when the function is
    traced are still checked in Python, but ids, and positions behind a
    tensor `start_index`, must be checked where they enter (the dataset
    pipeline, `generation.Generator`, the exported signatures).

    Args:
        vocabulary_size: positive int, number of token ids.
        embedding_dim: positive int, `d_model` in the paper.
        mask_zero: bool, whether id 0 is padding. Defaults to `True`.
        max_wavelength: finite positive number, base of the sinusoid.
            Defaults to `10000`.
        learned_positions: bool, learn the positional table instead of using
            the sinusoid. Defaults to `False`.
        sequence_length: positive int, rows of the learned table (the maximum
            length); required when `learned_positions=True`, ignored
            otherwise. Defaults to `None`.
        embeddings_initializer: initializer of the token table. Defaults to
            `"uniform"` (the Keras `Embedding` default).
        **kwargs: base layer arguments such as `name` and `dtype`.

    Call arguments:
        inputs: int tensor of token ids in `[0, vocabulary_size)`, shape
            `(batch, seq_len)`.
        start_index: non-negative int or scalar int tensor, position of the
            first token; with learned positions, `start_index + seq_len` must
            be at most `sequence_length`. Defaults to `0`.

    Returns:
        A tensor of shape `(batch, seq_len, embedding_dim)` carrying the
        padding mask when `mask_zero=True`.

    Raises:
        ValueError: at construction, for an argument out of range (NaN and
            inf included), a non-bool `mask_zero` or `learned_positions`, or
            an unknown initializer. At call time: for `inputs` that are not a
            rank-2 integer tensor (float and string ids included), or a bad
            `start_index`, in every mode; for positions past the learned
            table when the length and `start_index` are known in Python
            (eager, and when tracing a graph or XLA function); for
            out-of-range ids, eagerly.

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
        _validation.check_bool("mask_zero", mask_zero)
        _validation.check_positive_float("max_wavelength", max_wavelength)
        _validation.check_bool("learned_positions", learned_positions)
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
        self.embeddings_initializer = _validation.get_initializer(
            "embeddings_initializer", embeddings_initializer
        )
        self.supports_masking = mask_zero
        # A `ReversibleEmbedding` with tied weights holds the one `embeddings`
        # matrix of a plain `Embedding`; `TiedLogits` projects back through
        # it (section 3.4), int8-quantized or not, in float32.
        self.token_embedding = keras.layers.ReversibleEmbedding(
            vocabulary_size,
            embedding_dim,
            tie_weights=True,
            embeddings_initializer=self.embeddings_initializer,
            mask_zero=mask_zero,
            reverse_dtype="float32",
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
        self._check_inputs(inputs)
        _check_start_index(start_index)
        seq_len = ops.shape(inputs)[1]
        if self.learned_positions:
            self._check_positions(inputs.shape[1], start_index)
        ids = self._check_ids(inputs)
        embedded = self.token_embedding(ids)  # (batch, seq, dim)
        embedded = embedded * ops.cast(math.sqrt(self.embedding_dim), embedded.dtype)
        if self.learned_positions:
            positions = ops.arange(seq_len) + ops.cast(start_index, "int32")
            # `ops.take` would wrap a negative position to the end of the
            # table: send it past the end instead, where the gather fails.
            positions = ops.where(positions < 0, self.sequence_length, positions)
            positions = ops.take(self.position_embeddings, positions, axis=0)  # (seq, dim)
        else:
            positions = sinusoidal_table(
                seq_len, self.embedding_dim, start_index, self.max_wavelength
            )  # (seq, dim)
        return embedded + ops.cast(ops.expand_dims(positions, 0), embedded.dtype)

    def _check_inputs(self, inputs):
        _validation.check_rank("inputs", inputs.shape, 2, "(batch, seq_len)")
        _validation.check_int_tensor("inputs", inputs)

    def _check_ids(self, inputs):
        """Token ids outside `[0, vocabulary_size)` are an error, never a wrap.

        Eager values are checked here. In a graph a negative id is replaced
        by `vocabulary_size`, so that the embedding gather fails loudly on CPU
        and in TFLite instead of wrapping it to the last row; under XLA the
        gather clamps, so ids must be checked where they enter.
        """
        values = _validation.concrete_value(inputs)
        if values is not None:
            bad = values[(values < 0) | (values >= self.vocabulary_size)]
            if bad.size:
                raise ValueError(
                    "`inputs` must hold token ids in [0, vocabulary_size) = "
                    f"[0, {self.vocabulary_size}). Received: ids "
                    f"{sorted(set(bad.tolist()))[:10]} in inputs, "
                    f"vocabulary_size={self.vocabulary_size}"
                )
        if keras.backend.standardize_dtype(inputs.dtype) not in ("int32", "int64"):
            inputs = ops.cast(inputs, "int32")
        return ops.where(inputs < 0, self.vocabulary_size, inputs)

    def _check_positions(self, seq_len, start_index):
        """The learned table has `sequence_length` rows: positions past it are an error.

        Checked in Python when the length and `start_index` are known (eager,
        and at trace time in a graph or under XLA). Otherwise, positions past
        the table make the gather fail on CPU and in TFLite; under XLA the
        gather clamps, so callers with a tensor `start_index` (the decoding
        loops) check their maximum length against `sequence_length`.
        """
        if not isinstance(start_index, int):
            start_index = _validation.concrete_value(start_index)
        # An unknown length is None, or on JAX a symbolic dimension.
        if not isinstance(seq_len, int) or start_index is None:
            return
        end = int(start_index) + seq_len
        if end > self.sequence_length:
            raise ValueError(
                "Positions past the learned position table: `start_index` + "
                "`inputs.shape[1]` must be at most `sequence_length`. Received: "
                f"start_index={int(start_index)}, inputs.shape[1]={seq_len}, "
                f"sequence_length={self.sequence_length}"
            )

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero:
            return None
        return ops.not_equal(inputs, 0)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "dtype": dtype_config(self),
                "vocabulary_size": self.vocabulary_size,
                "embedding_dim": self.embedding_dim,
                "mask_zero": self.mask_zero,
                "max_wavelength": self.max_wavelength,
                "learned_positions": self.learned_positions,
                "sequence_length": self.sequence_length,
                "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
            }
        )
        return config
