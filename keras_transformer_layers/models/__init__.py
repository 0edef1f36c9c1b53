"""Models built from the layers, and the interface generation drives."""

from keras_transformer_layers.models.cached_decoding import CachedDecoding
from keras_transformer_layers.models.cached_decoding import CachedDecodingMixin
from keras_transformer_layers.models.cached_decoding import DecodingSpec
from keras_transformer_layers.models.transformer import build_transformer
