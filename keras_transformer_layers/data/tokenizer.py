"""In-graph tokenization: strings to ids and back, saved with the model.

Every tokenizer of the package shares one id layout:

=====  ===========  =================================================
id     token        meaning
=====  ===========  =================================================
0      `""`         padding (`PADDING_ID`); `Embedding(mask_zero=True)`
1      `"[UNK]"`    out of vocabulary (`OOV_ID`)
2      `"[START]"`  start of sequence (`START_ID`)
3      `"[END]"`    end of sequence (`END_ID`)
4...   vocabulary   the learned tokens, most frequent first
=====  ===========  =================================================

The tokenizer is a Keras layer built on TensorFlow string ops
(`tf.strings.unicode_split`, `tf.strings.split`, `tf.strings.regex_replace`)
and `keras.layers.StringLookup`, so it runs inside `tf.data`, inside a
`tf.function`, and inside an exported SavedModel; its vocabulary is part of
its config and travels in the `.keras` file. Like Keras' own preprocessing
layers, it is TensorFlow-only and is kept out of the numeric model, which
stays convertible to TFLite.
"""

import collections
import collections.abc

import keras
import numpy as np
import tensorflow as tf

from keras_transformer_layers import _validation
from keras_transformer_layers.tokens import END_ID
from keras_transformer_layers.tokens import OOV_ID
from keras_transformer_layers.tokens import PADDING_ID
from keras_transformer_layers.tokens import START_ID

RESERVED_TOKENS = ("", "[UNK]", "[START]", "[END]")

_SPLITS = ("character", "word")
# Unicode punctuation (`\pP`) becomes its own word: "¿qué?" -> "¿ qué ?".
_PUNCTUATION = r"(\pP)"


def split_text(texts, split="character", lowercase=False):
    """Splits strings into tokens with TensorFlow string ops.

    `"character"` splits into Unicode characters (spaces included);
    `"word"` puts spaces around every Unicode punctuation mark and splits on
    whitespace. This is the exact splitting `TextTokenizer` and
    `build_vocabulary` use.

    Text is read as UTF-8; bytes that are not valid UTF-8 become U+FFFD
    (`"\ufffd"`) with `"character"` and stay in their word with `"word"`,
    so a tokenizer maps them to `[UNK]`.

    Args:
        texts: string tensor of rank 0 or 1.
        split: `"character"` or `"word"`. Defaults to `"character"`.
        lowercase: bool, lowercase (Unicode-aware) before splitting. Defaults
            to `False`.

    Returns:
        A string tensor of tokens: rank 1 for a scalar input, a
        `tf.RaggedTensor` of rank 2 for a vector input.

    Raises:
        ValueError: if `texts` is not a string tensor of rank 0 or 1, or
            `split` or `lowercase` is invalid.

    Example:

    >>> split_text(tf.constant("¿Qué?"), split="word", lowercase=True).numpy()
    array([b'\\xc2\\xbf', b'qu\\xc3\\xa9', b'?'], dtype=object)
    """
    _check_split(split)
    _validation.check_bool("lowercase", lowercase)
    texts = string_tensor("texts", texts)
    if lowercase:
        texts = tf.strings.lower(texts, encoding="utf-8")
    if split == "character":
        return tf.strings.unicode_split(texts, "UTF-8")
    return tf.strings.split(tf.strings.regex_replace(texts, _PUNCTUATION, r" \1 "))


def build_vocabulary(texts, split="character", lowercase=False, max_tokens=None, min_count=1):
    """Builds a vocabulary offline from training strings.

    Tokens are ordered by decreasing count, ties by their UTF-8 bytes, so the
    same data always gives the same vocabulary.

    Args:
        texts: a list or other iterable of `str`/`bytes` (UTF-8), or a
            `tf.data.Dataset` of string scalars (such as one side of the
            training split).
        split: `"character"` or `"word"`, as in `split_text`. Defaults to
            `"character"`.
        lowercase: bool, as in `split_text`. Defaults to `False`.
        max_tokens: optional int greater than 4, the largest total vocabulary
            size including the 4 reserved ids; the rarest tokens are dropped.
            Defaults to `None` (keep all).
        min_count: positive int, drop tokens seen fewer times. Defaults to `1`.

    Returns:
        A list of `str` tokens (without the reserved tokens), ready for
        `TextTokenizer(vocabulary=...)`.

    Raises:
        ValueError: if `texts` is not an iterable of strings or a dataset of
            string scalars, holds no string, or holds bytes that are not valid
            UTF-8 (named by their index); if no token is left; for a bad
            `split`, `lowercase`, `max_tokens` or `min_count`.

    Example:

    >>> build_vocabulary(["abca", "b"])
    ['a', 'b', 'c']
    """
    _check_split(split)
    _validation.check_bool("lowercase", lowercase)
    if max_tokens is not None and (
        isinstance(max_tokens, bool)
        or not isinstance(max_tokens, int)
        or max_tokens <= len(RESERVED_TOKENS)
    ):
        raise ValueError(
            "`max_tokens` must be an integer greater than the 4 reserved ids, or "
            f"None. Received: max_tokens={max_tokens!r}"
        )
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count <= 0:
        raise ValueError(
            f"`min_count` must be a positive integer. Received: min_count={min_count!r}"
        )
    texts = text_dataset(texts)

    def split_batch(batch):
        # Valid UTF-8 is unchanged by a UTF-8 to UTF-8 transcoding.
        valid = tf.equal(tf.strings.unicode_transcode(batch, "UTF-8", "UTF-8"), batch)
        return batch, valid, split_text(batch, split=split, lowercase=lowercase).flat_values

    counts = collections.Counter()
    seen = 0
    for batch, valid, tokens in texts.batch(1024).map(split_batch).as_numpy_iterator():
        if not valid.all():
            index = int(np.argmin(valid))
            raise ValueError(
                "`texts` must hold UTF-8 text. "
                f"Received: texts[{seen + index}]={batch[index]!r}, which is not valid UTF-8"
            )
        seen += len(batch)
        counts.update(tokens.tolist())
    vocabulary = [
        token.decode("utf-8")
        for token, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        if count >= min_count
    ]
    vocabulary = [token for token in vocabulary if token not in RESERVED_TOKENS]
    if max_tokens is not None:
        vocabulary = vocabulary[: max_tokens - len(RESERVED_TOKENS)]
    if not vocabulary:
        raise ValueError(
            "No token is left to build a vocabulary from: the texts are empty "
            f"or every token is rarer than min_count. Received: min_count={min_count!r}, "
            f"number of distinct tokens={len(counts)}"
        )
    return vocabulary


def text_dataset(texts):
    """`texts` as a `tf.data.Dataset` of string scalars, or a `ValueError`.

    Args:
        texts: a list or other iterable of `str`/`bytes`, or a
            `tf.data.Dataset` of string scalars.

    Returns:
        A `tf.data.Dataset` of string scalars (`texts` itself if it is one).

    Raises:
        ValueError: if `texts` is neither, or is an empty iterable.
    """
    if isinstance(texts, tf.data.Dataset):
        if texts.element_spec != tf.TensorSpec([], tf.string):
            raise ValueError(
                "`texts` must be a `tf.data.Dataset` of string scalars. "
                f"Received: texts with element_spec={texts.element_spec}"
            )
    else:
        if isinstance(texts, (str, bytes)) or not isinstance(texts, collections.abc.Iterable):
            raise ValueError(
                "`texts` must be a list (or other iterable) of strings or a "
                f"`tf.data.Dataset` of strings. Received: texts={texts!r}"
            )
        texts = list(texts)
        if not texts:
            raise ValueError(
                "`texts` holds no strings, so no vocabulary can be built. Pass the "
                "training sentences. Received: texts=[]"
            )
        for index, text in enumerate(texts):
            if not isinstance(text, (str, bytes)):
                raise ValueError(
                    "Every entry of `texts` must be a `str` or `bytes`. "
                    f"Received: texts[{index}]={text!r}"
                )
        texts = tf.data.Dataset.from_tensor_slices(tf.constant(texts, dtype=tf.string))
    return texts


def content_ids(ids, vocabulary_size):
    """The ids a tokenizer turns back into text, in the graph.

    Drops padding and `[START]` ids and everything from the first `[END]` on;
    ids outside `[0, vocabulary_size)` become `[UNK]` (`OOV_ID`).

    Args:
        ids: int tensor of rank 1 (one sequence) or 2 (a batch).
        vocabulary_size: int, the tokenizer's number of ids.

    Returns:
        A pair: int32 `tf.RaggedTensor` `(batch, None)` (a batch of one for a
        rank-1 input), and a Python bool, whether `ids` was rank 1.

    Raises:
        ValueError: if `ids` is not an integer tensor of rank 1 or 2.
    """
    try:
        ids = tf.convert_to_tensor(ids)
    except (TypeError, ValueError):
        raise ValueError(
            f"`ids` must be an integer tensor of rank 1 or 2. Received: ids={ids!r}"
        ) from None
    if not ids.dtype.is_integer or ids.shape.rank not in (1, 2, None):
        raise ValueError(
            "`ids` must be an integer tensor of rank 1 or 2. "
            f"Received: ids with dtype={ids.dtype.name} and shape={ids.shape}"
        )
    single = ids.shape.rank == 1
    if single:
        ids = ids[tf.newaxis]  # (1, seq)
    # Range first, in the input dtype: a cast could wrap 2**32 + 5 to 5.
    ids = tf.where((ids >= 0) & (ids < vocabulary_size), ids, tf.cast(OOV_ID, ids.dtype))
    ids = tf.cast(ids, tf.int32)
    before_end = tf.cumsum(tf.cast(ids == END_ID, tf.int32), axis=-1) == 0
    keep = before_end & (ids != PADDING_ID) & (ids != START_ID)
    return tf.ragged.boolean_mask(ids, keep), single


def string_tensor(name, texts, allow_column=False):
    """`texts` as a string tensor of rank 0 or 1, or a `ValueError`.

    With `allow_column`, a `(batch, 1)` tensor is accepted and flattened.
    """
    layout = "of rank 0 or 1" + (" (or shaped (batch, 1))" if allow_column else "")
    try:
        texts = tf.convert_to_tensor(texts, dtype=tf.string)
    except (TypeError, ValueError):
        raise ValueError(
            f"`{name}` must be a string tensor {layout}. Received: {name}={texts!r}"
        ) from None
    shape = texts.shape
    if allow_column and shape.rank == 2 and shape[1] == 1:
        return tf.reshape(texts, [-1])
    if shape.rank is not None and shape.rank > 1:
        raise ValueError(
            f"`{name}` must be a string tensor {layout}. Received: {name}.shape={tuple(shape)}"
        )
    return texts


def _check_split(split):
    if not isinstance(split, str) or split not in _SPLITS:
        raise ValueError(f"`split` must be one of {_SPLITS}. Received: split={split!r}")


class Tokenizer(keras.layers.Layer):
    """Base of the package's tokenizers: strings to framed, padded ids.

    Subclasses implement `tokenize` (strings to ids, without start/end ids)
    and `detokenize`; calling the layer on a batch of strings gives
    `[START] ids... [END]` per string, right-padded with 0 to the longest
    string of the batch: the form both the encoder and the decoder of
    `build_transformer` take. `TextTokenizer` (characters or words) and
    `data.subword.SubwordTokenizer` (SentencePiece pieces) are the two.

    Call arguments:
        inputs: string tensor of shape `(batch,)` or `(batch, 1)` (a scalar
            counts as a batch of one).

    Returns:
        An int32 tensor `(batch, max_ids_in_batch + 2)`.
    """

    def call(self, inputs):
        inputs = string_tensor("inputs", inputs, allow_column=True)
        ids = self.tokenize(tf.reshape(inputs, [-1]))  # (batch, None) ragged
        batch = ids.nrows()
        start = tf.fill([batch, 1], START_ID)
        end = tf.fill([batch, 1], END_ID)
        ids = tf.concat([start, ids, end], axis=1)
        return ids.to_tensor(default_value=PADDING_ID)  # (batch, max_len + 2)

    def compute_output_spec(self, inputs):
        # A scalar string is tokenized as a batch of one.
        batch = inputs.shape[0] if len(inputs.shape) else 1
        return keras.KerasTensor((batch, None), dtype="int32")


@keras.saving.register_keras_serializable(package="keras_transformer_layers")
class TextTokenizer(Tokenizer):
    """Turns strings into padded id sequences with start/end ids, and back.

    The id layout is fixed: 0 padding, 1 `[UNK]`, 2 `[START]`, 3 `[END]`, then
    `vocabulary` in order (see the module docstring). Calling the layer on a
    batch of strings gives `[START] tokens... [END]` per string, right-padded
    with 0 to the longest string of the batch: the form both the encoder and
    the decoder of `build_transformer` take. `detokenize` inverts it and stops
    at the first `[END]`.

    Args:
        vocabulary: non-empty list of distinct `str` tokens, without the
            reserved tokens, each one token of `split` (a single character
            for `"character"`; a word without spaces or a single punctuation
            mark for `"word"`; lowercase when `lowercase=True`), since any
            other entry could never match. Build it offline with
            `build_vocabulary`.
        split: `"character"` (for the synthetic tasks) or `"word"` (words and
            punctuation marks, for real corpora). Defaults to `"character"`.
        lowercase: bool, lowercase the input before splitting. Defaults to
            `False`.
        **kwargs: base layer arguments such as `name`.

    Call arguments:
        inputs: string tensor of shape `(batch,)` or `(batch, 1)` (a scalar
            counts as a batch of one). Bytes that are not valid UTF-8 read as
            `[UNK]`.

    Returns:
        An int32 tensor `(batch, max_tokens_in_batch + 2)`.

    Example:

    >>> tokenizer = TextTokenizer(vocabulary=["1", "2", "-"])
    >>> tokenizer(tf.constant(["12-1", "2"])).numpy()
    array([[2, 4, 5, 6, 4, 3],
           [2, 5, 3, 0, 0, 0]], dtype=int32)
    >>> tokenizer.detokenize([[2, 4, 5, 6, 4, 3], [2, 5, 3, 4, 0, 0]]).numpy()
    array([b'12-1', b'2'], dtype=object)
    """

    def __init__(self, vocabulary, split="character", lowercase=False, **kwargs):
        super().__init__(**kwargs)
        if isinstance(vocabulary, (str, bytes)) or not isinstance(vocabulary, (list, tuple)):
            raise ValueError(
                f"`vocabulary` must be a list of string tokens. Received: vocabulary={vocabulary!r}"
            )
        if not vocabulary:
            raise ValueError(
                "`vocabulary` must hold at least one token; build one from the "
                "training split with `build_vocabulary`. "
                f"Received: vocabulary={vocabulary!r}"
            )
        if not all(isinstance(token, str) and token for token in vocabulary):
            raise ValueError(
                "Every `vocabulary` entry must be a non-empty `str`. "
                f"Received: vocabulary={vocabulary!r}"
            )
        reserved = sorted(set(vocabulary) & set(RESERVED_TOKENS))
        if reserved:
            raise ValueError(
                f"`vocabulary` must not contain the reserved tokens {RESERVED_TOKENS}; "
                f"they get fixed ids. Received: vocabulary containing {reserved!r}"
            )
        duplicates = sorted(t for t, n in collections.Counter(vocabulary).items() if n > 1)
        if duplicates:
            raise ValueError(
                "`vocabulary` entries must be distinct. "
                f"Received: vocabulary with duplicates {duplicates!r}"
            )
        _check_split(split)
        _validation.check_bool("lowercase", lowercase)
        # An entry matches only if splitting it gives exactly itself: with
        # "character" one character, with "word" one word or punctuation mark,
        # and lowercase when `lowercase` is True.
        tokens = split_text(tf.constant(list(vocabulary)), split=split, lowercase=lowercase)
        never = [
            entry
            for entry, row in zip(vocabulary, tokens.to_list(), strict=True)
            if row != [entry.encode("utf-8")]
        ]
        if never:
            raise ValueError(
                f"Every `vocabulary` entry must be one token of split={split!r}"
                f"{' lowercased' if lowercase else ''} (one character for "
                "'character'; one word or punctuation mark for 'word'), or it can "
                f"never match. Received: vocabulary entries {never!r}"
            )
        self.vocabulary = list(vocabulary)
        self.split = split
        self.lowercase = lowercase
        self.lookup = keras.layers.StringLookup(
            vocabulary=list(RESERVED_TOKENS[2:]) + self.vocabulary,
            mask_token=RESERVED_TOKENS[PADDING_ID],
            oov_token=RESERVED_TOKENS[OOV_ID],
            num_oov_indices=1,
            name="lookup",
        )

    @property
    def vocabulary_size(self):
        """Number of ids, reserved ones included: the model's vocabulary size."""
        return len(RESERVED_TOKENS) + len(self.vocabulary)

    def get_vocabulary(self):
        """Returns the token of every id, reserved ones included, as a list."""
        return list(RESERVED_TOKENS) + self.vocabulary

    def tokenize(self, inputs):
        """Maps strings to ids, without start/end ids and without padding.

        Args:
            inputs: string tensor of rank 0 or 1.

        Returns:
            int32 ids: rank 1 for a scalar, a `tf.RaggedTensor` for a vector.

        Raises:
            ValueError: if `inputs` is not a string tensor of rank 0 or 1.
        """
        inputs = string_tensor("inputs", inputs)
        tokens = split_text(inputs, split=self.split, lowercase=self.lowercase)
        if isinstance(tokens, tf.RaggedTensor):
            ids = self.lookup(tokens.flat_values)
            return tokens.with_flat_values(tf.cast(ids, tf.int32))
        return tf.cast(self.lookup(tokens), tf.int32)

    def build(self, inputs_shape):
        self.lookup.build((None,))

    def detokenize(self, ids):
        """Maps ids back to strings, in the graph.

        Drops padding and `[START]` ids and everything from the first `[END]`
        on. Ids outside the vocabulary read as `[UNK]`. Characters are joined
        with no separator, words with one space.

        Args:
            ids: int tensor of rank 1 (one sequence) or 2 (a batch).

        Returns:
            A string scalar or a `(batch,)` string tensor.

        Raises:
            ValueError: if `ids` is not an integer tensor of rank 1 or 2.
        """
        ids, single = content_ids(ids, self.vocabulary_size)  # (batch, None) ragged
        vocabulary = tf.constant(self.get_vocabulary())
        tokens = ids.with_flat_values(tf.gather(vocabulary, ids.flat_values))
        separator = "" if self.split == "character" else " "
        texts = tf.strings.reduce_join(tokens, axis=-1, separator=separator)
        return texts[0] if single else texts

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary": self.vocabulary,
                "split": self.split,
                "lowercase": self.lowercase,
            }
        )
        return config
