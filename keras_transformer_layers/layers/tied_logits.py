"""The pre-softmax linear transformation tied to an embedding matrix (paper section 3.4)."""

import keras
from keras import ops

from keras_transformer_layers.layers.positional import PositionalEmbedding


@keras.saving.register_keras_serializable(package="keras_transformer_layers")
class TiedLogits(keras.layers.Layer):
    """Logits from the transposed token embedding matrix plus an output bias.

    Section 3.4 of Vaswani et al. (2017) shares one weight matrix between the
    embedding layers and the pre-softmax linear transformation. This layer
    computes `logits = x @ E^T + b`, where `E` (`(vocabulary_size,
    model_dim)`) is the token table of the given `PositionalEmbedding` (the
    same variable, not a copy) and `b` is this layer's own bias. The
    embedding multiplies `E` by `sqrt(model_dim)` on the way in; the logits
    use `E` unscaled.

    The projection runs through `keras.layers.ReversibleEmbedding.call(...,
    reverse=True)` of the embedding's `token_embedding`, so it follows the
    embedding when `model.quantize("int8")` quantizes it; it is computed in
    float32 and the logits are float32 under every dtype policy.

    The layer holds a reference to the embedding and cannot be rebuilt from
    a config on its own: `Seq2SeqTransformer` and `TransformerLM`
    (`tie_embeddings=...`) create it, and their configs rebuild the tie.

    Args:
        embedding: the `PositionalEmbedding` whose token table is reused.
        **kwargs: base layer arguments such as `name`.

    Call arguments:
        inputs: float tensor `(batch, seq_len, model_dim)`.

    Returns:
        Float32 logits `(batch, seq_len, vocabulary_size)`.

    Raises:
        ValueError: if `embedding` is not a `PositionalEmbedding`, or if the
            last axis of `inputs` is not the embedding's `embedding_dim`.

    Example:

    >>> embedding = keras_transformer_layers.PositionalEmbedding(50, 8)
    >>> logits_layer = keras_transformer_layers.TiedLogits(embedding)
    >>> x = embedding(np.array([[4, 7]]))
    >>> tuple(logits_layer(x).shape)
    (1, 2, 50)
    >>> tuple(logits_layer.bias.shape)
    (50,)
    >>> table = embedding.token_embedding.embeddings  # the same variable, listed once
    >>> sum(w is table for w in logits_layer.weights)
    1

    Reference:
        Vaswani et al., "Attention Is All You Need", 2017, section 3.4.
    """

    def __init__(self, embedding, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if not isinstance(embedding, PositionalEmbedding):
            raise ValueError(
                "`embedding` must be this package's `PositionalEmbedding` layer. "
                f"Received: embedding={embedding!r}"
            )
        self.embedding = embedding
        self.supports_masking = True

    def build(self, inputs_shape):
        if inputs_shape[-1] != self.embedding.embedding_dim:
            raise ValueError(
                "The last axis of `inputs` must be the embedding's `embedding_dim` "
                f"({self.embedding.embedding_dim}). Received: inputs.shape={tuple(inputs_shape)}"
            )
        if not self.embedding.built:
            self.embedding.build(tuple(inputs_shape[:-1]))
        self.bias = self.add_weight(
            shape=(self.embedding.vocabulary_size,), initializer="zeros", name="bias"
        )

    def call(self, inputs):
        logits = self.embedding.token_embedding(inputs, reverse=True)  # (batch, seq, vocab)
        return ops.cast(logits, "float32") + ops.cast(self.bias, "float32")

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape[:-1]) + (self.embedding.vocabulary_size,)

    def get_config(self):
        raise NotImplementedError(
            "`TiedLogits` shares another layer's variable and is serialized by the model "
            "that creates it (`Seq2SeqTransformer` or `TransformerLM` with `tie_embeddings`)."
        )
