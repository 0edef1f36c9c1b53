"""SavedModel and TFLite (LiteRT) export, verified against the Keras model or generator.

Every exporter writes the same way: the artifact is written (and read back
and checked) in a fresh folder that the exporter creates beside the target,
then put in place in one step. With `overwrite=False` that step refuses a
target that exists by then (`FileExistsError`), so of two exports racing to
one path the second never replaces the first; with `overwrite=True` the
target holds the previous artifact or the new one, complete, at every
moment (on Linux; elsewhere a folder is replaced by two renames). Only the
fresh folder is deleted afterwards: nothing else beside the target is
touched. Every exporter returns a dict with the absolute `"path"`.
"""

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
