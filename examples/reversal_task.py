"""A generated sequence-reversal task: the smallest translation problem.

The target is the source read backwards. Solving it needs attention from every
target position to a different source position, so it exercises the whole
encoder-decoder, masks included, in seconds on a CPU. The data of
`examples/train_distributed.py` and of the tests that train a small model.
"""

import numpy as np

from keras_transformer_layers import _validation
from keras_transformer_layers.tokens import END_ID
from keras_transformer_layers.tokens import START_ID

# The package's id layout (`keras_transformer_layers.tokens`): 0 padding,
# 1 unknown, 2 start, 3 end; the reversal tokens come after the reserved ids.
FIRST_TOKEN_ID = END_ID + 1


def reversal_arrays(num_examples, vocabulary_size=16, min_length=3, max_length=10, seed=0):
    """Random token sequences and their reversals, padded with id 0.

    Ids follow the package's layout: 0 padding, 2 start, 3 end (1, the
    unknown id, is never used); sources use ids `4 .. vocabulary_size - 1`.

    Args:
        num_examples: positive int, number of pairs.
        vocabulary_size: int greater than 4, the shared vocabulary size.
            Defaults to `16`.
        min_length: positive int, shortest source. Defaults to `3`.
        max_length: int `>= min_length`, longest source. Defaults to `10`.
        seed: non-negative int, the NumPy seed; the same seed gives the same
            pairs. Defaults to `0`.

    Returns:
        `(inputs, target_out)`: `inputs` is a dict with int32 arrays
        `encoder_inputs` `(num_examples, max_length)` and `decoder_inputs`
        `(num_examples, max_length + 1)` (start id, then the reversed source),
        and `target_out` `(num_examples, max_length + 1)` is the reversed
        source followed by the end id: `decoder_inputs` shifted left by one.

    Example:

    >>> inputs, target = reversal_arrays(1, min_length=3, max_length=3)
    >>> inputs["encoder_inputs"][0][::-1].tolist() == target[0][:3].tolist()
    True
    """
    _validation.check_positive_int("num_examples", num_examples)
    _validation.check_positive_int("min_length", min_length)
    _validation.check_positive_int("max_length", max_length)
    _validation.check_positive_int("vocabulary_size", vocabulary_size)
    _validation.check_non_negative_int("seed", seed)
    if vocabulary_size <= FIRST_TOKEN_ID:
        raise ValueError(
            f"`vocabulary_size` must be greater than {FIRST_TOKEN_ID} (ids 0-3 are "
            f"reserved). Received: vocabulary_size={vocabulary_size!r}"
        )
    if max_length < min_length:
        raise ValueError(
            "`max_length` must be at least `min_length`. "
            f"Received: min_length={min_length}, max_length={max_length}"
        )
    rng = np.random.default_rng(seed)
    source = np.zeros((num_examples, max_length), "int32")
    decoder_inputs = np.zeros((num_examples, max_length + 1), "int32")
    target_out = np.zeros((num_examples, max_length + 1), "int32")
    for row, length in enumerate(rng.integers(min_length, max_length + 1, num_examples)):
        tokens = rng.integers(FIRST_TOKEN_ID, vocabulary_size, length)
        source[row, :length] = tokens
        decoder_inputs[row, 0] = START_ID
        decoder_inputs[row, 1 : length + 1] = tokens[::-1]
        target_out[row, :length] = tokens[::-1]
        target_out[row, length] = END_ID
    return {"encoder_inputs": source, "decoder_inputs": decoder_inputs}, target_out


def reversal_dataset(num_examples, batch_size=64, shuffle=True, **kwargs):
    """`reversal_arrays` as a batched `tf.data.Dataset` of `(inputs, target_out)`.

    Args:
        num_examples: positive int, number of pairs.
        batch_size: positive int. Defaults to `64`.
        shuffle: bool, reshuffle every epoch. Defaults to `True`.
        **kwargs: passed to `reversal_arrays` (`vocabulary_size`,
            `min_length`, `max_length`, `seed`).

    Returns:
        A `tf.data.Dataset` yielding `({"encoder_inputs", "decoder_inputs"}, target_out)`.
    """
    import tensorflow as tf  # here, so that `reversal_arrays` works on any backend

    _validation.check_positive_int("batch_size", batch_size)
    _validation.check_bool("shuffle", shuffle)
    inputs, target_out = reversal_arrays(num_examples, **kwargs)
    dataset = tf.data.Dataset.from_tensor_slices((inputs, target_out))
    if shuffle:
        dataset = dataset.shuffle(num_examples, seed=kwargs.get("seed", 0))
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
