"""Per-pair steps of the pipeline: tokenize, pack with [START] and [END], shift.

Each step maps a `tf.data.Dataset` to another, one pair per element, so the
steps compose in any pipeline; `make_translation_dataset` is their composition
with caching, shuffling and batching.
"""

import tensorflow as tf

from keras_transformer_layers.tokens import END_ID
from keras_transformer_layers.tokens import START_ID

LONG_PAIRS = ("drop", "clip")
# Pairs tokenized per call of the tokenizers: a few large calls run faster
# than one call per pair.
_TOKENIZE_BATCH = 1024


def _check_tokenizer(name, tokenizer):
    if not callable(getattr(tokenizer, "tokenize", None)):
        raise ValueError(
            f"`{name}` must have a `tokenize` method, such as a "
            f"`TextTokenizer`. Received: {name}={tokenizer!r}"
        )


def _as_tuples(pairs, keys):
    """`pairs` as `(source, target)` tuples, read through `keys` for dict elements."""
    spec = pairs.element_spec
    if keys is None:
        if not (isinstance(spec, tuple) and len(spec) == 2):
            raise ValueError(
                "The elements of `pairs` must be (source, target) tuples; for dict "
                "elements pass `keys=(source_key, target_key)`. "
                f"Received: keys=None with element_spec={spec}"
            )
        return pairs
    if (
        not isinstance(spec, dict)
        or not isinstance(keys, (list, tuple))
        or len(keys) != 2
        or not all(isinstance(k, str) and k in spec for k in keys)
    ):
        raise ValueError(
            "`keys` must name the source and target entries of the dataset's "
            f"dict elements {sorted(spec) if isinstance(spec, dict) else spec}. "
            f"Received: keys={keys!r}"
        )
    return pairs.map(lambda example: (example[keys[0]], example[keys[1]]))


def _check_id_pairs(name, dataset):
    spec = dataset.element_spec if isinstance(dataset, tf.data.Dataset) else None
    if not (
        isinstance(spec, tuple)
        and len(spec) == 2
        # A tensor, or a ragged one with no ragged dimension (`unbatch` of ragged).
        and all(
            isinstance(s, (tf.TensorSpec, tf.RaggedTensorSpec))
            and s.dtype.is_integer
            and s.shape.rank == 1
            for s in spec
        )
    ):
        raise ValueError(
            f"`{name}` must be a `tf.data.Dataset` of (source, target) integer id "
            f"vectors. Received: {name}={dataset!r}"
        )


def tokenize_pairs(pairs, source_tokenizer, target_tokenizer, keys=None):
    """Tokenizes `(source, target)` strings into int32 id vectors.

    The tokenizers run in the graph on batches of 1024 pairs; the result has
    one pair per element again, in the order of `pairs`.

    Args:
        pairs: `tf.data.Dataset` of string scalars, either `(source, target)`
            tuples (such as TFDS' `as_supervised=True`) or dicts read through
            `keys`.
        source_tokenizer: a `TextTokenizer` (words or characters, stock
            TensorFlow), a `keras_transformer_layers.data.subword.SubwordTokenizer`
            (SentencePiece pieces, needs the `subword` extra), or anything with
            `tokenize` (a batch of strings to their ids, ragged), for the
            source side.
        target_tokenizer: the same for the target side.
        keys: optional `(source_key, target_key)` for dict elements, such as
            `("en", "es")`. Defaults to `None` (tuple elements).

    Returns:
        A `tf.data.Dataset` of `(source_ids, target_ids)`, int32 vectors
        without `[START]` or `[END]`.

    Example:

    >>> tokenizer = TextTokenizer(["a", "b"])
    >>> pairs = tf.data.Dataset.from_tensor_slices((["ab"], ["b"]))
    >>> [(s.tolist(), t.tolist()) for s, t in
    ...  tokenize_pairs(pairs, tokenizer, tokenizer).as_numpy_iterator()]
    [([4, 5], [5])]
    """
    if not isinstance(pairs, tf.data.Dataset):
        raise ValueError(
            "`pairs` must be a `tf.data.Dataset` of (source, target) strings. "
            f"Received: pairs={pairs!r}"
        )
    _check_tokenizer("source_tokenizer", source_tokenizer)
    _check_tokenizer("target_tokenizer", target_tokenizer)
    pairs = _as_tuples(pairs, keys)

    def tokenize(source, target):
        ids = []
        for tokenizer, texts in ((source_tokenizer, source), (target_tokenizer, target)):
            tokens = tokenizer.tokenize(texts)
            if not isinstance(tokens, tf.RaggedTensor):
                tokens = tf.RaggedTensor.from_tensor(tokens)
            ids.append(tf.cast(tokens, tf.int32))
        return tuple(ids)

    tokenized = pairs.batch(_TOKENIZE_BATCH).map(tokenize, num_parallel_calls=tf.data.AUTOTUNE)
    return tokenized.unbatch()


def pack_pairs(id_pairs, sequence_length=None, long_pairs="drop"):
    """Adds `[START]` and `[END]` to both sides; drops or clips long pairs.

    Args:
        id_pairs: `tf.data.Dataset` of `(source_ids, target_ids)` integer
            vectors, such as `tokenize_pairs` gives.
        sequence_length: optional int >= 3, the longest source and the longest
            target sequence kept, `[START]` and `[END]` included. Defaults to
            `None` (no limit).
        long_pairs: `"drop"` removes a pair whose source or target is longer
            than `sequence_length`; `"clip"` truncates the over-long side to
            `sequence_length` ids, which cuts off its `[END]`, so the model is
            never taught to stop early. Defaults to `"drop"`.

    Returns:
        A `tf.data.Dataset` of `(source, target)` vectors
        `[START] ... [END]`, in the order of `id_pairs`.

    Example:

    >>> ids = tf.data.Dataset.from_tensors(([4, 5, 6], [7]))
    >>> [(s.tolist(), t.tolist()) for s, t in
    ...  pack_pairs(ids, sequence_length=4, long_pairs="clip").as_numpy_iterator()]
    [([2, 4, 5, 6], [2, 7, 3])]
    """
    _check_id_pairs("id_pairs", id_pairs)
    if sequence_length is not None and (
        isinstance(sequence_length, bool)
        or not isinstance(sequence_length, int)
        or sequence_length < 3
    ):
        raise ValueError(
            "`sequence_length` must be an integer >= 3 ([START], one token, [END]) or "
            f"None. Received: sequence_length={sequence_length!r}"
        )
    if not isinstance(long_pairs, str) or long_pairs not in LONG_PAIRS:
        raise ValueError(
            f"`long_pairs` must be one of {LONG_PAIRS}. Received: long_pairs={long_pairs!r}"
        )

    def with_start_end(source, target):
        return tuple(
            tf.concat([[START_ID], tf.cast(ids, tf.int32), [END_ID]], axis=0)  # (len + 2,)
            for ids in (source, target)
        )

    packed = id_pairs.map(with_start_end, num_parallel_calls=tf.data.AUTOTUNE)
    if sequence_length is None:
        return packed
    if long_pairs == "drop":
        return packed.filter(
            lambda source, target: (
                (tf.size(source) <= sequence_length) & (tf.size(target) <= sequence_length)
            )
        )
    return packed.map(
        lambda source, target: (source[:sequence_length], target[:sequence_length]),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def shift_targets(packed_pairs):
    """Makes teacher-forcing examples: the decoder reads the target, shifted.

    The decoder reads `[START] y1 ... yn` and predicts `y1 ... yn [END]`: for
    a target `[START] a b [END]` the decoder input is `[START] a b` and the
    label is `a b [END]`. Shifting before padding gives the decoder input and
    the label of a pair the same length, so after batching they have padding
    (id 0) at the same positions. The source keeps both its `[START]` and
    `[END]` ids.

    Args:
        packed_pairs: `tf.data.Dataset` of `(source, target)` integer vectors
            with `[START]` and `[END]`, such as `pack_pairs` gives.

    Returns:
        A `tf.data.Dataset` of `({"encoder_inputs": source, "decoder_inputs":
        target[:-1]}, target[1:])`. The dict keys are the input names of
        `build_transformer`'s model.

    Example:

    >>> packed = tf.data.Dataset.from_tensors(([2, 4, 3], [2, 5, 6, 3]))
    >>> inputs, labels = next(shift_targets(packed).as_numpy_iterator())
    >>> inputs["decoder_inputs"].tolist(), labels.tolist()
    ([2, 5, 6], [5, 6, 3])
    """
    _check_id_pairs("packed_pairs", packed_pairs)

    def shift(source, target):
        return {"encoder_inputs": source, "decoder_inputs": target[:-1]}, target[1:]

    return packed_pairs.map(shift, num_parallel_calls=tf.data.AUTOTUNE)
