"""Per-batch steps of the pipeline: pad into batches, check the batches."""

import tensorflow as tf

from keras_transformer_layers import _validation
from keras_transformer_layers.tokens import END_ID
from keras_transformer_layers.tokens import PADDING_ID
from keras_transformer_layers.tokens import START_ID

_INPUTS = ("encoder_inputs", "decoder_inputs")


def _check_examples(name, dataset):
    spec = dataset.element_spec if isinstance(dataset, tf.data.Dataset) else None
    if not (
        isinstance(spec, tuple)
        and len(spec) == 2
        and isinstance(spec[0], dict)
        and sorted(spec[0]) == sorted(_INPUTS)
    ):
        raise ValueError(
            f"`{name}` must be a `tf.data.Dataset` of ({{'encoder_inputs': ..., "
            f"'decoder_inputs': ...}}, labels), such as `shift_targets` gives. "
            f"Received: {name}={dataset!r}"
        )


def _check_bucket_boundaries(bucket_boundaries):
    boundaries = list(bucket_boundaries) if isinstance(bucket_boundaries, (list, tuple)) else None
    if (
        not boundaries
        or not all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in boundaries)
        or boundaries != sorted(set(boundaries))
    ):
        raise ValueError(
            "`bucket_boundaries` must be a non-empty, strictly increasing list "
            f"of positive integers. Received: bucket_boundaries={bucket_boundaries!r}"
        )
    return boundaries


def padded_batches(examples, batch_size, bucket_boundaries=None):
    """Batches teacher-forcing examples, padded with id 0 to the longest of each batch.

    Args:
        examples: `tf.data.Dataset` of `({"encoder_inputs": source,
            "decoder_inputs": target_in}, target_out)` vectors, such as
            `shift_targets` gives.
        batch_size: positive int, examples per batch.
        bucket_boundaries: optional increasing list of positive ints. When
            given, examples are batched with others of similar length (the
            longer of source and decoder input decides) with
            `tf.data.Dataset.bucket_by_sequence_length`, which wastes less
            compute on padding: a batch is emitted when its bucket holds
            `batch_size` examples, and the partly filled buckets at the end.
            Defaults to `None` (consecutive examples, one padded batch each
            `batch_size`).

    Returns:
        A `tf.data.Dataset` of the same structure, with int tensors of shape
        `(batch, length)`.

    Example:

    >>> examples = tf.data.Dataset.from_tensor_slices(
    ...     ({"encoder_inputs": [[2, 4, 3]], "decoder_inputs": [[2, 5]]}, [[5, 3]]))
    >>> inputs, labels = next(iter(padded_batches(examples, batch_size=8)))
    >>> tuple(labels.shape)
    (1, 2)
    """
    _check_examples("examples", examples)
    _validation.check_positive_int("batch_size", batch_size)
    padding = ({name: PADDING_ID for name in _INPUTS}, PADDING_ID)
    if bucket_boundaries is None:
        return examples.padded_batch(batch_size, padding_values=padding)
    boundaries = _check_bucket_boundaries(bucket_boundaries)

    def length(inputs, labels):
        return tf.maximum(tf.size(inputs["encoder_inputs"]), tf.size(inputs["decoder_inputs"]))

    return examples.bucket_by_sequence_length(
        element_length_func=length,
        bucket_boundaries=boundaries,
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        padding_values=padding,
    )


def _check_vocabulary_size(name, value):
    _validation.check_positive_int(name, value)
    if value <= END_ID:
        raise ValueError(
            f"`{name}` must be greater than {END_ID}, so that the [START] and "
            f"[END] ids ({START_ID}, {END_ID}) fit. Received: {name}={value!r}"
        )


def _check_ids(inputs, labels, sizes):
    """Graph assertions: ids in range, and padding only after the last real id."""
    tensors = {**inputs, "labels": labels}
    for name, (size_name, size) in sizes.items():
        ids = tensors[name]
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


def check_batches(batches, source_vocabulary_size, target_vocabulary_size, empty_message=None):
    """Checks the model-ready batches on every pass through them.

    Every id of `encoder_inputs` must be in `[0, source_vocabulary_size)`,
    every id of `decoder_inputs` and the labels in
    `[0, target_vocabulary_size)`, and padding (id 0) may only follow the last
    real id of a row: a tokenizer that gives id 0 would have the model mask a
    real token. A pass must also yield at least one batch. Any of these stops
    the iteration with a `tf.errors.InvalidArgumentError` that names the
    input, the bad ids and the size, or says that no batch came.

    Put this step after `tf.data.Dataset.cache`: the cache keeps what a
    failed pass read and replays it on the next pass without running the
    steps before it, so a check before the cache would pass silently then.

    Args:
        batches: `tf.data.Dataset` of `({"encoder_inputs": source,
            "decoder_inputs": target_in}, target_out)` int batches, such as
            `padded_batches` gives.
        source_vocabulary_size: int > 3, the source vocabulary size of the
            model the batches feed.
        target_vocabulary_size: int > 3, the same for the target side.
        empty_message: optional str, the error of a pass that yields no
            batch. Defaults to `None`, a message that `pairs` holds no pair.

    Returns:
        A `tf.data.Dataset` of the same batches, checked.

    Example:

    >>> batches = tf.data.Dataset.from_tensors(
    ...     ({"encoder_inputs": [[2, 9, 3]], "decoder_inputs": [[2, 4]]}, [[4, 3]]))
    >>> checked = check_batches(batches, source_vocabulary_size=10, target_vocabulary_size=8)
    >>> len(list(checked))  # with source_vocabulary_size=8, the id 9 stops the pass
    1
    """
    _check_examples("batches", batches)
    _check_vocabulary_size("source_vocabulary_size", source_vocabulary_size)
    _check_vocabulary_size("target_vocabulary_size", target_vocabulary_size)
    if empty_message is None:
        empty_message = "`pairs` holds no (source, target) pairs: nothing to train on."
    elif not isinstance(empty_message, str):
        raise ValueError(
            f"`empty_message` must be a str or None. Received: empty_message={empty_message!r}"
        )
    sizes = {
        "encoder_inputs": ("source_vocabulary_size", source_vocabulary_size),
        "decoder_inputs": ("target_vocabulary_size", target_vocabulary_size),
        "labels": ("target_vocabulary_size", target_vocabulary_size),
    }

    def check(inputs, labels):
        _check_ids(inputs, labels, sizes)
        return inputs, labels, False

    # A sentinel (an empty batch) closes the stream, and a scan that counts
    # the batches asserts at the sentinel that some came before it.
    inputs_spec, labels_spec = batches.element_spec
    sentinel = (
        {name: tf.zeros([0, 0], inputs_spec[name].dtype) for name in _INPUTS},
        tf.zeros([0, 0], labels_spec.dtype),
        True,
    )
    checked = batches.map(check, num_parallel_calls=tf.data.AUTOTUNE)
    checked = checked.concatenate(tf.data.Dataset.from_tensors(sentinel))

    def count(seen, batch):
        tf.debugging.Assert(tf.logical_not(batch[-1] & tf.equal(seen, 0)), [empty_message])
        return seen + 1, batch

    checked = checked.scan(tf.constant(0, tf.int64), count)
    return checked.filter(lambda inputs, labels, last: tf.logical_not(last)).map(
        lambda inputs, labels, last: (inputs, labels)
    )
