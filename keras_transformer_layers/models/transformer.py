"""`build_transformer`: the encoder-decoder of Figure 1 as a functional model."""

import keras

from keras_transformer_layers import _validation
from keras_transformer_layers.layers.decoder import TransformerDecoder
from keras_transformer_layers.layers.encoder import TransformerEncoder
from keras_transformer_layers.layers.positional import PositionalEmbedding


def build_transformer(
    source_vocabulary_size,
    target_vocabulary_size,
    num_layers=6,
    model_dim=512,
    num_heads=8,
    intermediate_dim=2048,
    dropout=0.1,
    activation="relu",
    layer_norm_epsilon=1e-6,
    normalize_first=False,
    max_wavelength=10000,
    name="transformer",
):
    """Builds the encoder-decoder Transformer as a functional `keras.Model`.

    Figure 1 of Vaswani et al. (2017): source ids go through
    `PositionalEmbedding` (token embedding times `sqrt(model_dim)` plus the
    sinusoid, section 3.4-3.5) and dropout (section 5.4) into a
    `TransformerEncoder`; target ids, shifted right by the caller (teacher
    forcing), go the same way into a `TransformerDecoder` that attends to the
    encoder output; a final `Dense` gives the logits (the pre-softmax linear
    transformation; its weights are not tied to the embeddings here). The
    defaults are the paper's base model (Table 3): N=6, d_model=512, h=8,
    d_ff=2048, P_drop=0.1.

    Id 0 is padding on both sides. The padding masks flow through the model
    from the embeddings, so padded source positions are never attended to and
    the logits carry the target padding mask, which Keras losses and metrics
    compiled on the model use as sample weights. The logits are float32 under
    every dtype policy, so the softmax in the loss is computed in full
    precision under mixed precision.

    Args:
        source_vocabulary_size: positive int, size of the source vocabulary.
        target_vocabulary_size: positive int, size of the target vocabulary.
        num_layers: positive int, `N`, blocks in each stack. Defaults to `6`.
        model_dim: positive int, `d_model`. Defaults to `512`.
        num_heads: positive int, `h`; must divide `model_dim`. Defaults to `8`.
        intermediate_dim: positive int, `d_ff`. Defaults to `2048`.
        dropout: float in `[0, 1)`, `P_drop`, on embeddings and residuals.
            Defaults to `0.1`.
        activation: feed-forward activation. Defaults to `"relu"`.
        layer_norm_epsilon: finite positive float. Defaults to `1e-6`.
        normalize_first: bool, pre-norm instead of the paper's post-norm.
            Defaults to `False`.
        max_wavelength: finite positive number, sinusoid base. Defaults to
            `10000`.
        name: string, the model name. Defaults to `"transformer"`.

    Returns:
        A `keras.Model` with int inputs `encoder_inputs` `(batch, None)` and
        `decoder_inputs` `(batch, None)` returning logits
        `(batch, target_len, target_vocabulary_size)`. Ids must lie in
        `[0, vocabulary_size)`: see `PositionalEmbedding` for where that is
        checked.

    Raises:
        ValueError: for an argument that is not an int, float or bool in
            range (NaN and inf included), an unknown `activation`, or a
            `model_dim` not divisible by `num_heads`.

    Example:

    >>> model = keras_transformer_layers.build_transformer(
    ...     100, 120, num_layers=1, model_dim=16, num_heads=2,
    ...     intermediate_dim=32)
    >>> logits = model({"encoder_inputs": np.array([[4, 5, 0]]),
    ...                 "decoder_inputs": np.array([[1, 7]])})
    >>> tuple(logits.shape)
    (1, 2, 120)

    Reference:
        Vaswani et al., "Attention Is All You Need", 2017, Figure 1, Table 3.
    """
    _validation.check_positive_int("source_vocabulary_size", source_vocabulary_size)
    _validation.check_positive_int("target_vocabulary_size", target_vocabulary_size)
    _validation.check_positive_int("num_layers", num_layers)
    _validation.check_positive_int("model_dim", model_dim)
    _validation.check_positive_int("num_heads", num_heads)
    _validation.check_positive_int("intermediate_dim", intermediate_dim)
    _validation.check_rate("dropout", dropout)
    _validation.get_activation("activation", activation)
    _validation.check_positive_float("layer_norm_epsilon", layer_norm_epsilon)
    _validation.check_bool("normalize_first", normalize_first)
    _validation.check_positive_float("max_wavelength", max_wavelength)
    if model_dim % num_heads != 0:
        raise ValueError(
            "`model_dim` must be divisible by `num_heads`. "
            f"Received: model_dim={model_dim}, num_heads={num_heads}"
        )
    stack_kwargs = {
        "num_layers": num_layers,
        "num_heads": num_heads,
        "intermediate_dim": intermediate_dim,
        "dropout": dropout,
        "activation": activation,
        "layer_norm_epsilon": layer_norm_epsilon,
        "normalize_first": normalize_first,
    }
    encoder_inputs = keras.Input((None,), dtype="int32", name="encoder_inputs")
    decoder_inputs = keras.Input((None,), dtype="int32", name="decoder_inputs")

    x = PositionalEmbedding(
        source_vocabulary_size,
        model_dim,
        max_wavelength=max_wavelength,
        name="encoder_embedding",
    )(encoder_inputs)
    x = keras.layers.Dropout(dropout, name="encoder_embedding_dropout")(x)
    encoder_outputs = TransformerEncoder(**stack_kwargs, name="encoder")(x)

    y = PositionalEmbedding(
        target_vocabulary_size,
        model_dim,
        max_wavelength=max_wavelength,
        name="decoder_embedding",
    )(decoder_inputs)
    y = keras.layers.Dropout(dropout, name="decoder_embedding_dropout")(y)
    y = TransformerDecoder(**stack_kwargs, name="decoder")(y, encoder_outputs)
    logits = keras.layers.Dense(target_vocabulary_size, dtype="float32", name="logits")(y)
    return keras.Model(
        inputs={"encoder_inputs": encoder_inputs, "decoder_inputs": decoder_inputs},
        outputs=logits,
        name=name,
    )
