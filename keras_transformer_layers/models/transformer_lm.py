"""`TransformerLM`: a decoder-only (GPT-style) Transformer as a functional model class."""

import keras

from keras_transformer_layers import _validation
from keras_transformer_layers._quantization import dtype_config
from keras_transformer_layers.layers.decoder import TransformerDecoder
from keras_transformer_layers.layers.positional import PositionalEmbedding
from keras_transformer_layers.layers.tied_logits import TiedLogits
from keras_transformer_layers.models._arguments import TokenIdInputsMixin
from keras_transformer_layers.models._arguments import check_stack_arguments
from keras_transformer_layers.models._arguments import layers_dtype_policy
from keras_transformer_layers.models._arguments import logits_dtype_policy
from keras_transformer_layers.models._optimizer_build import OptimizerBuildMixin
from keras_transformer_layers.models.cached_decoding import CachedDecodingMixin

TIE_EMBEDDINGS = ("none", "decoder")


@keras.saving.register_keras_serializable(package="keras_transformer_layers")
class TransformerLM(CachedDecodingMixin, TokenIdInputsMixin, OptimizerBuildMixin, keras.Model):
    """A decoder-only Transformer language model with the decoding interface.

    The decoder of Figure 1 of Vaswani et al. (2017) without the encoder and
    the encoder-decoder attention: token ids go through `PositionalEmbedding`
    (token embedding times `sqrt(model_dim)` plus the sinusoid, sections
    3.4-3.5) and dropout (section 5.4) into a `TransformerDecoder` called
    without memory, whose blocks are masked (causal) self-attention and
    feed-forward only (section 3.2.3); a final `Dense` gives the logits of
    the next token at every position. With `tie_embeddings="decoder"` the
    logits are `TiedLogits` instead: the token embedding matrix transposed
    plus a separate bias (section 3.4; one variable, `vocabulary_size *
    model_dim` fewer parameters; the table is multiplied by `sqrt(model_dim)`
    on the way in only).

    The constructor builds the functional graph, so the model trains, saves
    and summarizes like any functional model; `get_config` holds the
    hyperparameters and `from_config` rebuilds the graph from them. The layers
    are named `embedding`, `embedding_dropout`, `decoder` and `logits`, and are
    also the attributes `decoder_embedding`, `decoder` and `logits_layer`
    (`encoder_embedding` and `encoder` are `None`).

    Id 0 is padding: the padding mask flows from the embedding, and the logits
    carry it, so Keras losses and metrics compiled on the model skip padded
    positions. The logits are float32 under every dtype policy.

    Generation continues a prompt through the decoding interface:
    `initial_cache(batch_size, max_length)` creates the self-attention cache,
    and `call_decoder_with_cache(token_ids, index, cache, {})` runs the prompt
    (all its tokens at once) and then each new token, giving the same logits
    as the full model at those positions. `call_encoder` returns `{}`.

    Args:
        vocabulary_size: positive int, size of the vocabulary.
        num_layers: positive int, `N`, decoder blocks. Defaults to `6`.
        model_dim: positive int, `d_model`. Defaults to `512`.
        num_heads: positive int, `h`; must divide `model_dim`. Defaults to `8`.
        intermediate_dim: positive int, `d_ff`. Defaults to `2048`.
        dropout: float in `[0, 1)`, `P_drop`, on the embedding and residuals.
            Defaults to `0.1`.
        activation: feed-forward activation. Defaults to `"relu"`.
        layer_norm_epsilon: finite positive float. Defaults to `1e-6`.
        normalize_first: bool, pre-norm instead of the paper's post-norm.
            Defaults to `False`.
        max_wavelength: finite positive number, sinusoid base. Defaults to
            `10000`.
        tie_embeddings: `"none"` (a separate `Dense`) or `"decoder"` (the
            logits reuse the token embedding matrix, section 3.4). Defaults
            to `"none"`.
        name: string, the model name. Defaults to `"transformer_lm"`.
        dtype: `None`, a dtype policy or its name, the policy of every layer
            but the logits (always float32). Defaults to `None`, the global
            policy when the model is built; `get_config` records the policy
            used.
        **kwargs: base model arguments such as `trainable`.

    Call arguments:
        inputs: int tensor `token_ids` `(batch, seq_len)`, ids in
            `[0, vocabulary_size)` with 0 as padding.
        training: bool; enables dropout.

    Returns:
        Float32 logits `(batch, seq_len, vocabulary_size)`: at position `i`,
        the scores of the token at `i + 1`, from positions `<= i` only.

    Raises:
        ValueError: for an argument that is not an int, float or bool in
            range (NaN and inf included), an unknown `activation`,
            `tie_embeddings` or `dtype`, or a `model_dim` not divisible by
            `num_heads`; when called (`fit`, `evaluate`, `predict` too), for
            `token_ids` that are not integers (a float id is not truncated).

    Example:

    >>> model = keras_transformer_layers.TransformerLM(
    ...     50, num_layers=1, model_dim=16, num_heads=2, intermediate_dim=32)
    >>> prompt = np.array([[2, 7, 8]])
    >>> tuple(model(prompt).shape)
    (1, 3, 50)
    >>> cache = model.initial_cache(batch_size=1, max_length=6)
    >>> logits, cache = model.call_decoder_with_cache(prompt, 0, cache, {})
    >>> bool(np.allclose(logits, model(prompt), atol=1e-5))
    True

    Reference:
        Vaswani et al., "Attention Is All You Need", 2017, sections 3.1,
        3.2.3.
    """

    def __init__(
        self,
        vocabulary_size,
        num_layers=6,
        model_dim=512,
        num_heads=8,
        intermediate_dim=2048,
        dropout=0.1,
        activation="relu",
        layer_norm_epsilon=1e-6,
        normalize_first=False,
        max_wavelength=10000,
        tie_embeddings="none",
        name="transformer_lm",
        dtype=None,
        **kwargs,
    ):
        _validation.check_positive_int("vocabulary_size", vocabulary_size)
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
        _validation.check_one_of("tie_embeddings", tie_embeddings, TIE_EMBEDDINGS)
        policy = layers_dtype_policy(dtype)
        # === Layers and functional graph ===
        # Created in graph order: layers draw seeds when created.
        token_ids = keras.Input((None,), dtype="int32", name="token_ids")
        embedding = PositionalEmbedding(
            vocabulary_size,
            model_dim,
            max_wavelength=max_wavelength,
            dtype=policy,
            name="embedding",
        )
        x = embedding(token_ids)
        x = keras.layers.Dropout(dropout, dtype=policy, name="embedding_dropout")(x)
        decoder = TransformerDecoder(
            num_layers=num_layers,
            num_heads=num_heads,
            intermediate_dim=intermediate_dim,
            dropout=dropout,
            activation=activation,
            layer_norm_epsilon=layer_norm_epsilon,
            normalize_first=normalize_first,
            dtype=policy,
            name="decoder",
        )
        x = decoder(x)  # no memory: causal self-attention blocks only
        if tie_embeddings == "none":
            logits_layer = keras.layers.Dense(
                vocabulary_size, dtype=logits_dtype_policy(policy), name="logits"
            )
        else:
            logits_layer = TiedLogits(embedding, name="logits")
        logits = logits_layer(x)
        super().__init__(inputs=token_ids, outputs=logits, name=name, **kwargs)

        # === The decoding interface (CachedDecodingMixin) ===
        self.encoder_embedding = None
        self.encoder = None
        self.decoder_embedding = embedding
        self.decoder = decoder
        self.logits_layer = logits_layer

        # === Config ===
        self.vocabulary_size = vocabulary_size
        self.num_layers = num_layers
        self.model_dim = model_dim
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.activation = keras.activations.get(activation)
        self.layer_norm_epsilon = layer_norm_epsilon
        self.normalize_first = normalize_first
        self.max_wavelength = max_wavelength
        self.tie_embeddings = tie_embeddings
        self.layers_dtype_policy = policy

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": dtype_config(self, self.layers_dtype_policy),
            "vocabulary_size": self.vocabulary_size,
            "num_layers": self.num_layers,
            "model_dim": self.model_dim,
            "num_heads": self.num_heads,
            "intermediate_dim": self.intermediate_dim,
            "dropout": self.dropout,
            "activation": keras.activations.serialize(self.activation),
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "normalize_first": self.normalize_first,
            "max_wavelength": self.max_wavelength,
            "tie_embeddings": self.tie_embeddings,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def build_transformer_lm(
    vocabulary_size,
    num_layers=6,
    model_dim=512,
    num_heads=8,
    intermediate_dim=2048,
    dropout=0.1,
    activation="relu",
    layer_norm_epsilon=1e-6,
    normalize_first=False,
    max_wavelength=10000,
    tie_embeddings="none",
    name="transformer_lm",
):
    """Builds a decoder-only Transformer language model: a `TransformerLM`.

    Token ids go through `PositionalEmbedding` (token embedding times
    `sqrt(model_dim)` plus the sinusoid, sections 3.4-3.5 of Vaswani et al.,
    2017) and dropout into a causal `TransformerDecoder` without memory (the
    decoder of Figure 1 without encoder-decoder attention, section 3.2.3),
    then a float32 `Dense` gives the next-token logits (or, with
    `tie_embeddings="decoder"`, the transposed embedding matrix plus a bias,
    section 3.4; see `TransformerLM`). Id 0 is padding. The
    model has the decoding interface, so a generator continues prompts with
    it (cached, one decoder step per new token).

    Args:
        vocabulary_size: positive int, size of the vocabulary.
        num_layers: positive int, `N`, decoder blocks. Defaults to `6`.
        model_dim: positive int, `d_model`. Defaults to `512`.
        num_heads: positive int, `h`; must divide `model_dim`. Defaults to `8`.
        intermediate_dim: positive int, `d_ff`. Defaults to `2048`.
        dropout: float in `[0, 1)`, `P_drop`, on the embedding and residuals.
            Defaults to `0.1`.
        activation: feed-forward activation. Defaults to `"relu"`.
        layer_norm_epsilon: finite positive float. Defaults to `1e-6`.
        normalize_first: bool, pre-norm instead of the paper's post-norm.
            Defaults to `False`.
        max_wavelength: finite positive number, sinusoid base. Defaults to
            `10000`.
        tie_embeddings: `"none"` (a separate `Dense`) or `"decoder"` (the
            logits reuse the token embedding matrix, section 3.4). Defaults
            to `"none"`.
        name: string, the model name. Defaults to `"transformer_lm"`.

    Returns:
        A `TransformerLM` with the int input `token_ids` `(batch, None)`
        returning float32 logits `(batch, seq_len, vocabulary_size)`.

    Raises:
        ValueError: for an argument that is not an int, float or bool in
            range (NaN and inf included), an unknown `activation` or
            `tie_embeddings`, or a `model_dim` not divisible by `num_heads`.

    Example:

    >>> model = keras_transformer_layers.build_transformer_lm(
    ...     50, num_layers=1, model_dim=16, num_heads=2, intermediate_dim=32)
    >>> tuple(model(np.array([[2, 7, 8, 0]])).shape)
    (1, 4, 50)
    >>> model.decoding_spec.is_encoder_decoder
    False

    Reference:
        Vaswani et al., "Attention Is All You Need", 2017, sections 3.1,
        3.2.3.
    """
    return TransformerLM(
        vocabulary_size,
        num_layers=num_layers,
        model_dim=model_dim,
        num_heads=num_heads,
        intermediate_dim=intermediate_dim,
        dropout=dropout,
        activation=activation,
        layer_norm_epsilon=layer_norm_epsilon,
        normalize_first=normalize_first,
        max_wavelength=max_wavelength,
        tie_embeddings=tie_embeddings,
        name=name,
    )
