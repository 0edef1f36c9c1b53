"""The tf.data pipeline from string pairs to teacher-forcing batches.

`make_translation_dataset` composes the steps of `pairs` and `batches` with
an in-memory cache, a count of the batches, shuffling and prefetching.
"""

import tensorflow as tf

from keras_transformer_layers import _validation
from keras_transformer_layers.data.batches import check_batches
from keras_transformer_layers.data.batches import padded_batches
from keras_transformer_layers.data.pairs import pack_pairs
from keras_transformer_layers.data.pairs import shift_targets
from keras_transformer_layers.data.pairs import tokenize_pairs


def _vocabulary_size(name, value, tokenizer_name, tokenizer):
    """The vocabulary size the ids of `tokenizer` are checked against."""
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
    if tokenizer_size is not None and value < tokenizer_size:
        raise ValueError(
            f"`{name}` must be at least the `vocabulary_size` of `{tokenizer_name}` "
            f"({tokenizer_size}): the model needs a row for every id the tokenizer "
            f"gives. Received: {name}={value!r}"
        )
    return value


def _check_epoch_options(shuffle_buffer_size, seed, cache):
    _validation.check_optional_positive_int("shuffle_buffer_size", shuffle_buffer_size)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"`seed` must be an integer or None. Received: seed={seed!r}")
    _validation.check_bool("cache", cache)


def _count(batches):
    """Reads one pass of `batches` and returns how many there are."""
    return int(batches.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1))


def _empty_message(sequence_length, long_pairs):
    if sequence_length is None or long_pairs != "drop":
        return None  # `check_batches`' own: `pairs` holds no pair
    return (
        "No pair is left: `pairs` is empty, or every pair has a source or target "
        f"longer than sequence_length={sequence_length} ids ([START] and [END] included) and "
        "`long_pairs` is drop, which removes them. Raise `sequence_length`, or set "
        "`long_pairs` to clip."
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

    The composition of the pipeline's steps, in order: `tokenize_pairs`
    (in batches of 1024, in the graph); `pack_pairs` (add `[START]` and
    `[END]`, drop or clip pairs longer than `sequence_length`);
    `shift_targets`; cache the examples in memory and count the batches
    (below); shuffle; `padded_batches` (one padded batch, or per length
    bucket); `check_batches` (below); prefetch. Call the steps directly to
    put other steps between them.

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
    examples = tokenize_pairs(pairs, source_tokenizer, target_tokenizer, keys=keys)
    examples = shift_targets(pack_pairs(examples, sequence_length, long_pairs))
    _check_epoch_options(shuffle_buffer_size, seed, cache)
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
    if cache:
        examples = examples.cache()
    shuffled = examples
    if shuffle_buffer_size is not None:
        shuffled = examples.shuffle(shuffle_buffer_size, seed=seed, reshuffle_each_iteration=True)
    batches = check_batches(
        padded_batches(shuffled, batch_size, bucket_boundaries),
        source_size,
        target_size,
        empty_message=_empty_message(sequence_length, long_pairs),
    )
    if cache and pairs.cardinality() != tf.data.INFINITE_CARDINALITY:
        # One pass fills the cache; the count does not depend on the order,
        # so it holds after shuffling.
        num_batches = _count(padded_batches(examples, batch_size, bucket_boundaries))
        if num_batches:
            batches = batches.apply(tf.data.experimental.assert_cardinality(num_batches))
    return batches.prefetch(tf.data.AUTOTUNE)
