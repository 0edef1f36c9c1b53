"""The original Transformer (Vaswani et al., 2017) as serializable Keras 3 layers.

`import keras_transformer_layers` loads the layers, the models and the training
recipe only (`keras.ops`, no TensorFlow-only module), which is everything a
`.keras` file of this package needs. The submodules in `LAZY_SUBMODULES` import
TensorFlow, tensorflow-datasets, matplotlib or ai-edge-litert and load on first
use: `keras_transformer_layers.data` works after a bare import.
"""

import importlib

# Imported for its registrations, so that `keras.models.load_model` finds the
# schedule, the loss and the metric after `import keras_transformer_layers`
# alone. (`data.TextTokenizer` is registered by `import
# keras_transformer_layers.data`: it runs on TensorFlow string ops only.)
from keras_transformer_layers import training  # noqa: F401, E402
from keras_transformer_layers.layers.add_norm import AddNorm
from keras_transformer_layers.layers.attention import MultiHeadAttention
from keras_transformer_layers.layers.decoder import TransformerDecoder
from keras_transformer_layers.layers.decoder import TransformerDecoderBlock
from keras_transformer_layers.layers.encoder import TransformerEncoder
from keras_transformer_layers.layers.encoder import TransformerEncoderBlock
from keras_transformer_layers.layers.feed_forward import FeedForward
from keras_transformer_layers.layers.positional import PositionalEmbedding
from keras_transformer_layers.layers.positional import PositionalEncoding
from keras_transformer_layers.layers.tied_logits import TiedLogits
from keras_transformer_layers.models.cached_decoding import CachedDecoding
from keras_transformer_layers.models.transformer import Seq2SeqTransformer
from keras_transformer_layers.models.transformer import build_transformer
from keras_transformer_layers.models.transformer_lm import TransformerLM
from keras_transformer_layers.models.transformer_lm import build_transformer_lm
from keras_transformer_layers.version import __version__

LAZY_SUBMODULES = ("data", "export", "generation", "plotting")


def __getattr__(name):
    """Imports a submodule of `LAZY_SUBMODULES` on first access (PEP 562)."""
    if name in LAZY_SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(
        f"module {__name__!r} has no attribute {name!r} "
        f"(its submodules that load on first use: {', '.join(LAZY_SUBMODULES)})"
    )


__all__ = [
    "AddNorm",
    "FeedForward",
    "MultiHeadAttention",
    "PositionalEmbedding",
    "PositionalEncoding",
    "TiedLogits",
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
