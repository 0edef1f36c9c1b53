"""The Tatoeba TFDS builder, tokenizers and the tf.data pipeline for translation.

Importing this package registers the TFDS builder `spa_eng` and the
`TextTokenizer` layer. Needs the `data` extra (tensorflow-datasets). The
opt-in SentencePiece tokenizer is `keras_transformer_layers.data.subword`
(the `subword` extra), imported on its own.

The pipeline's steps compose: `tokenize_pairs`, `pack_pairs` and
`shift_targets` map one pair at a time, `padded_batches` and `check_batches`
work on batches, and `make_translation_dataset` composes them all.
"""

try:
    import tensorflow_datasets  # noqa: F401
except ImportError as error:
    raise ModuleNotFoundError(
        "`keras_transformer_layers.data` needs tensorflow-datasets. Install the "
        'extra from the repository root: pip install ".[data]"',
        name="tensorflow_datasets",
    ) from error

from keras_transformer_layers.data.batches import check_batches
from keras_transformer_layers.data.batches import padded_batches
from keras_transformer_layers.data.pairs import pack_pairs
from keras_transformer_layers.data.pairs import shift_targets
from keras_transformer_layers.data.pairs import tokenize_pairs
from keras_transformer_layers.data.pipeline import make_translation_dataset
from keras_transformer_layers.data.spa_eng import SpaEng
from keras_transformer_layers.data.tokenizer import END_ID
from keras_transformer_layers.data.tokenizer import OOV_ID
from keras_transformer_layers.data.tokenizer import PADDING_ID
from keras_transformer_layers.data.tokenizer import START_ID
from keras_transformer_layers.data.tokenizer import TextTokenizer
from keras_transformer_layers.data.tokenizer import Tokenizer
from keras_transformer_layers.data.tokenizer import build_vocabulary

__all__ = [
    "END_ID",
    "OOV_ID",
    "PADDING_ID",
    "START_ID",
    "SpaEng",
    "TextTokenizer",
    "Tokenizer",
    "build_vocabulary",
    "check_batches",
    "make_translation_dataset",
    "pack_pairs",
    "padded_batches",
    "shift_targets",
    "tokenize_pairs",
]
