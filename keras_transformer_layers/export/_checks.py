"""Argument checks shared by the exporters; they read and never write."""

import os

from keras_transformer_layers import _validation

# The TFLite weight quantizations of every exporter (see `_converter`).
QUANTIZATIONS = (None, "float16", "dynamic_int8")


def check_quantization(quantization):
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            "`quantization` must be one of None (float32 weights), 'float16' "
            "(float16 weights) or 'dynamic_int8' (int8 weights, float "
            f"activations). Received: quantization={quantization!r}"
        )


def check_float32(name, dtypes):
    """Raises unless every compute dtype in `dtypes` (found in `name`) is float32.

    TFLite builtin kernels compute in float32: under `mixed_float16` the
    converter otherwise fails with "'tf.Mul' op is neither a custom op nor a
    flex op".
    """
    others = sorted({str(dtype) for dtype in dtypes} - {"float32"})
    if others:
        raise ValueError(
            "TFLite builtin ops compute in float32, so the model of "
            f"`{name}` must use the float32 dtype policy: rebuild it under "
            "`keras.config.set_dtype_policy('float32')`, copy the weights with "
            "`set_weights`, and pass `quantization='float16'` for 16-bit "
            f"weights. Received: {name} computing in {others}"
        )


# From the repository root: the `litert` extra of pyproject.toml.
LITERT_INSTALL = 'pip install ".[litert]"'


def check_model(model):
    """Raises unless `model` is a built Keras model with at least one input."""
    import keras

    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a `keras.Model`. Received: model={model!r}")
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise ValueError(
            "`model` must have inputs: export needs a functional model (for "
            "example from `build_transformer`) or a model that has been called "
            f"on data. Received: model={model.name!r} with inputs={inputs!r}"
        )


def check_output_path(name, path, overwrite, kind, suffix=None):
    """Validates an output path; returns it as an absolute `str`.

    Args:
        name: the argument's name, for messages.
        path: the output path.
        overwrite: bool; without it an existing file or non-empty folder is
            refused.
        kind: `"file"` or `"folder"`, what the exporter writes at `path`.
        suffix: optional ending the path must have, e.g. `".tflite"`.
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValueError(f"`{name}` must be a non-empty path. Received: {name}={path!r}")
    _validation.check_bool("overwrite", overwrite)
    path = os.path.abspath(os.fspath(path))
    if suffix is not None and not path.endswith(suffix):
        raise ValueError(f"`{name}` must end with '{suffix}'. Received: {name}={path!r}")
    if not os.path.isdir(os.path.dirname(path)):
        raise ValueError(f"The parent folder of `{name}` does not exist. Received: {name}={path!r}")
    if kind == "file" and os.path.isdir(path):
        raise ValueError(f"`{name}` must be a file, not a folder. Received: {name}={path!r}")
    if kind == "folder" and os.path.isfile(path):
        raise ValueError(f"`{name}` must be a folder, not a file. Received: {name}={path!r}")
    is_empty_dir = os.path.isdir(path) and not os.listdir(path)
    if os.path.lexists(path) and not overwrite and not is_empty_dir:
        raise ValueError(
            f"`{name}` already exists and is not empty; pass "
            f"`overwrite=True` to replace it. Received: {name}={path!r}"
        )
    return path


def require_litert(caller):
    """Raises `ModuleNotFoundError` unless the optional `ai_edge_litert` imports.

    Called before anything is written, so a missing runtime never leaves a
    half-done export behind.
    """
    try:
        import ai_edge_litert  # noqa: F401
    except ImportError as error:
        raise ModuleNotFoundError(
            f"`{caller}` needs the optional package ai-edge-litert (the LiteRT "
            f"runtime, to read and check `.tflite` files); nothing was "
            f"written. Install it from the repository root with `{LITERT_INSTALL}`.",
            name="ai_edge_litert",
        ) from error
