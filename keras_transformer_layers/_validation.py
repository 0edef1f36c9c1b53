"""Argument checks shared by every part of the package.

Each check raises a `ValueError` that names the argument and echoes the
received value, in the Keras core form: what is wrong, what is expected, then
`Received: name=value`.
"""


def check_positive_int(name, value):
    # bool is a subclass of int; reject it explicitly.
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(
            f"`{name}` must be a positive integer. Received: {name}={value!r}"
        )


def check_optional_positive_int(name, value):
    if value is not None:
        check_positive_int(name, value)


def check_bool(name, value):
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be a bool. Received: {name}={value!r}")


def check_positive_float(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(
            f"`{name}` must be a positive number. Received: {name}={value!r}"
        )


def check_rate(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"`{name}` must be a float. Received: {name}={value!r}")
    if not 0.0 <= value < 1.0:
        raise ValueError(
            f"`{name}` must be in the range [0, 1). Received: {name}={value!r}"
        )


def check_rank(name, shape, rank, layout):
    """Checks the rank of a (possibly partially known) static shape."""
    if len(shape) != rank:
        raise ValueError(
            f"`{name}` must be a rank-{rank} tensor shaped {layout}. "
            f"Received: {name}.shape={tuple(shape)}"
        )
