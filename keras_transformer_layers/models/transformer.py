"""`Seq2SeqTransformer`: the encoder-decoder of Figure 1 as a functional model class."""

import keras

from keras_transformer_layers import _validation
from keras_transformer_layers._quantization import dtype_config
from keras_transformer_layers.layers.decoder import ENCODER_CONNECTIONS
from keras_transformer_layers.layers.decoder import TransformerDecoder
from keras_transformer_layers.layers.encoder import TransformerEncoder
from keras_transformer_layers.layers.positional import PositionalEmbedding
from keras_transformer_layers.layers.tied_logits import TiedLogits
from keras_transformer_layers.models._arguments import TokenIdInputsMixin
from keras_transformer_layers.models._arguments import check_stack_arguments
from keras_transformer_layers.models._arguments import layers_dtype_policy
from keras_transformer_layers.models._arguments import logits_dtype_policy
from keras_transformer_layers.models._optimizer_build import OptimizerBuildMixin
from keras_transformer_layers.models.cached_decoding import CachedDecodingMixin

TIE_EMBEDDINGS = ("none", "decoder", "all")


@keras.saving.register_keras_serializable(package="keras_transformer_layers")
class Seq2SeqTransformer(CachedDecodingMixin, TokenIdInputsMixin, OptimizerBuildMixin, keras.Model):
    """The encoder-decoder Transformer, a functional `keras.Model` with the decoding interface.

    Figure 1 of Vaswani et al. (2017): source ids go through
    `PositionalEmbedding` (token embedding times `sqrt(model_dim)` plus the
    sinusoid, sections 3.4-3.5) and dropout (section 5.4) into a
    `TransformerEncoder`; target ids, shifted right by the caller (teacher
    forcing), go the same way into a `TransformerDecoder` that attends to the
    output of the last encoder block (section 3.1); a final `Dense` gives the
    logits (the pre-softmax linear transformation), unless `tie_embeddings`
    shares the embedding matrix with it (section 3.4, see below). The
    defaults are the paper's base model (Table 3): N=6, d_model=512, h=8,
    d_ff=2048, P_drop=0.1.

    Weight sharing (section 3.4): with `tie_embeddings="decoder"` the logits
    are `TiedLogits`, the decoder's token table transposed plus a separate
    output bias (one variable serves both, so the model has
    `target_vocabulary_size * model_dim` fewer parameters). With `"all"`
    (source and target share one vocabulary, so the two sizes must be equal)
    the encoder also uses the decoder's embedding layer: `encoder_embedding`
    and `decoder_embedding` are the same layer, one more
    `vocabulary_size * model_dim` saved. The table is multiplied by
    `sqrt(model_dim)` on the way in, not on the way out.

    The constructor builds the functional graph, so the model trains, saves
    and summarizes like any functional model; `get_config` holds the
    hyperparameters and `from_config` rebuilds the graph from them. The layers
    are named `encoder_embedding` (absent with `tie_embeddings="all"`),
    `encoder_embedding_dropout`, `encoder`, `decoder_embedding`,
    `decoder_embedding_dropout`, `decoder` and `logits`,
    and are also the attributes `encoder_embedding`, `encoder`,
    `decoder_embedding`, `decoder` and `logits_layer`.

    Id 0 is padding on both sides. The padding masks flow through the model
    from the embeddings, so padded source positions are never attended to and
    the logits carry the target padding mask, which Keras losses and metrics
    compiled on the model use as sample weights. The logits are float32 under
    every dtype policy, so the softmax in the loss is computed in full
    precision under mixed precision.

    Generation (section 6.1) uses the decoding interface instead of the full
    forward pass: `call_encoder(source_ids)` encodes a batch of sources once,
    `initial_cache(batch_size, max_length)` creates the self-attention cache
    and `call_decoder_with_cache(token_ids, index, cache, encoder_state)` runs
    the decoder on new target tokens only, giving the same logits as the full
    model at those positions; `decoding_spec` describes the vocabularies.

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
        encoder_connection: `"last"` (the paper, section 3.1: every decoder
            block attends to the output of the last encoder block) or
            `"layerwise"` (decoder block `i` attends to the output of encoder
            block `i`; see `TransformerDecoder`). Defaults to `"last"`.
        tie_embeddings: `"none"` (separate matrices), `"decoder"` (the
            logits reuse the decoder's token embedding) or `"all"` (the
            encoder, the decoder and the logits share one matrix; requires
            `source_vocabulary_size == target_vocabulary_size`). Section 3.4.
            Defaults to `"none"`.
        name: string, the model name. Defaults to `"transformer"`.
        dtype: `None`, a dtype policy or its name, the policy of every layer
            but the logits (always float32). Defaults to `None`, the global
            policy when the model is built; `get_config` records the policy
            used, so a model saved under `"mixed_float16"` loads under it.
        **kwargs: base model arguments such as `trainable`.

    Call arguments:
        inputs: dict with int `"encoder_inputs"` `(batch, source_len)` and
            `"decoder_inputs"` `(batch, target_len)`, ids in
            `[0, vocabulary_size)` with 0 as padding (see
            `PositionalEmbedding` for where ids are checked).
        training: bool; enables dropout.

    Returns:
        Float32 logits `(batch, target_len, target_vocabulary_size)` carrying
        the target padding mask.

    Raises:
        ValueError: for an argument that is not an int, float or bool in
            range (NaN and inf included), an unknown `activation`, `encoder_connection`,
            `tie_embeddings` or `dtype`, a `model_dim` not divisible by
            `num_heads`, or `tie_embeddings="all"` with different vocabulary sizes;
            when called (`fit`, `evaluate`, `predict` too), for inputs that are
            not integers (a float id is not truncated), naming the input.

    Example:

    >>> model = keras_transformer_layers.Seq2SeqTransformer(
    ...     100, 120, num_layers=1, model_dim=16, num_heads=2,
    ...     intermediate_dim=32)
    >>> source = np.array([[4, 5, 0]])
    >>> tuple(model({"encoder_inputs": source,
    ...              "decoder_inputs": np.array([[2, 7]])}).shape)
    (1, 2, 120)
    >>> state = model.call_encoder(source)
    >>> cache = model.initial_cache(batch_size=1, max_length=8)
    >>> logits, cache = model.call_decoder_with_cache(
    ...     np.array([[2]]), 0, cache, state)
    >>> tuple(logits.shape)
    (1, 1, 120)

    Reference:
        Vaswani et al., "Attention Is All You Need", 2017, section 3.1,
        Figure 1, Table 3.
    """

    def __init__(
        self,
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
        encoder_connection="last",
        tie_embeddings="none",
        name="transformer",
        dtype=None,
        **kwargs,
    ):
        _validation.check_positive_int("source_vocabulary_size", source_vocabulary_size)
        _validation.check_positive_int("target_vocabulary_size", target_vocabulary_size)
        check_stack_arguments(
            num_layers,
            model_dim,
            num_heads,
            intermediate_dim,
            dropout,
            activation,
            layer_norm_epsilon,
            normalize_first,
            max_wavelength,
        )
        _validation.check_one_of("encoder_connection", encoder_connection, ENCODER_CONNECTIONS)
        _validation.check_one_of("tie_embeddings", tie_embeddings, TIE_EMBEDDINGS)
        if tie_embeddings == "all" and source_vocabulary_size != target_vocabulary_size:
            raise ValueError(
                '`tie_embeddings="all"` shares one vocabulary, so `source_vocabulary_size` '
                "must equal `target_vocabulary_size`. Received: "
                f"source_vocabulary_size={source_vocabulary_size!r}, "
                f"target_vocabulary_size={target_vocabulary_size!r}"
            )
        policy = layers_dtype_policy(dtype)
        stack_kwargs = {
            "num_layers": num_layers,
            "num_heads": num_heads,
            "intermediate_dim": intermediate_dim,
            "dropout": dropout,
            "activation": activation,
            "layer_norm_epsilon": layer_norm_epsilon,
            "normalize_first": normalize_first,
            "dtype": policy,
        }
        # === Layers and functional graph ===
        # Created in graph order (encoder side first): layers draw seeds when
        # created, so this order fixes the weights a seeded model starts from.
        encoder_inputs = keras.Input((None,), dtype="int32", name="encoder_inputs")
        decoder_inputs = keras.Input((None,), dtype="int32", name="decoder_inputs")
        # The one embedding of a shared vocabulary is named for the decoder.
        encoder_embedding = PositionalEmbedding(
            source_vocabulary_size,
            model_dim,
            max_wavelength=max_wavelength,
            dtype=policy,
            name="decoder_embedding" if tie_embeddings == "all" else "encoder_embedding",
        )
        x = encoder_embedding(encoder_inputs)
        x = keras.layers.Dropout(dropout, dtype=policy, name="encoder_embedding_dropout")(x)
        # Layer-wise: every encoder block's output, one per decoder block.
        encoder = TransformerEncoder(
            **stack_kwargs, return_all_outputs=encoder_connection == "layerwise", name="encoder"
        )
        encoder_outputs = encoder(x)
        if tie_embeddings == "all":
            decoder_embedding = encoder_embedding
        else:
            decoder_embedding = PositionalEmbedding(
                target_vocabulary_size,
                model_dim,
                max_wavelength=max_wavelength,
                dtype=policy,
                name="decoder_embedding",
            )
        y = decoder_embedding(decoder_inputs)
        y = keras.layers.Dropout(dropout, dtype=policy, name="decoder_embedding_dropout")(y)
        decoder = TransformerDecoder(
            **stack_kwargs, encoder_connection=encoder_connection, name="decoder"
        )
        y = decoder(y, encoder_outputs)
        if tie_embeddings == "none":
            logits_layer = keras.layers.Dense(
                target_vocabulary_size, dtype=logits_dtype_policy(policy), name="logits"
            )
        else:
            logits_layer = TiedLogits(decoder_embedding, name="logits")
        logits = logits_layer(y)
        super().__init__(
            inputs={"encoder_inputs": encoder_inputs, "decoder_inputs": decoder_inputs},
            outputs=logits,
            name=name,
            **kwargs,
        )

        # === The decoding interface (CachedDecodingMixin) ===
        self.encoder_embedding = encoder_embedding
        self.encoder = encoder
        self.decoder_embedding = decoder_embedding
        self.decoder = decoder
        self.logits_layer = logits_layer

        # === Config ===
        self.source_vocabulary_size = source_vocabulary_size
        self.target_vocabulary_size = target_vocabulary_size
        self.num_layers = num_layers
        self.model_dim = model_dim
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.activation = keras.activations.get(activation)
        self.layer_norm_epsilon = layer_norm_epsilon
        self.normalize_first = normalize_first
        self.max_wavelength = max_wavelength
        self.encoder_connection = encoder_connection
        self.tie_embeddings = tie_embeddings
        self.layers_dtype_policy = policy

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": dtype_config(self, self.layers_dtype_policy),
            "source_vocabulary_size": self.source_vocabulary_size,
            "target_vocabulary_size": self.target_vocabulary_size,
            "num_layers": self.num_layers,
            "model_dim": self.model_dim,
            "num_heads": self.num_heads,
            "intermediate_dim": self.intermediate_dim,
            "dropout": self.dropout,
            "activation": keras.activations.serialize(self.activation),
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "normalize_first": self.normalize_first,
            "max_wavelength": self.max_wavelength,
            "encoder_connection": self.encoder_connection,
            "tie_embeddings": self.tie_embeddings,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


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
    encoder_connection="last",
    tie_embeddings="none",
    name="transformer",
):
    """Builds the encoder-decoder Transformer: a `Seq2SeqTransformer`.

    Figure 1 of Vaswani et al. (2017): source ids go through
    `PositionalEmbedding` (token embedding times `sqrt(model_dim)` plus the
    sinusoid, section 3.4-3.5) and dropout (section 5.4) into a
    `TransformerEncoder`; target ids, shifted right by the caller (teacher
    forcing), go the same way into a `TransformerDecoder` that attends to the
    encoder output; a final `Dense` gives the logits (the pre-softmax linear
    transformation), or, with `tie_embeddings`, the transposed embedding
    matrix plus a bias (section 3.4, see `Seq2SeqTransformer`). The
    defaults are the paper's base model (Table 3): N=6, d_model=512, h=8,
    d_ff=2048, P_drop=0.1.

    Id 0 is padding on both sides. The padding masks flow through the model
    from the embeddings, so padded source positions are never attended to and
    the logits carry the target padding mask, which Keras losses and metrics
    compiled on the model use as sample weights. The logits are float32 under
    every dtype policy, so the softmax in the loss is computed in full
    precision under mixed precision.

    The result is a `Seq2SeqTransformer`, a functional `keras.Model` subclass:
    it trains and saves like the functional model, reloads as a
    `Seq2SeqTransformer`, and has the decoding interface generators use
    (`call_encoder`, `initial_cache`, `call_decoder_with_cache`,
    `decoding_spec`).

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
        encoder_connection: `"last"` (the paper, section 3.1: every decoder
            block attends to the output of the last encoder block) or
            `"layerwise"` (decoder block `i` attends to the output of encoder
            block `i`; see `TransformerDecoder`). Defaults to `"last"`.
        tie_embeddings: `"none"` (separate matrices), `"decoder"` (the
            logits reuse the decoder's token embedding) or `"all"` (the
            encoder, the decoder and the logits share one matrix; requires
            `source_vocabulary_size == target_vocabulary_size`). Section 3.4.
            Defaults to `"none"`.
        name: string, the model name. Defaults to `"transformer"`.

    Returns:
        A `Seq2SeqTransformer` with int inputs `encoder_inputs`
        `(batch, None)` and `decoder_inputs` `(batch, None)` returning float32
        logits `(batch, target_len, target_vocabulary_size)`. Ids must lie in
        `[0, vocabulary_size)`: see `PositionalEmbedding` for where that is
        checked.

    Raises:
        ValueError: for an argument that is not an int, float or bool in
            range (NaN and inf included), an unknown `activation`,
            `encoder_connection` or `tie_embeddings`, a `model_dim` not
            divisible by `num_heads`, or `tie_embeddings="all"` with
            different vocabulary sizes.

    Example:

    >>> model = keras_transformer_layers.build_transformer(
    ...     100, 120, num_layers=1, model_dim=16, num_heads=2,
    ...     intermediate_dim=32)
    >>> logits = model({"encoder_inputs": np.array([[4, 5, 0]]),
    ...                 "decoder_inputs": np.array([[1, 7]])})
    >>> tuple(logits.shape)
    (1, 2, 120)
    >>> type(model).__name__
    'Seq2SeqTransformer'

    Reference:
        Vaswani et al., "Attention Is All You Need", 2017, Figure 1, Table 3,
        section 3.4.
    """
    return Seq2SeqTransformer(
        source_vocabulary_size,
        target_vocabulary_size,
        num_layers=num_layers,
        model_dim=model_dim,
        num_heads=num_heads,
        intermediate_dim=intermediate_dim,
        dropout=dropout,
        activation=activation,
        layer_norm_epsilon=layer_norm_epsilon,
        normalize_first=normalize_first,
        max_wavelength=max_wavelength,
        encoder_connection=encoder_connection,
        tie_embeddings=tie_embeddings,
        name=name,
    )
