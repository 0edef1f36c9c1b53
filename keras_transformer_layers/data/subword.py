"""Subword tokenization: a SentencePiece vocabulary, trained offline, run in the graph.

Needs the `subword` extra (`sentencepiece` to train, `tensorflow-text` to
tokenize inside TensorFlow); this module is the only one of the package that
imports them, so `import keras_transformer_layers.data` works without them.

The paper encodes its sentences with byte-pair encoding (Vaswani et al.,
2017, section 5.1: a shared vocabulary of about 37,000 tokens for
English-German). `train_sentencepiece` trains a BPE or unigram model (Kudo
and Richardson, 2018) on training sentences; `SubwordTokenizer` wraps the model for the
package's pipelines with the id layout of `TextTokenizer`: 0 padding, 1
`[UNK]`, 2 `[START]`, 3 `[END]`, then the learned pieces. The model proto is
the tokenizer's whole state: it is in the layer's config and in an exported
SavedModel.

Serving: tensorflow-text's ops are not part of stock TensorFlow. A SavedModel
holding a `SubwordTokenizer` (such as the `translate` signature of
`keras_transformer_layers.export.text_translation_function`) loads only
after `import tensorflow_text` in the serving process (TensorFlow Serving
needs a build with the tensorflow-text ops), and TFLite with builtin ops
cannot run it: the text export is SavedModel-only, and `TextTokenizer`
remains the stock-TensorFlow choice.
"""

import base64
import binascii
import hashlib
import io

import keras
import tensorflow as tf

from keras_transformer_layers import _validation
from keras_transformer_layers.data.tokenizer import RESERVED_TOKENS
from keras_transformer_layers.data.tokenizer import Tokenizer
from keras_transformer_layers.data.tokenizer import content_ids
from keras_transformer_layers.data.tokenizer import string_tensor
from keras_transformer_layers.data.tokenizer import text_dataset
from keras_transformer_layers.tokens import END_ID
from keras_transformer_layers.tokens import OOV_ID
from keras_transformer_layers.tokens import PADDING_ID
from keras_transformer_layers.tokens import START_ID

try:
    import sentencepiece
    import tensorflow_text
    from tensorflow_text.python.ops.sentencepiece_tokenizer import gen_sentencepiece_tokenizer
except ImportError as error:
    raise ModuleNotFoundError(
        "`keras_transformer_layers.data.subword` needs sentencepiece and "
        "tensorflow-text. Install the extra from the repository root: "
        'pip install ".[subword]"',
        name=error.name,
    ) from error

MODEL_TYPES = ("bpe", "unigram")
# The piece of each reserved id; `""` (padding) cannot be a SentencePiece piece.
_PIECES = ("<pad>",) + RESERVED_TOKENS[1:]


def _read_sentences(texts):
    """`texts` as a list of `str` sentences, each checked: UTF-8, no line break."""
    sentences = []
    for index, text in enumerate(text_dataset(texts).as_numpy_iterator()):
        try:
            sentence = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(
                f"`texts` must hold UTF-8 text. Received: texts[{index}]={text!r}, "
                "which is not valid UTF-8"
            ) from None
        if "\n" in sentence or "\r" in sentence:
            raise ValueError(
                "Every entry of `texts` must be one sentence without line breaks. "
                f"Received: texts[{index}]={sentence!r}"
            )
        sentences.append(sentence)
    if not sentences:
        raise ValueError(
            "`texts` holds no strings, so no vocabulary can be trained. Pass the "
            "training sentences. Received: texts with 0 elements"
        )
    return sentences


def train_sentencepiece(texts, vocabulary_size, model_type="bpe", character_coverage=1.0):
    """Trains a SentencePiece model on training sentences; returns its proto.

    The reserved ids are those of the package (0 padding, 1 `[UNK]`, 2
    `[START]`, 3 `[END]`); `vocabulary_size` counts them. Training reads
    every sentence once, in order, on one thread with a fixed seed, so the
    same sentences and settings give the same bytes. Text is normalized with
    SentencePiece's default NFKC rules and keeps its case; unknown pieces
    decode as `[UNK]`.

    Args:
        texts: a list or other iterable of `str`/`bytes` (UTF-8), or a
            `tf.data.Dataset` of string scalars (such as one side of the
            training split).
        vocabulary_size: int greater than 4, the number of ids including the
            4 reserved ones. SentencePiece refuses a size the text cannot fill.
        model_type: `"bpe"` (byte-pair encoding) or `"unigram"`. Defaults to
            `"bpe"`.
        character_coverage: float in `(0, 1]`, the share of characters the
            pieces cover; the rarest characters beyond it map to `[UNK]`.
            Defaults to `1.0`.

    Returns:
        The serialized model proto, `bytes`, for `SubwordTokenizer`.

    Raises:
        ValueError: if `texts` is not an iterable of strings or a dataset of
            string scalars, is empty, holds bytes that are not valid UTF-8
            (named by their index) or a line break; for a bad
            `vocabulary_size` (including one the text cannot fill),
            `model_type` or `character_coverage`.

    Example:

    >>> proto = train_sentencepiece(["abc abd", "abe"] * 5, vocabulary_size=12)
    >>> SubwordTokenizer(proto).vocabulary_size
    12
    """
    if (
        isinstance(vocabulary_size, bool)
        or not isinstance(vocabulary_size, int)
        or vocabulary_size <= len(RESERVED_TOKENS)
    ):
        raise ValueError(
            "`vocabulary_size` must be an integer greater than the 4 reserved ids. "
            f"Received: vocabulary_size={vocabulary_size!r}"
        )
    _validation.check_one_of("model_type", model_type, MODEL_TYPES)
    _validation.check_finite_number("character_coverage", character_coverage)
    if not 0 < character_coverage <= 1:
        raise ValueError(
            "`character_coverage` must be in (0, 1]. "
            f"Received: character_coverage={character_coverage!r}"
        )
    sentences = _read_sentences(texts)
    model = io.BytesIO()
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=model,
            vocab_size=vocabulary_size,
            model_type=model_type,
            character_coverage=float(character_coverage),
            pad_id=PADDING_ID,
            unk_id=OOV_ID,
            bos_id=START_ID,
            eos_id=END_ID,
            pad_piece=_PIECES[PADDING_ID],
            unk_piece=_PIECES[OOV_ID],
            bos_piece=_PIECES[START_ID],
            eos_piece=_PIECES[END_ID],
            unk_surface=_PIECES[OOV_ID],
            input_sentence_size=0,
            shuffle_input_sentence=False,
            max_sentence_length=1 << 20,
            num_threads=1,
            minloglevel=2,
        )
    except RuntimeError as error:
        raise ValueError(
            "SentencePiece could not train a model of this `vocabulary_size` on "
            f"`texts` ({error}). Received: vocabulary_size={vocabulary_size!r}"
        ) from None
    return model.getvalue()


def _model_proto(model_proto):
    """`model_proto` as bytes (a config holds it as base64 text)."""
    if isinstance(model_proto, str):
        try:
            return base64.b64decode(model_proto, validate=True)
        except (binascii.Error, ValueError):
            pass
    elif isinstance(model_proto, bytes):
        return model_proto
    raise ValueError(
        "`model_proto` must be the bytes of a SentencePiece model (from "
        "`train_sentencepiece`) or their base64 text. "
        f"Received: model_proto={model_proto!r:.80}"
    )


class _SharedSentencepieceModel(tf.saved_model.experimental.TrackableResource):
    """The SentencePiece model resource, held by TensorFlow's resource manager.

    tensorflow-text's own resource (tensorflow-text 2.21) belongs to the op
    kernel that made it, and eager TensorFlow drops its kernels on
    `tf.random.set_seed` (which `keras.utils.set_random_seed` calls): every
    later call then fails with "Resource ... does not exist". A `shared_name`
    (one per model proto) puts the resource in the resource manager, where it
    lives as long as the process. It is saved in a SavedModel like the
    original.
    """

    def __init__(self, model_proto):
        super().__init__()
        self._model_proto = model_proto
        digest = hashlib.sha256(model_proto).hexdigest()[:32]
        self._shared_name = f"keras_transformer_layers_sentencepiece_{digest}"
        _ = self.resource_handle  # creates the resource

    def _create_resource(self):
        return gen_sentencepiece_tokenizer.sentencepiece_op(
            model=self._model_proto, shared_name=self._shared_name
        )


@keras.saving.register_keras_serializable(package="keras_transformer_layers")
class SubwordTokenizer(Tokenizer):
    """SentencePiece subword ids with start/end ids, in the TF graph, and back.

    A drop-in for `TextTokenizer` in `make_translation_dataset` and
    `keras_transformer_layers.export.text_translation_function`: calling the
    layer on a batch of strings gives `[START] pieces... [END]` per string,
    right-padded with 0; `tokenize` gives the pieces alone; `detokenize`
    inverts it and stops at the first `[END]`. The pieces come from
    tensorflow-text's `SentencepieceTokenizer`, so tokenizing runs inside
    `tf.data`, a `tf.function` and a SavedModel (which then loads only after
    `import tensorflow_text`; no TFLite). Detokenized text is SentencePiece's
    normalized (NFKC) form of the input. Byte-pair pieces are the paper's
    choice of vocabulary (section 5.1).

    Args:
        model_proto: `bytes` of a SentencePiece model with the package's
            reserved ids (0 padding, 1 `[UNK]`, 2 `[START]`, 3 `[END]`), as
            `train_sentencepiece` returns; or its base64 text (the config's
            form).
        **kwargs: base layer arguments such as `name`.

    Call arguments:
        inputs: string tensor of shape `(batch,)` or `(batch, 1)` (a scalar
            counts as a batch of one).

    Returns:
        An int32 tensor `(batch, max_pieces_in_batch + 2)`.

    Raises:
        ValueError: if `model_proto` is not a SentencePiece model, or its
            reserved ids differ from the package's.

    Example:

    >>> tokenizer = SubwordTokenizer(
    ...     train_sentencepiece(["low lower lowest"] * 4, vocabulary_size=16))
    >>> ids = tokenizer(tf.constant(["lower", "low"]))
    >>> tokenizer.detokenize(ids).numpy()
    array([b'lower', b'low'], dtype=object)
    """

    def __init__(self, model_proto, **kwargs):
        super().__init__(**kwargs)
        self.model_proto = _model_proto(model_proto)
        processor = sentencepiece.SentencePieceProcessor()
        try:
            processor.LoadFromSerializedProto(self.model_proto)
        except (RuntimeError, TypeError):
            raise ValueError(
                "`model_proto` must be the bytes of a SentencePiece model (from "
                "`train_sentencepiece`). "
                f"Received: model_proto={self.model_proto!r:.80}"
            ) from None
        reserved = tuple(
            processor.IdToPiece(i) if i < processor.GetPieceSize() else None
            for i in range(len(_PIECES))
        )
        special = (processor.pad_id(), processor.unk_id(), processor.bos_id(), processor.eos_id())
        if special != (PADDING_ID, OOV_ID, START_ID, END_ID):
            raise ValueError(
                "`model_proto` must reserve the package's ids: padding "
                f"{PADDING_ID}, unknown {OOV_ID}, start {START_ID}, end {END_ID} "
                "(train it with `train_sentencepiece`). Received: a model with "
                f"pad, unk, bos, eos ids {special} and pieces {reserved}"
            )
        self._pieces = [processor.IdToPiece(i) for i in range(processor.GetPieceSize())]
        self.sentencepiece = tensorflow_text.SentencepieceTokenizer(
            model=self.model_proto, out_type=tf.int32
        )
        # tensorflow-text's tokenizer runs its ops on `_model_resource`; see
        # `_SharedSentencepieceModel` for why it is replaced.
        self.sentencepiece._model_resource = _SharedSentencepieceModel(self.model_proto)

    @property
    def vocabulary_size(self):
        """Number of ids, reserved ones included: the model's vocabulary size."""
        return len(self._pieces)

    def get_vocabulary(self):
        """Returns the piece of every id as a list (`"▁"` marks a word start)."""
        return list(self._pieces)

    def tokenize(self, inputs):
        """Maps strings to piece ids, without start/end ids and without padding.

        Args:
            inputs: string tensor of rank 0 or 1.

        Returns:
            int32 ids: rank 1 for a scalar, a `tf.RaggedTensor` for a vector.

        Raises:
            ValueError: if `inputs` is not a string tensor of rank 0 or 1.
        """
        inputs = string_tensor("inputs", inputs)
        return self.sentencepiece.tokenize(inputs)

    def detokenize(self, ids):
        """Maps ids back to strings, in the graph.

        Drops padding and `[START]` ids and everything from the first `[END]`
        on; ids outside the vocabulary read as `[UNK]`. Pieces are joined the
        SentencePiece way (`"▁"` becomes a space).

        Args:
            ids: int tensor of rank 1 (one sequence) or 2 (a batch).

        Returns:
            A string scalar or a `(batch,)` string tensor.

        Raises:
            ValueError: if `ids` is not an integer tensor of rank 1 or 2.
        """
        ids, single = content_ids(ids, self.vocabulary_size)  # (batch, None) ragged
        texts = self.sentencepiece.detokenize(ids)  # (batch,)
        return texts[0] if single else texts

    def get_config(self):
        config = super().get_config()
        config["model_proto"] = base64.b64encode(self.model_proto).decode("ascii")
        return config
