"""The interface generation drives: encode once, create the caches, run one cached step.

Every generator and every generation export in the package talks to a model
through these three calls and one description, never through layer names:

- `call_encoder(source_ids)`: runs the encoder once per source and returns
  the *encoder state*, a dict of batch-major tensors that every decoder step
  reads (the source padding mask and the cross-attention keys and values);
  a decoder-only model returns `{}`.
- `initial_cache(batch_size, max_length)`: the zero self-attention cache, a
  tensor or a nest of tensors that generators carry through their loops
  without looking inside (this package's models give a tuple of one tensor
  per decoder block, so that a compiled loop updates each in place).
- `call_decoder_with_cache(token_ids, index, cache, encoder_state)`: feeds
  the tokens at positions `index, index + 1, ...` through the decoder,
  writing their keys and values into the cache, and returns float32 logits
  for those positions and the updated cache. The logits equal the full
  model's at those positions, padding ids among the fed tokens included
  (the cache records them, and later steps mask them).
- `decoding_spec`: a `DecodingSpec`, the vocabularies and position tables a
  generator checks its inputs and settings against.

`Seq2SeqTransformer` and `TransformerLM` have the interface through
`CachedDecodingMixin`. A functional model composed by hand from this
package's layers gets it from `CachedDecoding`, given the layer objects.
"""

import dataclasses

import keras
from keras import ops

from keras_transformer_layers.layers.decoder import TransformerDecoder
from keras_transformer_layers.layers.encoder import TransformerEncoder
from keras_transformer_layers.layers.positional import PositionalEmbedding


@dataclasses.dataclass(frozen=True)
class DecodingSpec:
    """What a generator needs to know about a model with the decoding interface.

    Attributes:
        is_encoder_decoder: bool, `True` for a model with an encoder (inputs
            are source ids), `False` for a decoder-only model (inputs are
            prompts of decoder ids).
        source_vocabulary_size: int, ids the encoder embedding takes; `None`
            for a decoder-only model.
        max_source_length: int, the encoder's learned position table; `None`
            for sinusoidal positions (any length) or no encoder.
        target_vocabulary_size: int, ids the decoder embedding takes.
        logits_size: int, logits per position; at most
            `target_vocabulary_size`, so every generated id can be fed back.
        max_target_length: int, the decoder's learned position table; `None`
            for sinusoidal positions.
        masks_padding: bool, an embedding masks id 0 as padding
            (`mask_zero=True`).
        masks_source_padding: bool, the encoder embedding masks id 0 as
            padding, so padding a source with more 0s changes no result;
            `False` for a decoder-only model.
    """

    is_encoder_decoder: bool
    source_vocabulary_size: object
    max_source_length: object
    target_vocabulary_size: int
    logits_size: int
    max_target_length: object
    masks_padding: bool
    masks_source_padding: bool


def _table_length(embedding):
    return embedding.sequence_length if embedding.learned_positions else None


class CachedDecodingMixin:
    """The decoding interface, implemented from the model's layer objects.

    A class using the mixin sets five attributes to layer objects:
    `encoder_embedding` and `encoder` (`None` for a decoder-only model),
    `decoder_embedding` (a `PositionalEmbedding`), `decoder` (a
    `TransformerDecoder`) and `logits_layer` (the pre-softmax linear
    transformation, e.g. a `keras.layers.Dense`). The layers are called in
    inference mode (no dropout).
    """

    @property
    def decoding_spec(self):
        """The `DecodingSpec` of the model (vocabularies and position tables)."""
        model_dim = self.decoder_embedding.embedding_dim
        logits_size = self.logits_layer.compute_output_shape((None, None, model_dim))[-1]
        encoder_embedding = self.encoder_embedding
        embeddings = [self.decoder_embedding] + (
            [] if encoder_embedding is None else [encoder_embedding]
        )
        return DecodingSpec(
            is_encoder_decoder=self.encoder is not None,
            source_vocabulary_size=(
                None if encoder_embedding is None else encoder_embedding.vocabulary_size
            ),
            max_source_length=(
                None if encoder_embedding is None else _table_length(encoder_embedding)
            ),
            target_vocabulary_size=self.decoder_embedding.vocabulary_size,
            logits_size=logits_size,
            max_target_length=_table_length(self.decoder_embedding),
            masks_padding=any(embedding.mask_zero for embedding in embeddings),
            masks_source_padding=encoder_embedding is not None and encoder_embedding.mask_zero,
        )

    def call_encoder(self, source_ids):
        """Runs the encoder once and returns the state every decoder step reads.

        Args:
            source_ids: int tensor `(batch, source_len)`, padded with 0 when
                the embedding masks id 0. Not checked here: generators check
                ids before their compiled loops run.

        Returns:
            A dict: `"source_mask"`, bool `(batch, source_len)`, and
            `"cross_attention_cache"`, a tuple of `num_layers` tensors
            `(batch, 2, source_len, num_heads, key_dim)` in the compute
            dtype, one per decoder block. `{}` for a decoder-only model.
        """
        if self.encoder is None:
            return {}
        source_mask = self.encoder_embedding.compute_mask(source_ids)
        if source_mask is None:  # `mask_zero=False`: every position is real
            source_mask = ops.ones_like(source_ids, dtype="bool")
        x = self.encoder_embedding(source_ids)
        encoder_outputs = self.encoder(x, mask=source_mask)
        return {
            "source_mask": source_mask,
            "cross_attention_cache": self.decoder.compute_cross_attention_cache(encoder_outputs),
        }

    def initial_cache(self, batch_size, max_length):
        """The all-zero self-attention cache of `max_length` positions.

        Args:
            batch_size: int or scalar int tensor.
            max_length: positive int, the positions the cache holds.

        Returns:
            A tuple of `num_layers` zero tensors `(batch_size, 2, max_length,
            num_heads, key_dim)` in the decoder's compute dtype, one per
            decoder block (`TransformerDecoder.initial_self_attention_cache`),
            which a compiled decoding loop updates in place.
        """
        return self.decoder.initial_self_attention_cache(batch_size, max_length)

    def call_decoder_with_cache(self, token_ids, index, cache, encoder_state):
        """Runs the decoder on new tokens over the caches.

        The logits equal the full model's at the same positions, for any
        ids: a padding id among `token_ids` (when the decoder embedding
        masks it) is recorded in the cache, so that every later step masks
        that position as the full model does.

        Args:
            token_ids: int tensor `(batch, new_len)`, the tokens at positions
                `index` to `index + new_len - 1`.
            index: int or scalar int tensor, the position of the first of
                `token_ids`; the new positions must fit in the cache.
            cache: the self-attention cache (see `initial_cache`).
            encoder_state: the dict from `call_encoder`.

        Returns:
            `(logits, cache)`: float32 logits `(batch, new_len, logits_size)`
            and the updated cache.

        Raises:
            ValueError: for a known `index` whose positions do not fit in the
                cache (in a graph and in TFLite the call fails when it runs,
                and under XLA the logits are NaN).
        """
        x = self.decoder_embedding(token_ids, start_index=index)
        x, cache = self.decoder(
            x,
            None,
            decoder_inputs_mask=self.decoder_embedding.compute_mask(token_ids),
            encoder_outputs_mask=encoder_state.get("source_mask"),
            self_attention_cache=cache,
            self_attention_cache_update_index=index,
            cross_attention_cache=encoder_state.get("cross_attention_cache"),
        )
        logits = self.logits_layer(x)  # (batch, new_len, logits_size)
        return ops.cast(logits, "float32"), cache


class CachedDecoding(CachedDecodingMixin):
    """The decoding interface for a functional model composed from the layers.

    `Seq2SeqTransformer` and `TransformerLM` already have the interface. A
    functional model built by hand from `PositionalEmbedding`,
    `TransformerEncoder`, `TransformerDecoder` and a final logits layer gets
    it by passing those layer objects (the ones the model calls, so they share
    its weights) here; the result goes wherever a generator takes a model.
    `call_decoder_with_cache` runs, in inference mode: the decoder embedding,
    the decoder (over the cache, and over the encoder state's cross-attention
    keys and values when there is an encoder), then the logits layer. Layers
    the interface does not know are skipped: dropout (off at inference) is
    fine, but a model with other layers between these (an extra projection,
    tied embeddings computed in a `Lambda`) gives other logits than its
    cached steps; compare `call_decoder_with_cache` with the full model once,
    as the example does.

    Causal self-attention (section 3.2.3) is what makes caching exact: the
    keys and values of position `i` never depend on later positions, so they
    are computed once and reused by every later step.

    Args:
        decoder_embedding: the `PositionalEmbedding` of the target ids.
        decoder: the `TransformerDecoder`, built (the model called once).
        logits: the built Keras layer giving the logits from the decoder
            output, e.g. a `keras.layers.Dense`.
        encoder_embedding: the `PositionalEmbedding` of the source ids;
            `None` (the default) for a decoder-only model.
        encoder: the built `TransformerEncoder`; `None` (the default) for a
            decoder-only model.

    Returns:
        An object with `decoding_spec`, `call_encoder`, `initial_cache` and
        `call_decoder_with_cache` (see `CachedDecodingMixin`); it is not a
        layer and is not called itself.

    Raises:
        ValueError: if a layer is not of the type above, if only one of
            `encoder_embedding` and `encoder` is given, if a layer is not
            built (call the model once first), or if `encoder` is given for a
            decoder built without cross-attention (or left out for one built
            with it).

    Example:

    >>> inputs = keras.Input((None,), dtype="int32")
    >>> embedding = keras_transformer_layers.PositionalEmbedding(50, 16)
    >>> decoder = keras_transformer_layers.TransformerDecoder(
    ...     num_layers=1, num_heads=2, intermediate_dim=32)
    >>> dense = keras.layers.Dense(50)
    >>> model = keras.Model(inputs, dense(decoder(embedding(inputs))))
    >>> interface = keras_transformer_layers.CachedDecoding(
    ...     decoder_embedding=embedding, decoder=decoder, logits=dense)
    >>> interface.decoding_spec.logits_size
    50
    >>> ids = np.array([[2, 7, 9]])
    >>> cache = interface.initial_cache(batch_size=1, max_length=3)
    >>> logits, cache = interface.call_decoder_with_cache(ids, 0, cache, {})
    >>> bool(np.allclose(logits, model(ids), atol=1e-5))
    True

    Reference:
        Vaswani et al., "Attention Is All You Need", 2017, section 3.2.3.
    """

    def __init__(self, *, decoder_embedding, decoder, logits, encoder_embedding=None, encoder=None):
        for name, layer, expected, optional in (
            ("decoder_embedding", decoder_embedding, PositionalEmbedding, False),
            ("decoder", decoder, TransformerDecoder, False),
            ("logits", logits, keras.layers.Layer, False),
            ("encoder_embedding", encoder_embedding, PositionalEmbedding, True),
            ("encoder", encoder, TransformerEncoder, True),
        ):
            if not (isinstance(layer, expected) or (optional and layer is None)):
                package = "Keras" if expected is keras.layers.Layer else "this package's"
                raise ValueError(
                    f"`{name}` must be a {package} `{expected.__name__}` layer"
                    + (" or None" if optional else "")
                    + f". Received: {name}={layer!r}"
                )
        if (encoder_embedding is None) != (encoder is None):
            raise ValueError(
                "`encoder_embedding` and `encoder` must be given together (an "
                "encoder-decoder model) or both left out (a decoder-only model). "
                f"Received: encoder_embedding={encoder_embedding!r}, encoder={encoder!r}"
            )
        for name, layer in (("decoder", decoder), ("logits", logits), ("encoder", encoder)):
            if layer is not None and not layer.built:
                raise ValueError(
                    f"`{name}` must be a built layer: call the model once before "
                    f"generating. Received: {name}={layer!r}"
                )
        has_cross_attention = decoder.blocks[0].cross_attention is not None
        if has_cross_attention != (encoder is not None):
            raise ValueError(
                "`encoder` must be given exactly when `decoder` was built with "
                "cross-attention (called with encoder outputs). Received: "
                f"encoder={encoder!r} with a decoder built "
                + ("with" if has_cross_attention else "without")
                + " cross-attention"
            )
        self.decoder_embedding = decoder_embedding
        self.decoder = decoder
        self.logits_layer = logits
        self.encoder_embedding = encoder_embedding
        self.encoder = encoder
