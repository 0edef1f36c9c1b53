"""The original Transformer (Vaswani et al., 2017) as serializable Keras 3 layers."""

from keras_transformer_layers.layers.add_norm import AddNorm
from keras_transformer_layers.layers.attention import MultiHeadAttention
from keras_transformer_layers.layers.decoder import TransformerDecoder
from keras_transformer_layers.layers.decoder import TransformerDecoderBlock
from keras_transformer_layers.layers.encoder import TransformerEncoder
from keras_transformer_layers.layers.encoder import TransformerEncoderBlock
from keras_transformer_layers.layers.feed_forward import FeedForward
from keras_transformer_layers.layers.positional import PositionalEmbedding
from keras_transformer_layers.layers.positional import PositionalEncoding
from keras_transformer_layers.models.cached_decoding import CachedDecoding
from keras_transformer_layers.models.transformer import Seq2SeqTransformer
from keras_transformer_layers.models.transformer import build_transformer
from keras_transformer_layers.models.transformer_lm import TransformerLM
from keras_transformer_layers.models.transformer_lm import build_transformer_lm
from keras_transformer_layers.version import __version__

# Imported for their registrations, so that `keras.models.load_model` finds the
# tokenizer, the schedule, the loss and the metric after `import
# keras_transformer_layers` alone.
from keras_transformer_layers import data  # noqa: F401, E402
from keras_transformer_layers import training  # noqa: F401, E402

__all__ = [
    "AddNorm",
    "FeedForward",
    "MultiHeadAttention",
    "PositionalEmbedding",
    "PositionalEncoding",
    "TransformerDecoder",
    "TransformerDecoderBlock",
    "TransformerEncoder",
    "TransformerEncoderBlock",
    "build_transformer",
    "CachedDecoding",
    "Seq2SeqTransformer",
    "TransformerLM",
    "build_transformer_lm",
    "__version__",
]
