"""Fast autoregressive decoding over a key/value cache, and its exports."""

from keras_transformer_layers.decoding.generator import DEFAULT_LAYER_NAMES
from keras_transformer_layers.decoding.generator import TranslationGenerator
from keras_transformer_layers.decoding.generator import length_penalty

__all__ = ["DEFAULT_LAYER_NAMES", "TranslationGenerator", "length_penalty"]
