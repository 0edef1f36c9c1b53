"""The paper's training recipe: warm-up schedule, Adam, masked loss and accuracy, averaging."""

from keras_transformer_layers.training.averaging import CheckpointAveraging
from keras_transformer_layers.training.losses import MaskedSparseCategoricalCrossentropy
from keras_transformer_layers.training.metrics import MaskedAccuracy
from keras_transformer_layers.training.schedule import TransformerSchedule
from keras_transformer_layers.training.schedule import transformer_adam

__all__ = [
    "CheckpointAveraging",
    "MaskedAccuracy",
    "MaskedSparseCategoricalCrossentropy",
    "TransformerSchedule",
    "transformer_adam",
]
