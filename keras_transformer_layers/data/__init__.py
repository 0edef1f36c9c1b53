"""Datasets (TFDS builders), tokenizers and tf.data pipelines for translation.

Importing this package registers the TFDS builders `synthetic_translation`
and `spa_eng`. Needs the `data` extra (tensorflow-datasets). The opt-in
SentencePiece tokenizer is `keras_transformer_layers.data.subword` (the
`subword` extra), imported on its own.
"""

try:
    import tensorflow_datasets  # noqa: F401
except ImportError as error:
    raise ModuleNotFoundError(
        "`keras_transformer_layers.data` needs tensorflow-datasets. Install the "
        'extra from the repository root: pip install ".[data]"',
        name="tensorflow_datasets",
    ) from error

from keras_transformer_layers.data.pipeline import make_translation_dataset
from keras_transformer_layers.data.spa_eng import SpaEng
from keras_transformer_layers.data.synthetic import SyntheticTranslation
from keras_transformer_layers.data.synthetic import SyntheticTranslationConfig
from keras_transformer_layers.data.ted import load_ted_hrlr
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
    "SyntheticTranslation",
    "SyntheticTranslationConfig",
    "TextTokenizer",
    "Tokenizer",
    "build_vocabulary",
    "load_ted_hrlr",
    "make_translation_dataset",
]
