"""SavedModel and TFLite (LiteRT) export, verified against the Keras model or generator."""

from keras_transformer_layers.export.generation import export_decode_step_tflite
from keras_transformer_layers.export.generation import export_generation_saved_model
from keras_transformer_layers.export.generation import export_generation_tflite
from keras_transformer_layers.export.generation import generation_signatures
from keras_transformer_layers.export.saved_model import ExportSignature
from keras_transformer_layers.export.saved_model import encoder_function
from keras_transformer_layers.export.saved_model import export_saved_model
from keras_transformer_layers.export.saved_model import forward_function
from keras_transformer_layers.export.text import text_translation_function
from keras_transformer_layers.export.tflite import export_tflite
from keras_transformer_layers.export.tflite import tflite_op_names
from keras_transformer_layers.export.verify import verify_export

__all__ = [
    "ExportSignature",
    "encoder_function",
    "export_decode_step_tflite",
    "export_generation_saved_model",
    "export_generation_tflite",
    "export_saved_model",
    "export_tflite",
    "forward_function",
    "generation_signatures",
    "text_translation_function",
    "tflite_op_names",
    "verify_export",
]
