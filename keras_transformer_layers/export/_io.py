"""Argument checks and all-or-nothing writes shared by the exporters."""

import contextlib
import os
import shutil
import tempfile


def check_model(model):
    """Raises unless `model` is a built Keras model with at least one input."""
    import keras

    if not isinstance(model, keras.Model):
        raise ValueError(
            f"`model` must be a `keras.Model`. Received: model={model!r}"
        )
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


def check_output_path(name, path, overwrite, suffix=None):
    """Validates an output path; returns it as an absolute `str`.

    A path that exists and is a non-empty directory or a file is refused
    unless `overwrite=True`.
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValueError(
            f"`{name}` must be a non-empty path. Received: {name}={path!r}"
        )
    path = os.path.abspath(os.fspath(path))
    if suffix is not None and not path.endswith(suffix):
        raise ValueError(
            f"`{name}` must end with '{suffix}'. Received: {name}={path!r}"
        )
    if os.path.exists(path) and not overwrite:
        is_empty_dir = os.path.isdir(path) and not os.listdir(path)
        if not is_empty_dir:
            raise ValueError(
                f"`{name}` already exists and is not empty; pass "
                f"`overwrite=True` to replace it. Received: {name}={path!r}"
            )
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise ValueError(
            f"The parent folder of `{name}` does not exist. "
            f"Received: {name}={path!r}"
        )
    return path


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


@contextlib.contextmanager
def atomic_output(path):
    """Yields a temporary path next to `path`; moves it to `path` on success.

    On any exception the temporary path is deleted and `path` is untouched,
    so a failed export never leaves a half-written artifact behind.
    """
    parent = os.path.dirname(path)
    staging = tempfile.mkdtemp(prefix=".ktl-export-", dir=parent)
    target = os.path.join(staging, os.path.basename(path))
    try:
        yield target
        if os.path.lexists(path):
            _remove(path)
        os.replace(target, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

