"""The tf.data pipeline from string pairs to teacher-forcing batches."""

import tensorflow as tf

from keras_transformer_layers import _validation
from keras_transformer_layers.data.tokenizer import END_ID
from keras_transformer_layers.data.tokenizer import PADDING_ID
from keras_transformer_layers.data.tokenizer import START_ID

_LONG_PAIRS = ("drop", "clip")


def _with_start_end(ids):
    return tf.concat([[START_ID], ids, [END_ID]], axis=0)  # (len + 2,)


def _as_ragged(ids):
    return ids if isinstance(ids, tf.RaggedTensor) else tf.RaggedTensor.from_tensor(ids)


def _vocabulary_size(name, value, tokenizer_name, tokenizer):
    """The vocabulary size the ids of `tokenizer` are checked against."""
    if not callable(getattr(tokenizer, "tokenize", None)):
        raise ValueError(
            f"`{tokenizer_name}` must have a `tokenize` method, such as a "
            f"`TextTokenizer`. Received: {tokenizer_name}={tokenizer!r}"
        )
    tokenizer_size = getattr(tokenizer, "vocabulary_size", None)
    if value is None:
        if tokenizer_size is None:
            raise ValueError(
                f"`{name}` must be given when `{tokenizer_name}` has no "
                "`vocabulary_size`: pass the vocabulary size of the model. "
                f"Received: {name}=None"
            )
        return tokenizer_size
    _validation.check_positive_int(name, value)
    if value <= END_ID:
        raise ValueError(
            f"`{name}` must be greater than {END_ID}, so that the [START] and "
            f"[END] ids ({START_ID}, {END_ID}) fit. Received: {name}={value!r}"
        )
    if tokenizer_size is not None and value < tokenizer_size:
        raise ValueError(
            f"`{name}` must be at least the `vocabulary_size` of `{tokenizer_name}` "
            f"({tokenizer_size}): the model needs a row for every id the tokenizer "
            f"gives. Received: {name}={value!r}"
        )
    return value


def _drop_long_pairs(source, target, sequence_length):
    """Keeps the pairs of a tokenized batch that fit in `sequence_length` ids."""
    # + 2 for the [START] and [END] ids added later.
    keep = (source.row_lengths() + 2 <= sequence_length) & (
        target.row_lengths() + 2 <= sequence_length
    )
    return tf.ragged.boolean_mask(source, keep), tf.ragged.boolean_mask(target, keep)


def _check_batches(batches, sizes, empty_message):
    """Checks the model-ready batches on every pass.

    The ids of each batch must be in `[0, vocabulary size)`, and a pass must
    yield at least one batch: a sentinel (an empty batch) closes the stream,
    and a scan that counts the batches asserts at the sentinel. The checks
    sit after the cache, as `tf.data`'s cache keeps what a failed pass read
    and would replay it without a word.
    """

    def check_ids(inputs, labels):
        for name, ids in (
            ("encoder_inputs", inputs["encoder_inputs"]),
            ("decoder_inputs", inputs["decoder_inputs"]),
            ("labels", labels),
        ):
            size_name, size = sizes[name]
            _validation.check_ids_in_range(name, ids, 0, size, size_name, ignore=PADDING_ID)
            # Padding is only ever trailing ([END] follows every token), so a
            # padding id before a real id came from the tokenizer.
            inner = (ids[:, :-1] == PADDING_ID) & (ids[:, 1:] != PADDING_ID)
            tf.debugging.Assert(
                tf.logical_not(tf.reduce_any(inner)),
                [
                    f"`{name}` holds the padding id {PADDING_ID} inside a sequence, where "
                    "the model would mask it out: tokenizers must give ids >= 1. "
                    f"Received: {name}=",
                    tf.boolean_mask(ids, tf.reduce_any(inner, axis=1)),
                ],
                summarize=16,
            )
        return inputs, labels, False

    empty = tf.zeros([0, 0], tf.int32)
    sentinel = ({"encoder_inputs": empty, "decoder_inputs": empty}, empty, True)
    batches = batches.map(check_ids, num_parallel_calls=tf.data.AUTOTUNE)
    batches = batches.concatenate(tf.data.Dataset.from_tensors(sentinel))

    def count(seen, batch):
        last = batch[-1]
        tf.debugging.Assert(tf.logical_not(last & tf.equal(seen, 0)), [empty_message])
        return seen + 1, batch

    batches = batches.scan(tf.constant(0, tf.int64), count)
    return batches.filter(lambda inputs, labels, last: tf.logical_not(last)).map(
        lambda inputs, labels, last: (inputs, labels)
    )


def make_translation_dataset(
    pairs,
    source_tokenizer,
    target_tokenizer,
    batch_size,
    sequence_length=None,
    long_pairs="drop",
    keys=None,
    bucket_boundaries=None,
    shuffle_buffer_size=None,
    seed=None,
    cache=True,
    source_vocabulary_size=None,
    target_vocabulary_size=None,
):
    """Turns `(source, target)` strings into batches for teacher forcing.

    Steps, in order: tokenize both sides (in batches of 1024, in the graph);
    add `[START]` and `[END]`; drop or clip pairs longer than `sequence_length`;
    shift the target; cache the token ids in memory (and count the batches,
    below); shuffle; batch with padding id 0 (one padded batch, or per length
    bucket); check the batches (below); prefetch.

    The shift makes the decoder read `[START] y1 ... yn` and predict
    `y1 ... yn [END]`: for a target `[START] a b [END]` the decoder input is
    `[START] a b` and the label is `a b [END]`. The shift happens before
    padding, so decoder input and label have padding (id 0) at the same
    positions. The source keeps both its `[START]` and `[END]` ids.

    Args:
        pairs: `tf.data.Dataset` of string scalars, either `(source, target)`
            tuples (such as TFDS' `as_supervised=True`) or dicts read through
            `keys`.
        source_tokenizer: a `TextTokenizer` (words or characters, stock
            TensorFlow), a `keras_transformer_layers.data.subword.SubwordTokenizer`
            (SentencePiece pieces, needs the `subword` extra), or anything with
            `tokenize`, for the source side.
        target_tokenizer: the same for the target side.
        batch_size: positive int, pairs per batch.
        sequence_length: optional int >= 3, the longest source and the longest
            target sequence kept, `[START]` and `[END]` included. Defaults to
            `None` (no limit).
        long_pairs: `"drop"` removes a pair whose source or target is longer
            than `sequence_length`; `"clip"` truncates the over-long side to
            `sequence_length` ids, which cuts off its `[END]`, so the model is never
            taught to stop early. Defaults to `"drop"`.
        keys: optional `(source_key, target_key)` for dict elements, such as
            `("en", "es")`. Defaults to `None` (tuple elements).
        bucket_boundaries: optional increasing list of positive ints. When
            given, pairs are batched with others of similar length (the longer
            side decides) with `tf.data.Dataset.bucket_by_sequence_length`,
            which wastes less compute on padding. Defaults to `None` (plain
            padded batches).
        shuffle_buffer_size: optional positive int; shuffle the pairs
            each epoch with a buffer of this size. Defaults to `None` (no
            shuffling).
        seed: optional int seed for the shuffle. Defaults to `None`.
        cache: bool, cache the tokenized pairs in memory. Defaults to `True`:
            the function then reads `pairs` once, which fills the cache, and
            counts the batches of a pass, so the dataset's `cardinality()` is
            that number and `model.fit` knows how long an epoch is (no
            "ran out of data" warning, a progress bar with a true end).
            With `False` (or an infinite `pairs`) the number of batches is
            left unknown, as counting would cost an extra pass.
        source_vocabulary_size: optional int, the source vocabulary size of
            the model the batches feed (`build_transformer`'s
            `source_vocabulary_size`). Defaults to `None`, the
            `vocabulary_size` of `source_tokenizer`.
        target_vocabulary_size: optional int, the same for the target side.
            Defaults to `None`, the `vocabulary_size` of `target_tokenizer`.

    The batches never hold an id the model has no embedding or logit for.
    A vocabulary size smaller than the tokenizer's `vocabulary_size` is a
    `ValueError` here, before any data is read; a tokenizer without
    `vocabulary_size` needs the size passed. Every batch is also checked,
    on every pass: an id outside `[0, vocabulary_size)` stops the iteration
    with a `tf.errors.InvalidArgumentError` that names the input, the bad ids
    and the size. So does a pass that yields no pair at all (`pairs` is
    empty, or `long_pairs="drop"` drops every pair): the epoch fails instead
    of training on nothing.

    Returns:
        A `tf.data.Dataset` of `({"encoder_inputs": source, "decoder_inputs":
        target_in}, target_out)`, int32 tensors of shape `(batch, length)`,
        padded with 0. The dict keys are the input names of
        `build_transformer`'s model, so it goes straight into `model.fit`.

    Example:

    ```python
    train = make_translation_dataset(
        pairs, source_tokenizer, target_tokenizer, batch_size=64,
        sequence_length=40, shuffle_buffer_size=10_000, seed=0)
    model.fit(train, epochs=10)
    ```

    Raises:
        ValueError: for a bad argument, a vocabulary size smaller than the
            tokenizer's, or `pairs` known to be empty.
    """
    if not isinstance(pairs, tf.data.Dataset):
        raise ValueError(
            "`pairs` must be a `tf.data.Dataset` of (source, target) strings. "
            f"Received: pairs={pairs!r}"
        )
    _validation.check_positive_int("batch_size", batch_size)
    if sequence_length is not None and (
        isinstance(sequence_length, bool)
        or not isinstance(sequence_length, int)
        or sequence_length < 3
    ):
        raise ValueError(
            "`sequence_length` must be an integer >= 3 ([START], one token, [END]) or "
            f"None. Received: sequence_length={sequence_length!r}"
        )
    if not isinstance(long_pairs, str) or long_pairs not in _LONG_PAIRS:
        raise ValueError(
            f"`long_pairs` must be one of {_LONG_PAIRS}. Received: long_pairs={long_pairs!r}"
        )
    if bucket_boundaries is not None:
        boundaries = (
            list(bucket_boundaries) if isinstance(bucket_boundaries, (list, tuple)) else None
        )
        if (
            not boundaries
            or not all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in boundaries)
            or boundaries != sorted(set(boundaries))
        ):
            raise ValueError(
                "`bucket_boundaries` must be a non-empty, strictly increasing list "
                f"of positive integers. Received: bucket_boundaries={bucket_boundaries!r}"
            )
    _validation.check_optional_positive_int("shuffle_buffer_size", shuffle_buffer_size)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"`seed` must be an integer or None. Received: seed={seed!r}")
    _validation.check_bool("cache", cache)
    source_size = _vocabulary_size(
        "source_vocabulary_size", source_vocabulary_size, "source_tokenizer", source_tokenizer
    )
    target_size = _vocabulary_size(
        "target_vocabulary_size", target_vocabulary_size, "target_tokenizer", target_tokenizer
    )
    if pairs.cardinality() == 0:
        raise ValueError(
            "`pairs` holds no (source, target) pairs, so there is nothing to train "
            f"on. Received: pairs={pairs!r} with 0 elements"
        )

    spec = pairs.element_spec
    if keys is not None:
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
        pairs = pairs.map(lambda example: (example[keys[0]], example[keys[1]]))
    elif not (isinstance(spec, tuple) and len(spec) == 2):
        raise ValueError(
            "The elements of `pairs` must be (source, target) tuples; for dict "
            "elements pass `keys=(source_key, target_key)`. "
            f"Received: keys=None with element_spec={spec}"
        )

    def tokenize(source, target):
        source_ids = _as_ragged(source_tokenizer.tokenize(source))
        target_ids = _as_ragged(target_tokenizer.tokenize(target))
        source_ids, target_ids = tf.cast(source_ids, tf.int32), tf.cast(target_ids, tf.int32)
        if sequence_length is not None and long_pairs == "drop":
            source_ids, target_ids = _drop_long_pairs(source_ids, target_ids, sequence_length)
        return source_ids, target_ids

    dataset = pairs.batch(1024).map(tokenize, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.unbatch()
    dataset = dataset.map(
        lambda s, t: (_with_start_end(s), _with_start_end(t)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    if sequence_length is not None and long_pairs == "clip":
        dataset = dataset.map(lambda s, t: (s[:sequence_length], t[:sequence_length]))
    # Shift before padding, so the decoder input and the label of a pair have
    # the same length and padding positions (no [END] is ever read as input).
    dataset = dataset.map(lambda s, t: (s, t[:-1], t[1:]), num_parallel_calls=tf.data.AUTOTUNE)
    padding = (PADDING_ID, PADDING_ID, PADDING_ID)

    def batch(examples):
        if bucket_boundaries is not None:
            return examples.bucket_by_sequence_length(
                element_length_func=lambda s, t_in, t_out: tf.maximum(tf.size(s), tf.size(t_in)),
                bucket_boundaries=list(bucket_boundaries),
                bucket_batch_sizes=[batch_size] * (len(bucket_boundaries) + 1),
                padding_values=padding,
            )
        return examples.padded_batch(batch_size, padding_values=padding)

    num_batches = 0
    if cache:
        dataset = dataset.cache()
        if pairs.cardinality() != tf.data.INFINITE_CARDINALITY:
            # One pass fills the cache and counts the batches of a pass; the
            # count does not depend on the order, so it holds after shuffling.
            num_batches = int(batch(dataset).reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))
    if shuffle_buffer_size is not None:
        dataset = dataset.shuffle(shuffle_buffer_size, seed=seed, reshuffle_each_iteration=True)
    dataset = batch(dataset)

    def to_model_inputs(source, target_in, target_out):
        return {"encoder_inputs": source, "decoder_inputs": target_in}, target_out

    dataset = dataset.map(to_model_inputs, num_parallel_calls=tf.data.AUTOTUNE)
    if sequence_length is not None and long_pairs == "drop":
        empty_message = (
            "No pair is left: `pairs` is empty, or every pair has a source or target "
            f"longer than sequence_length={sequence_length} ids ([START] and [END] included) and "
            "`long_pairs` is drop, which removes them. Raise `sequence_length`, or set "
            "`long_pairs` to clip."
        )
    else:
        empty_message = "`pairs` holds no (source, target) pairs: nothing to train on."
    sizes = {
        "encoder_inputs": ("source_vocabulary_size", source_size),
        "decoder_inputs": ("target_vocabulary_size", target_size),
        "labels": ("target_vocabulary_size", target_size),
    }
    dataset = _check_batches(dataset, sizes, empty_message)
    if num_batches:
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(num_batches))
    return dataset.prefetch(tf.data.AUTOTUNE)
