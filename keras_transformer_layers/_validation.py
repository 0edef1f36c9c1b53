"""Argument checks shared by every part of the package.

Each check raises a `ValueError` that names the argument and echoes the
received value, in the Keras core form: what is wrong, what is expected, then
`Received: name=value`.
"""

import math

import numpy as np
import tensorflow as tf


def check_positive_int(name, value):
    # bool is a subclass of int; reject it explicitly.
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(
            f"`{name}` must be a positive integer. Received: {name}={value!r}"
        )


def check_optional_positive_int(name, value):
    if value is not None:
        check_positive_int(name, value)


def check_non_negative_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            f"`{name}` must be a non-negative integer. Received: {name}={value!r}"
        )


def check_positive_float(name, value):
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(
            f"`{name}` must be a finite positive number. Received: {name}={value!r}"
        )


def check_rate(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"`{name}` must be a float. Received: {name}={value!r}")
    if not 0.0 <= value < 1.0:
        raise ValueError(
            f"`{name}` must be in the range [0, 1). Received: {name}={value!r}"
        )


def check_bool(name, value):
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be a bool. Received: {name}={value!r}")


def check_rank(name, shape, rank, layout):
    """Checks the rank of a (possibly partially known) static shape."""
    if len(shape) != rank:
        raise ValueError(
            f"`{name}` must be a rank-{rank} tensor shaped {layout}. "
            f"Received: {name}.shape={tuple(shape)}"
        )


def check_ids_in_range(name, ids, low, high, high_name, ignore=None):
    """Checks that every entry of int tensor `ids` is in `[low, high)`.

    Entries equal to `ignore` (a padding id) are allowed whatever their value.
    `high` is an int or a scalar int tensor, named `high_name` in the message.

    Eagerly this raises a `ValueError` that echoes the first bad id and its
    index. In a graph (`tf.function`, `tf.data`) it adds an assertion that
    raises `tf.errors.InvalidArgumentError` with the same text and the bad ids
    when the graph runs. XLA (`jit_compile=True`) compiles assertions out, so
    the caller gets the boolean mask of bad entries to fail another way.

    Returns:
        A bool tensor shaped like `ids`, True at the out-of-range entries.
    """
    ids = tf.convert_to_tensor(ids)
    bad = (ids < low) | (ids >= tf.cast(high, ids.dtype))
    if ignore is not None:
        bad &= ids != ignore
    allowed = f"`{name}` must hold ids in [{low}, {high_name})"
    if ignore is not None:
        allowed += f" or the padding id {ignore}"
    if tf.executing_eagerly():
        bad_index = np.argwhere(bad.numpy())
        if len(bad_index):
            index = tuple(int(i) for i in bad_index[0])
            value = int(ids.numpy()[index])
            raise ValueError(
                f"{allowed}, with {high_name}={int(high)}. "
                f"Received: {name}={value!r} at index {index}"
            )
        return bad
    tf.debugging.Assert(
        tf.logical_not(tf.reduce_any(bad)),
        [
            f"{allowed}. Received: {name}=",
            tf.cast(tf.boolean_mask(ids, bad), tf.int64),  # float labels print as ints
            f"with {high_name}=",
            high,
        ],
        summarize=5,
    )
    return bad
