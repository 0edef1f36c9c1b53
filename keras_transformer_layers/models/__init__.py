"""Models built from the layers, and the interface generation drives."""

from keras_transformer_layers.models.cached_decoding import CachedDecoding
from keras_transformer_layers.models.cached_decoding import CachedDecodingMixin
from keras_transformer_layers.models.cached_decoding import DecodingSpec
from keras_transformer_layers.models.transformer import Seq2SeqTransformer
from keras_transformer_layers.models.transformer import build_transformer
from keras_transformer_layers.models.transformer_lm import TransformerLM
from keras_transformer_layers.models.transformer_lm import build_transformer_lm

__all__ = [
    "CachedDecoding",
    "CachedDecodingMixin",
    "DecodingSpec",
    "Seq2SeqTransformer",
    "TransformerLM",
    "build_transformer",
    "build_transformer_lm",
]
