"""Writes an artifact beside its target, then puts it in place in one step.

`written_aside(path, overwrite)` yields a path inside a fresh folder that it
creates next to `path` (`tempfile.mkdtemp`, so no other writer shares it);
the exporter writes and checks the artifact there. On success one rename
puts it at `path`:

- a new file is linked to `path` (`os.link`), and a new folder renamed to it
  (`os.rename`); both refuse a `path` that exists by then (a folder may
  replace an empty folder), so with `overwrite=False` of two concurrent
  writers one succeeds and the other raises `FileExistsError`;
- with `overwrite=True` a file replaces `path` with `os.replace`, and a
  folder is swapped with the existing one by Linux's
  `renameat2(RENAME_EXCHANGE)`. Where that call is missing (other systems,
  or a file system without it) the existing folder is renamed into a second
  fresh folder first, so a process killed between the two renames leaves
  `path` absent and the previous artifact in that folder; a failed second
  rename puts it back.

Otherwise `path` holds the previous artifact or the new one, complete, at
every moment. Only the fresh folder is deleted afterwards, on success and on
failure; nothing else in the parent folder is touched.
"""

import contextlib
import ctypes
import errno
import os
import shutil
import sys
import tempfile

STAGING_PREFIX = ".ktl-export-"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(first, second):
    """Swaps two existing paths atomically (Linux `renameat2`), else raises `OSError`."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if not sys.platform.startswith("linux") or renameat2 is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available")
    paths = [os.fsencode(first), os.fsencode(second)]
    if renameat2(_AT_FDCWD, paths[0], _AT_FDCWD, paths[1], _RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), first, None, second)


def _refuse_existing(error, path):
    raise FileExistsError(
        errno.EEXIST,
        "`path` was created by another writer while this export ran; nothing "
        "was replaced. Pass `overwrite=True` to replace it",
        path,
    ) from error


def _swap_by_two_renames(new, path):
    """The fallback of `_exchange`: the previous artifact aside, then the new one in."""
    aside = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=os.path.dirname(path))
    previous = os.path.join(aside, os.path.basename(path))
    os.rename(path, previous)
    try:
        os.rename(new, path)
    except OSError:
        os.rename(previous, path)  # if this fails too, `aside` keeps the previous artifact
        os.rmdir(aside)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def put_in_place(new, path, overwrite):
    """Moves the artifact `new` to `path` in one step (see the module docstring)."""
    if not overwrite:
        try:
            if os.path.isdir(new):
                os.rename(new, path)  # onto a non-empty folder: ENOTEMPTY
            else:
                os.link(new, path)  # onto anything: EEXIST
        except OSError as error:
            if isinstance(error, (FileExistsError, NotADirectoryError)) or error.errno in (
                errno.ENOTEMPTY,
                errno.EEXIST,
            ):
                _refuse_existing(error, path)
            raise
    elif not os.path.isdir(new) or not os.path.lexists(path):
        os.replace(new, path)
    else:
        try:
            _exchange(new, path)
        except OSError as error:
            if error.errno not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
                raise
            _swap_by_two_renames(new, path)


@contextlib.contextmanager
def written_aside(path, overwrite):
    """Yields a path to write the artifact at; puts it at `path` on success.

    Args:
        path: absolute path of the artifact (a file or a folder).
        overwrite: bool, replace an existing artifact at `path`.

    Yields:
        The path to write, in a fresh folder beside `path`; the exporter
        creates the file or folder there.

    Raises:
        FileExistsError: with `overwrite=False`, `path` exists when the
            artifact is put in place.

    Example:

    ```python
    path = check_output_path("path", path, overwrite, kind="folder")
    with written_aside(path, overwrite) as new:
        tf.saved_model.save(module, new)
    ```
    """
    parent, name = os.path.split(path)
    folder = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=parent)
    try:
        new = os.path.join(folder, name)
        yield new
        if not os.path.lexists(new):
            raise RuntimeError(f"The export wrote nothing at {new}.")
        put_in_place(new, path, overwrite)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
