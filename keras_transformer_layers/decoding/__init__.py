"""Fast autoregressive decoding over a key/value cache, and its exports."""

from keras_transformer_layers.decoding.export import decode_step_tflite
from keras_transformer_layers.decoding.export import export_generation_saved_model
from keras_transformer_layers.decoding.export import generation_signatures
from keras_transformer_layers.decoding.export import generation_tflite
from keras_transformer_layers.decoding.generator import DEFAULT_LAYER_NAMES
from keras_transformer_layers.decoding.generator import TranslationGenerator
from keras_transformer_layers.decoding.generator import length_penalty

__all__ = [
    "DEFAULT_LAYER_NAMES",
    "TranslationGenerator",
    "decode_step_tflite",
    "export_generation_saved_model",
    "generation_signatures",
    "generation_tflite",
    "length_penalty",
]
