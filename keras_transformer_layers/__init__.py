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
from keras_transformer_layers.models.transformer import build_transformer
from keras_transformer_layers.version import __version__

# Subpackage, reachable as `keras_transformer_layers.decoding.TranslationGenerator`.
from keras_transformer_layers import decoding  # noqa: E402,F401

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
    "__version__",
]
