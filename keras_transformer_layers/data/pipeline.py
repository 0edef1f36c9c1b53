"""The tf.data pipeline from string pairs to teacher-forcing batches."""

import tensorflow as tf

from keras_transformer_layers import _validation
from keras_transformer_layers.data.tokenizer import END_ID
from keras_transformer_layers.data.tokenizer import PADDING_ID
from keras_transformer_layers.data.tokenizer import START_ID

_LONG_PAIRS = ("drop", "clip")


def _with_start_end(ids):
    return tf.concat([[START_ID], ids, [END_ID]], axis=0)  # (len + 2,)


def make_translation_dataset(
    pairs,
    source_tokenizer,
    target_tokenizer,
    batch_size,
    max_length=None,
    long_pairs="drop",
    keys=None,
    bucket_boundaries=None,
    shuffle_buffer_size=None,
    seed=None,
    cache=True,
):
    """Turns `(source, target)` strings into batches for teacher forcing.

    Steps, in order: tokenize both sides (in batches of 1024, in the graph);
    add `[START]` and `[END]`; drop or clip pairs longer than `max_length`;
    shift the target; cache the token ids in memory; shuffle; batch with
    padding id 0 (one padded batch, or per length bucket); prefetch.

    The shift makes the decoder read `[START] y1 ... yn` and predict
    `y1 ... yn [END]`: for a target `[START] a b [END]` the decoder input is
    `[START] a b` and the label is `a b [END]`. The shift happens before
    padding, so decoder input and label have padding (id 0) at the same
    positions. The source keeps both its `[START]` and `[END]` ids.

    Args:
        pairs: `tf.data.Dataset` of string scalars, either `(source, target)`
            tuples (such as TFDS' `as_supervised=True`) or dicts read through
            `keys`.
        source_tokenizer: a `TextTokenizer` (anything with `tokenize`) for the
            source side.
        target_tokenizer: a `TextTokenizer` for the target side.
        batch_size: positive int, pairs per batch.
        max_length: optional int >= 3, the longest source and the longest
            target sequence kept, `[START]` and `[END]` included. Defaults to
            `None` (no limit).
        long_pairs: `"drop"` removes a pair whose source or target is longer
            than `max_length`; `"clip"` truncates the over-long side to
            `max_length` ids, which cuts off its `[END]`, so the model is never
            taught to stop early. Defaults to `"drop"`.
        keys: optional `(source_key, target_key)` for dict elements, such as
            `("en", "es")`. Defaults to `None` (tuple elements).
        bucket_boundaries: optional increasing list of positive ints. When
            given, pairs are batched with others of similar length (the longer
            side decides) with `tf.data.Dataset.bucket_by_sequence_length`,
            which wastes less compute on padding. Defaults to `None` (plain
            padded batches).
        shuffle_buffer_size: optional positive int; shuffle the cached pairs
            each epoch with a buffer of this size. Defaults to `None` (no
            shuffling).
        seed: optional int seed for the shuffle. Defaults to `None`.
        cache: bool, cache the tokenized pairs in memory. Defaults to `True`.

    Returns:
        A `tf.data.Dataset` of `({"encoder_inputs": source, "decoder_inputs":
        target_in}, target_out)`, int32 tensors of shape `(batch, length)`,
        padded with 0. The dict keys are the input names of
        `build_transformer`'s model, so it goes straight into `model.fit`.

    Example:

    ```python
    train = make_translation_dataset(
        pairs, source_tokenizer, target_tokenizer, batch_size=64,
        max_length=40, shuffle_buffer_size=10_000, seed=0)
    model.fit(train, epochs=10)
    ```
    """
    if not isinstance(pairs, tf.data.Dataset):
        raise ValueError(
            "`pairs` must be a `tf.data.Dataset` of (source, target) strings. "
            f"Received: pairs={pairs!r}"
        )
    _validation.check_positive_int("batch_size", batch_size)
    if max_length is not None and (
        isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 3
    ):
        raise ValueError(
            "`max_length` must be an integer >= 3 ([START], one token, [END]) or "
            f"None. Received: max_length={max_length!r}"
        )
    if long_pairs not in _LONG_PAIRS:
        raise ValueError(
            f"`long_pairs` must be one of {_LONG_PAIRS}. Received: long_pairs={long_pairs!r}"
        )
    if bucket_boundaries is not None:
        boundaries = list(bucket_boundaries)
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

    spec = pairs.element_spec
    if keys is not None:
        if not isinstance(spec, dict) or len(keys) != 2 or not all(k in spec for k in keys):
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
        return source_tokenizer.tokenize(source), target_tokenizer.tokenize(target)

    dataset = pairs.batch(1024).map(tokenize, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.unbatch()
    dataset = dataset.map(
        lambda s, t: (_with_start_end(s), _with_start_end(t)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    if max_length is not None:
        if long_pairs == "drop":
            dataset = dataset.filter(
                lambda s, t: (tf.size(s) <= max_length) & (tf.size(t) <= max_length)
            )
        else:
            dataset = dataset.map(lambda s, t: (s[:max_length], t[:max_length]))
    # Shift before padding, so the decoder input and the label of a pair have
    # the same length and padding positions (no [END] is ever read as input).
    dataset = dataset.map(
        lambda s, t: (s, t[:-1], t[1:]), num_parallel_calls=tf.data.AUTOTUNE
    )
    if cache:
        dataset = dataset.cache()
    if shuffle_buffer_size is not None:
        dataset = dataset.shuffle(shuffle_buffer_size, seed=seed, reshuffle_each_iteration=True)
    padding = (PADDING_ID, PADDING_ID, PADDING_ID)
    if bucket_boundaries is not None:
        dataset = dataset.bucket_by_sequence_length(
            element_length_func=lambda s, t_in, t_out: tf.maximum(tf.size(s), tf.size(t_in)),
            bucket_boundaries=list(bucket_boundaries),
            bucket_batch_sizes=[batch_size] * (len(bucket_boundaries) + 1),
            padding_values=padding,
        )
    else:
        dataset = dataset.padded_batch(batch_size, padding_values=padding)

    def to_model_inputs(source, target_in, target_out):
        return {"encoder_inputs": source, "decoder_inputs": target_in}, target_out

    dataset = dataset.map(to_model_inputs, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
