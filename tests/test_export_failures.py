"""Exports fail closed: the target is left as it was, whatever fails, and nothing is left over.

Failures are injected: a failing rename, an old file that cannot be deleted,
a full disk, a read-only folder (tests run as root, so `chmod` would not deny
writes: the failing call is monkeypatched), a missing `ai-edge-litert`, and a
process killed at each step of a commit (simulated by interrupting the export
with an exception nothing catches, skipping every cleanup, and giving its
staging folder the id of a process that has exited).
"""

import errno
import os
import re
import shutil
import subprocess
import sys
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_transformer_layers as ktl
from keras_transformer_layers import export
from keras_transformer_layers.export import __main__ as cli
from keras_transformer_layers.export import _io
from tests import export_helpers as helpers


class Killed(BaseException):
    """Stands for SIGKILL: nothing catches it."""


def small_model(seed):
    """A two-layer model that exports in about a second; `seed` sets its weights."""
    keras.utils.set_random_seed(seed)
    ids = keras.Input((None,), dtype="int32", name="ids")
    x = ktl.PositionalEmbedding(12, 4)(ids)
    return keras.Model(ids, keras.layers.Dense(3, name="scores")(x))


IDS = np.array([[1, 5, 11, 0]], "int32")


@pytest.fixture(scope="module")
def previous_saved_model(tmp_path_factory):
    """A SavedModel of `small_model(0)`, copied into each test as the artifact to keep."""
    path = tmp_path_factory.mktemp("previous") / "sm"
    export.export_saved_model(small_model(0), path)
    return path


@pytest.fixture
def target(tmp_path, previous_saved_model):
    path = tmp_path / "sm"
    shutil.copytree(previous_saved_model, path)
    return path


def snapshot(path):
    """Every file under `path` (or the file itself) with its bytes."""
    path = str(path)
    if os.path.isfile(path):
        with open(path, "rb") as f:
            return {"": f.read()}
    files = {}
    for root, _, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                files[os.path.relpath(full, path)] = f.read()
    return files


def served_scores(path):
    return (
        tf.saved_model.load(str(path)).signatures["forward"](ids=tf.constant(IDS))["scores"].numpy()
    )


def leftovers(folder):
    return sorted(p for p in os.listdir(folder) if p.startswith(".ktl-export"))


def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def as_killed_process(folder):
    """Renames this process's staging folders in `folder` to a dead process's."""
    pid = dead_pid()
    for name in leftovers(folder):
        renamed = name.replace(f"{_io.STAGING_PREFIX}{os.getpid()}-", f"{_io.STAGING_PREFIX}{pid}-")
        os.rename(os.path.join(folder, name), os.path.join(folder, renamed))


def kill_without_cleanup(monkeypatch):
    """A killed process runs no `finally`: no roll-back, no deletion."""
    monkeypatch.setattr(_io, "_discard", lambda staging: None)
    monkeypatch.setattr(_io, "_roll_back", lambda staging, parent, names: None)


def test_final_rename_failure_keeps_previous_saved_model(target, monkeypatch):
    before = snapshot(target)
    real_replace = os.replace

    def replace(src, dst):
        if os.fspath(dst) == str(target) and f"{os.sep}new{os.sep}" in os.fspath(src):
            raise OSError(errno.EXDEV, "injected rename failure")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="injected rename failure"):
        export.export_saved_model(small_model(1), target, overwrite=True)
    monkeypatch.undo()
    assert snapshot(target) == before
    np.testing.assert_allclose(served_scores(target), small_model(0)(IDS), atol=1e-6)
    assert leftovers(target.parent) == []


def test_rename_and_restore_failure_keeps_previous_for_the_next_run(target, monkeypatch):
    """If even putting the old artifact back fails, it is kept and put back later."""
    before = snapshot(target)
    real_replace = os.replace

    def replace(src, dst):
        if os.fspath(dst) == str(target):
            raise OSError(errno.EIO, "injected I/O error")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(
        OSError, match=r"could not be put back .*injected I/O error.*they are in .*ktl-export.*old"
    ):
        export.export_saved_model(small_model(1), target, overwrite=True)
    monkeypatch.undo()
    assert not target.exists()
    with pytest.raises(ValueError, match="already exists"):
        export.export_saved_model(small_model(2), target)
    assert snapshot(target) == before
    assert leftovers(target.parent) == []


def test_old_file_that_cannot_be_deleted_does_not_break_either_artifact(target, monkeypatch):
    real_unlink = os.unlink

    def unlink(path, *args, **kwargs):
        if os.path.basename(os.fspath(path)) == "saved_model.pb":
            raise PermissionError(errno.EACCES, "injected: cannot delete", path)
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)
    with pytest.warns(UserWarning, match="Could not delete all of .*ktl-export"):
        export.export_saved_model(small_model(1), target, overwrite=True)
    monkeypatch.undo()
    # The new artifact is complete and in place; the old one waits in staging.
    np.testing.assert_allclose(served_scores(target), small_model(1)(IDS), atol=1e-6)
    assert len(leftovers(target.parent)) == 1
    # The next export into the folder deletes it, even in the same process.
    with pytest.raises(ValueError, match="already exists"):
        export.export_saved_model(small_model(2), target)
    assert leftovers(target.parent) == []
    np.testing.assert_allclose(served_scores(target), small_model(1)(IDS), atol=1e-6)


@pytest.mark.parametrize("moment", ["writing", "between_renames", "deleting_old"])
def test_killed_export_is_finished_or_undone_on_the_next_run(target, monkeypatch, moment):
    before = snapshot(target)
    if moment != "deleting_old":
        kill_without_cleanup(monkeypatch)
    if moment == "writing":
        real_save = tf.saved_model.save

        def save(obj, filepath, *args, **kwargs):
            real_save(obj, filepath, *args, **kwargs)
            os.remove(os.path.join(filepath, "saved_model.pb"))
            raise Killed()

        monkeypatch.setattr(tf.saved_model, "save", save)
    elif moment == "between_renames":
        real_replace = os.replace

        def replace(src, dst):
            if os.fspath(dst) == str(target):  # the old one is already aside
                raise Killed()
            return real_replace(src, dst)

        monkeypatch.setattr(os, "replace", replace)
    else:
        real_rmtree = shutil.rmtree

        def rmtree(path, *args, **kwargs):
            if os.path.basename(os.fspath(path)) == "old":
                # Half of the old SavedModel is gone, saved_model.pb first.
                os.remove(os.path.join(path, "sm", "saved_model.pb"))
                raise Killed()
            return real_rmtree(path, *args, **kwargs)

        monkeypatch.setattr(shutil, "rmtree", rmtree)
    with pytest.raises(Killed):
        export.export_saved_model(small_model(1), target, overwrite=True)
    monkeypatch.undo()
    assert len(leftovers(target.parent)) == 1
    if moment == "between_renames":
        assert not target.exists()  # what the kill left: the previous artifact is aside
    as_killed_process(target.parent)
    # The next run, even without `overwrite`, first restores or finishes it.
    with pytest.raises(ValueError, match="already exists"):
        export.export_saved_model(small_model(2), target)
    assert leftovers(target.parent) == []
    if moment == "deleting_old":
        np.testing.assert_allclose(served_scores(target), small_model(1)(IDS), atol=1e-6)
    else:
        assert snapshot(target) == before


def test_staging_folder_of_a_running_process_is_left_alone(tmp_path):
    alive = os.getppid()
    folder = tmp_path / f"{_io.STAGING_PREFIX}{alive}-abc"
    (folder / "new").mkdir(parents=True)
    _io.recover_staging(str(tmp_path))
    assert leftovers(tmp_path) == [folder.name]


@pytest.mark.parametrize("artifact", ["saved_model", "tflite"])
def test_full_disk_keeps_previous_artifact(tmp_path, target, monkeypatch, artifact):
    def write_partly_then_fail(obj, filepath, *args, **kwargs):
        if artifact == "saved_model":
            os.makedirs(filepath)
            filepath = os.path.join(filepath, "saved_model.pb")
        with open(filepath, "wb") as f:
            f.write(b"\0" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    if artifact == "saved_model":
        path = target
        monkeypatch.setattr(tf.saved_model, "save", write_partly_then_fail)
        exporter = export.export_saved_model
    else:
        path = tmp_path / "m.tflite"
        path.write_bytes(b"previous")
        monkeypatch.setattr(keras.Model, "export", write_partly_then_fail)
        exporter = export.export_tflite
    before = snapshot(path)
    with pytest.raises(OSError, match="No space left"):
        exporter(small_model(1), path, overwrite=True)
    assert snapshot(path) == before
    assert leftovers(tmp_path) == []


def test_read_only_folder_writes_nothing(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EROFS, "Read-only file system", kwargs.get("dir"))

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    with pytest.raises(PermissionError, match="Read-only"):
        export.export_saved_model(small_model(1), tmp_path / "sm")
    assert os.listdir(tmp_path) == []


def test_overwrite_must_be_a_bool(tmp_path):
    with pytest.raises(ValueError, match=r"`overwrite` must be a bool. Received: overwrite='no'"):
        export.export_saved_model(small_model(1), tmp_path / "sm", overwrite="no")
    assert os.listdir(tmp_path) == []


@pytest.fixture
def without_litert(monkeypatch):
    """`import ai_edge_litert` fails, as after a plain `pip install`."""
    for name in list(sys.modules):
        if name == "ai_edge_litert" or name.startswith("ai_edge_litert."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)


def test_missing_litert_fails_before_writing(tmp_path, without_litert):
    install = re.escape('Install it from the repository root with `pip install ".[litert]"`')
    with pytest.raises(
        ModuleNotFoundError, match=r"`export_tflite` needs .*ai-edge-litert.*" + install
    ):
        export.export_tflite(small_model(1), tmp_path / "m.tflite")
    assert os.listdir(tmp_path) == []
    (tmp_path / "x.tflite").write_bytes(b"whatever")
    with pytest.raises(ModuleNotFoundError, match=r"`tflite_op_names` needs .*" + install):
        export.tflite_op_names(tmp_path / "x.tflite")
    with pytest.raises(ModuleNotFoundError, match=r"`verify_export` needs .*" + install):
        export.verify_export(tmp_path / "x.tflite", small_model(1), IDS)


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("keras") / "model.keras"
    helpers.tiny_transformer(11, model_dim=8, intermediate_dim=16).save(path)
    return path


def one_line_error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_cli_without_litert_exits_2_before_writing(tmp_path, keras_file, capsys, without_litert):
    for flags in (["--tflite"], ["--quantize", "float16"]):
        assert cli.main([str(keras_file), str(tmp_path / "out"), *flags]) == 2
        assert 'from the repository root with `pip install ".[litert]"`' in one_line_error(capsys)
        assert os.listdir(tmp_path) == []


def previous_out_dir(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "saved_model").mkdir()
    (out / "saved_model" / "saved_model.pb").write_bytes(b"previous export")
    (out / "model.tflite").write_bytes(b"previous tflite")
    (out / "notes.txt").write_text("mine")
    return out


@pytest.mark.parametrize("existing", [False, True])
def test_cli_failure_after_saved_model_leaves_out_dir_as_it_was(
    tmp_path, keras_file, capsys, monkeypatch, existing
):
    out = previous_out_dir(tmp_path) if existing else tmp_path / "out"
    before = snapshot(out) if existing else None

    def full_disk(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "No space left on device\nmore")

    monkeypatch.setattr(export, "export_tflite", full_disk)
    argv = [str(keras_file), str(out), "--tflite"] + (["--overwrite"] if existing else [])
    assert cli.main(argv) == 2
    line = one_line_error(capsys)
    assert "cannot write to OUT_DIR (ResourceExhaustedError: No space left on device)" in line
    assert "free space" in line and f"Received: out_dir={str(out)!r}" in line
    if existing:
        assert snapshot(out) == before
        assert leftovers(out) == []
    else:
        assert not out.exists()
    assert leftovers(tmp_path) == []


def test_cli_read_only_out_dir_exits_2(tmp_path, keras_file, capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", kwargs.get("dir"))

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    assert cli.main([str(keras_file), str(tmp_path / "out")]) == 2
    line = one_line_error(capsys)
    assert "cannot write to OUT_DIR (PermissionError: [Errno 13] Permission denied" in line
    assert os.listdir(tmp_path) == []


def test_cli_other_failure_exits_2_with_one_line(tmp_path, keras_file, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("converter exploded\ndetails")

    monkeypatch.setattr(export, "export_saved_model", broken)
    out = previous_out_dir(tmp_path)
    before = snapshot(out)
    assert cli.main([str(keras_file), str(out), "--overwrite"]) == 2
    line = one_line_error(capsys)
    assert (
        "the export failed (RuntimeError: converter exploded); OUT_DIR was left as it was" in line
    )
    assert snapshot(out) == before


def test_cli_cleans_a_killed_run_and_replaces_both_artifacts(tmp_path, keras_file, capsys):
    out = previous_out_dir(tmp_path)
    stale = out / f"{_io.STAGING_PREFIX}{dead_pid()}-xyz"
    (stale / "new" / "saved_model").mkdir(parents=True)
    assert cli.main([str(keras_file), str(out), "--tflite", "--overwrite"]) == 0
    assert sorted(os.listdir(out)) == ["model.tflite", "notes.txt", "saved_model"]
    model = keras.models.load_model(keras_file)
    inputs = helpers.translation_inputs(11, 2, 5, 4)
    assert export.verify_export(out / "saved_model", model, inputs)["max_abs_diff"] <= 1e-5
    assert export.verify_export(out / "model.tflite", model, inputs)["max_abs_diff"] <= 1e-4


def test_cli_garbage_keras_file_says_what_it_is(tmp_path, capsys):
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"\x00garbage, not a zip archive")
    assert cli.main([str(junk), str(tmp_path / "out")]) == 2
    line = one_line_error(capsys)
    assert "MODEL is not a Keras archive" in line and "not a zip archive" in line
    assert "File not found" not in line
    assert f"Received: model={str(junk)!r}" in line
    assert os.listdir(tmp_path) == ["junk.keras"]


def test_two_artifacts_are_replaced_together_or_not_at_all(tmp_path, monkeypatch):
    """The CLI's commit: if the second rename fails, the first is undone too."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_text("old a")
    (tmp_path / "b.tflite").write_text("old b")
    before = {name: snapshot(tmp_path / name) for name in ("a", "b.tflite")}
    real_replace = os.replace

    def replace(src, dst):
        if os.fspath(dst) == str(tmp_path / "b.tflite") and f"{os.sep}new{os.sep}" in os.fspath(
            src
        ):
            raise OSError(errno.ENOSPC, "injected")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="injected"):
        with _io.atomic_outputs([str(tmp_path / "a"), str(tmp_path / "b.tflite")]) as (a, b):
            os.mkdir(a)
            with open(os.path.join(a, "f"), "w") as f:
                f.write("new a")
            with open(b, "w") as f:
                f.write("new b")
    assert {name: snapshot(tmp_path / name) for name in ("a", "b.tflite")} == before
    assert leftovers(tmp_path) == []


def test_recovery_skips_files_and_cleans_the_old_staging_layout(tmp_path):
    (tmp_path / f"{_io.STAGING_PREFIX}notes").write_text("a file, not a staging folder")
    legacy = tmp_path / f"{_io.STAGING_PREFIX}k3j_x9q2"  # before process ids were recorded
    (legacy / "sm").mkdir(parents=True)
    _io.recover_staging(str(tmp_path))
    assert leftovers(tmp_path) == [f"{_io.STAGING_PREFIX}notes"]
