"""Argument checks shared by every part of the package.

Each check raises a `ValueError` that names the argument and echoes the
received value, in the Keras core form: what is wrong, what is expected, then
`Received: name=value`.
"""

import math

import keras
import numpy as np


def check_positive_int(name, value):
    # bool is a subclass of int; reject it explicitly.
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")


def check_optional_positive_int(name, value):
    if value is not None:
        check_positive_int(name, value)


def check_non_negative_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"`{name}` must be a non-negative integer. Received: {name}={value!r}")


def check_positive_float(name, value):
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"`{name}` must be a finite positive number. Received: {name}={value!r}")


def check_rate(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"`{name}` must be a float. Received: {name}={value!r}")
    # NaN fails both comparisons, so it is rejected here too.
    if not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be in the range [0, 1). Received: {name}={value!r}")


def check_bool(name, value):
    # Strings such as "no" and ints such as 0 are not booleans.
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be a bool. Received: {name}={value!r}")


def _keras_lookup(name, value, lookup, expected):
    """`lookup(value)`, with an error that names the argument."""
    try:
        return lookup(value)
    except (ValueError, TypeError):
        raise ValueError(f"`{name}` must be {expected}. Received: {name}={value!r}") from None


def check_one_of(name, value, choices):
    """`value` is one of `choices` (compared with `==`, so strings stay strings)."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(
            f"`{name}` must be one of {', '.join(repr(c) for c in choices)}. "
            f"Received: {name}={value!r}"
        )


def get_activation(name, value):
    """`keras.activations.get(value)`, with an error that names the argument."""
    return _keras_lookup(
        name, value, keras.activations.get, "the name of a Keras activation or a callable"
    )


def get_initializer(name, value):
    """`keras.initializers.get(value)`, with an error that names the argument."""
    return _keras_lookup(
        name,
        value,
        keras.initializers.get,
        "the name of a Keras initializer, a config dict or an initializer",
    )


def get_regularizer(name, value):
    """`keras.regularizers.get(value)`, with an error that names the argument."""
    return _keras_lookup(
        name,
        value,
        keras.regularizers.get,
        "None, the name of a Keras regularizer, a config dict or a regularizer",
    )


def get_constraint(name, value):
    """`keras.constraints.get(value)`, with an error that names the argument."""
    return _keras_lookup(
        name,
        value,
        keras.constraints.get,
        "None, the name of a Keras constraint, a config dict or a constraint",
    )


def check_rank(name, shape, rank, layout):
    """Checks the rank of a (possibly partially known) static shape."""
    if len(shape) != rank:
        raise ValueError(
            f"`{name}` must be a rank-{rank} tensor shaped {layout}. "
            f"Received: {name}.shape={tuple(shape)}"
        )


def check_float_tensor(name, tensor):
    """Checks that a tensor (eager, symbolic or `keras.KerasTensor`) is floating point."""
    dtype = keras.backend.standardize_dtype(tensor.dtype)
    if not keras.backend.is_float_dtype(dtype):
        raise ValueError(
            f"`{name}` must be a floating-point tensor. Received: {name}.dtype={dtype}"
        )


def check_int_tensor(name, tensor):
    """Checks that a tensor (eager, symbolic or `keras.KerasTensor`) holds integers."""
    dtype = keras.backend.standardize_dtype(tensor.dtype)
    if not keras.backend.is_int_dtype(dtype):
        raise ValueError(f"`{name}` must be an integer tensor. Received: {name}.dtype={dtype}")


def check_static_shape(name, shape, expected, layout):
    """Checks a static shape against `expected`, where `None` on either side matches.

    Only the static shape is seen: in graph mode a dimension unknown at
    trace time passes.
    """
    shape = tuple(shape)
    matches = len(shape) == len(expected) and all(
        got is None or want is None or got == want
        for got, want in zip(shape, expected, strict=True)
    )
    if not matches:
        expected_text = "(" + ", ".join("?" if d is None else str(d) for d in expected) + ")"
        raise ValueError(
            f"`{name}` must have shape {layout}, here {expected_text}. "
            f"Received: {name}.shape={shape}"
        )


def check_features(name, tensor, model_dim):
    """A float tensor `(..., model_dim)`, `model_dim` being the width a layer was built with."""
    check_float_tensor(name, tensor)
    shape = tuple(tensor.shape)
    check_static_shape(
        name,
        shape,
        (None,) * (len(shape) - 1) + (model_dim,),
        "(..., model_dim) with the model_dim the layer was built with",
    )


def concrete_value(tensor):
    """The NumPy value of an eager tensor, or `None` for a symbolic one.

    Values are only known eagerly; inside `tf.function`, XLA or a functional
    model the tensor is symbolic and checks on values cannot run in Python.
    """
    try:
        return keras.ops.convert_to_numpy(tensor)
    except (NotImplementedError, TypeError, ValueError, AttributeError):
        return None


def describe(value):
    """`value` for an error message: a tensor or array by its shape, anything else by repr."""
    shape = getattr(value, "shape", None)
    if shape is not None and not isinstance(value, (int, float)):
        return f"<{type(value).__name__} of shape {tuple(shape)}>"
    return repr(value)


def check_finite_number(name, value):
    """A real number (not a bool), neither NaN nor infinite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number. Received: {name}={value!r}")


def check_int_in_range(name, value, low, high, what=""):
    """An integer (not a bool) in `[low, high)`; `what` says what the bounds are."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value < high:
        raise ValueError(
            f"`{name}` must be an integer in [{low}, {high}){what}. Received: {name}={value!r}"
        )


def check_ids_in_range(name, ids, low, high, high_name, ignore=None):
    """Checks that every entry of int tensor `ids` is in `[low, high)`.

    Entries equal to `ignore` (a padding id) are allowed whatever their value.
    `high` is an int or a scalar int tensor, named `high_name` in the message.

    Eagerly (any backend) this raises a `ValueError` that echoes the first bad
    id and its index. In a TensorFlow graph (`tf.function`, `tf.data`) it adds
    an assertion that raises `tf.errors.InvalidArgumentError` with the same
    text and the bad ids when the graph runs. XLA (`jit_compile=True`) and
    other backends' compiled functions drop assertions, so the caller gets the
    boolean mask of bad entries to fail another way.

    Returns:
        A bool tensor shaped like `ids`, True at the out-of-range entries.
    """
    # The values as given: on JAX (32-bit by default) `convert_to_tensor`
    # wraps an int64 id such as 2**32 + 5 to 5.
    values = concrete_value(ids)
    ids = keras.ops.convert_to_tensor(ids)
    bad = keras.ops.logical_or(ids < low, ids >= keras.ops.cast(high, ids.dtype))
    if ignore is not None:
        bad = keras.ops.logical_and(bad, ids != ignore)
    allowed = f"`{name}` must hold ids in [{low}, {high_name})"
    if ignore is not None:
        allowed += f" or the padding id {ignore}"
    if values is not None:
        bad_values = np.logical_or(values < low, values >= int(high))
        if ignore is not None:
            bad_values = np.logical_and(bad_values, values != ignore)
        bad_index = np.argwhere(bad_values)
        if len(bad_index):
            index = tuple(int(i) for i in bad_index[0])
            raise ValueError(
                f"{allowed}, with {high_name}={int(high)}. "
                f"Received: {name}={int(values[index])!r} at index {index}"
            )
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # the graph assertion is TensorFlow's alone

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
