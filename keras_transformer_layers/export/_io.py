"""Argument checks and all-or-nothing writes shared by the exporters."""

import contextlib
import json
import os
import shutil
import tempfile
import warnings

from keras_transformer_layers import _validation


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


def check_output_path(name, path, overwrite, suffix=None):
    """Validates an output path; returns it as an absolute `str`.

    A path that exists and is a non-empty directory or a file is refused
    unless `overwrite=True`. Exports that a killed process left unfinished
    in the parent folder are first finished or undone (`recover_staging`),
    so the check sees the artifact as it was before that export.
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValueError(f"`{name}` must be a non-empty path. Received: {name}={path!r}")
    _validation.check_bool("overwrite", overwrite)
    path = os.path.abspath(os.fspath(path))
    if suffix is not None and not path.endswith(suffix):
        raise ValueError(f"`{name}` must end with '{suffix}'. Received: {name}={path!r}")
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise ValueError(f"The parent folder of `{name}` does not exist. Received: {name}={path!r}")
    recover_staging(parent)
    if os.path.exists(path) and not overwrite:
        is_empty_dir = os.path.isdir(path) and not os.listdir(path)
        if not is_empty_dir:
            raise ValueError(
                f"`{name}` already exists and is not empty; pass "
                f"`overwrite=True` to replace it. Received: {name}={path!r}"
            )
    return path


STAGING_PREFIX = ".ktl-export-"
# From the repository root: the `litert` extra of pyproject.toml.
LITERT_INSTALL = 'pip install ".[litert]"'

# Staging folders of this process that are still being written or committed.
_active_staging = set()


class _RestoreError(OSError):
    """A failed commit whose previous artifacts are still in the staging folder."""


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


def _process_alive(pid):
    if os.name != "posix":
        # No portable liveness check: keep other processes' folders.
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _staging_owner(staging):
    """The process id in a staging folder name, or `None` for another layout."""
    fields = os.path.basename(staging)[len(STAGING_PREFIX) :].split("-")
    return int(fields[0]) if fields[0].isdigit() else None


def _roll_back(staging, parent, names):
    """Undoes a commit: new artifacts back to staging, old ones back in place."""
    for name in names:
        target = os.path.join(parent, name)
        new = os.path.join(staging, "new", name)
        old = os.path.join(staging, "old", name)
        # During a commit every new artifact exists until it is moved in, so
        # a missing one is the artifact now at `target`.
        if not os.path.lexists(new) and os.path.lexists(target):
            os.replace(target, new)
        if os.path.lexists(old) and not os.path.lexists(target):
            os.replace(old, target)


def _discard(staging):
    """Deletes a staging folder that holds nothing to restore.

    The `committing` marker goes first, so that a process killed while this
    runs never leaves a folder that looks like an unfinished commit.
    """
    committed = os.path.join(staging, "committed")
    committing = os.path.join(staging, "committing")
    if not os.path.lexists(committed) and os.path.lexists(committing):
        os.remove(committing)
    for part in ("old", "new"):
        shutil.rmtree(os.path.join(staging, part), ignore_errors=True)
    if any(os.path.lexists(os.path.join(staging, p)) for p in ("old", "new")):
        warnings.warn(
            f"Could not delete all of {staging}; the export itself succeeded or "
            "was undone. The folder is deleted by the next export into "
            f"{os.path.dirname(staging)}.",
            stacklevel=3,
        )
        return
    for marker in ("committing", "committed", "targets"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(staging, marker))
    shutil.rmtree(staging, ignore_errors=True)


def recover_staging(parent):
    """Finishes or undoes the exports that a killed process left in `parent`.

    A staging folder whose process is gone (or that this process no longer
    uses) is deleted; if it was killed between moving the previous artifact
    aside and moving the new one in, the previous artifact is put back first.
    Folders of running processes are left alone.
    """
    for entry in os.listdir(parent):
        staging = os.path.join(parent, entry)
        if (
            not entry.startswith(STAGING_PREFIX)
            or not os.path.isdir(staging)
            or staging in _active_staging
        ):
            continue
        if not os.path.lexists(os.path.join(staging, "committed")):
            owner = _staging_owner(staging)
            if owner is not None and owner != os.getpid() and _process_alive(owner):
                continue
        try:
            if not os.path.lexists(os.path.join(staging, "committed")) and os.path.lexists(
                os.path.join(staging, "committing")
            ):
                with open(os.path.join(staging, "targets")) as f:
                    _roll_back(staging, parent, json.load(f))
            _discard(staging)
        except OSError as error:
            warnings.warn(
                f"Could not clean up {staging}, left by an export that did not "
                f"finish ({error}); it is tried again on the next export into "
                f"{parent}.",
                stacklevel=3,
            )


def _commit(staging, parent, names):
    """Moves every previous artifact aside, then every new one into place."""
    for name in names:
        if not os.path.lexists(os.path.join(staging, "new", name)):
            raise RuntimeError(f"The export wrote nothing at {os.path.join(staging, 'new', name)}.")
    with open(os.path.join(staging, "committing"), "w"):
        pass
    try:
        for name in names:
            target = os.path.join(parent, name)
            if os.path.lexists(target):
                os.replace(target, os.path.join(staging, "old", name))
        for name in names:
            os.replace(os.path.join(staging, "new", name), os.path.join(parent, name))
    except BaseException as error:
        try:
            _roll_back(staging, parent, names)
        except OSError as restore_error:
            raise _RestoreError(
                f"The export failed ({error}) and the previous artifacts could "
                f"not be put back ({restore_error}); they are in "
                f"{os.path.join(staging, 'old')}. The next export into {parent} "
                "puts them back."
            ) from error
        raise
    with open(os.path.join(staging, "committed"), "w"):
        pass


@contextlib.contextmanager
def atomic_outputs(paths):
    """Yields temporary paths for `paths`; replaces them all on success.

    The artifacts are written to a staging folder next to `paths` (which
    must share one parent folder). On success every previous artifact is
    renamed aside, every new one renamed into place, and only then are the
    previous ones deleted; if a rename fails the previous artifacts are put
    back. On any failure the staging folder is deleted and `paths` are left
    exactly as they were. A process killed at any point leaves a staging
    folder that `recover_staging` (run by `check_output_path`) finishes or
    undoes on the next export into the same folder.

    Args:
        paths: list of absolute paths in one folder.

    Yields:
        The list of temporary paths to write, in the order of `paths`.

    Example:

    ```python
    path = check_output_path("path", path, overwrite)
    with atomic_outputs([path]) as (staging,):
        tf.saved_model.save(module, staging)
    ```
    """
    parents = {os.path.dirname(path) for path in paths}
    if len(parents) != 1:
        raise ValueError(f"`paths` must share one folder. Received: paths={paths!r}")
    (parent,) = parents
    names = [os.path.basename(path) for path in paths]
    staging = tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=parent)
    _active_staging.add(staging)
    keep = False
    try:
        for part in ("new", "old"):
            os.mkdir(os.path.join(staging, part))
        with open(os.path.join(staging, "targets"), "w") as f:
            json.dump(names, f)
        yield [os.path.join(staging, "new", name) for name in names]
        try:
            _commit(staging, parent, names)
        except _RestoreError:
            keep = True  # it holds the previous artifacts
            raise
    finally:
        _active_staging.discard(staging)
        if not keep:
            _discard(staging)


@contextlib.contextmanager
def atomic_output(path):
    """`atomic_outputs` for one path: yields its temporary path."""
    with atomic_outputs([path]) as (staging,):
        yield staging
