"""Exports never lose a file: faults, kills and concurrent writers leave every artifact whole.

Failures are injected: a failing rename, a full disk, a read-only folder
(tests run as root, so `chmod` would not deny writes: the failing call is
monkeypatched), a missing `ai-edge-litert`, another writer creating the
target while an export runs, and a process killed at each file-system step
after the artifact is written (simulated by raising an exception nothing
catches, after which every file-system call does nothing, as in a dead
process).
"""

import errno
import os
import re
import shutil
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
def previous_artifacts(tmp_path_factory):
    """A SavedModel and a `.tflite` file of `small_model(0)`, copied into each test."""
    folder = tmp_path_factory.mktemp("previous")
    export.export_saved_model(small_model(0), folder / "sm")
    export.export_tflite(small_model(0), folder / "m.tflite")
    return folder


def previous(tmp_path, previous_artifacts, artifact):
    """The artifact to keep, at its target path in `tmp_path`."""
    name = "sm" if artifact == "saved_model" else "m.tflite"
    if artifact == "saved_model":
        shutil.copytree(previous_artifacts / name, tmp_path / name)
    else:
        shutil.copy(previous_artifacts / name, tmp_path / name)
    return tmp_path / name


EXPORTERS = {"saved_model": export.export_saved_model, "tflite": export.export_tflite}
# The call that writes each artifact (in its fresh folder). `keras.export.ExportArchive()`
# is an instance of the backend's archive class, which defines `write_out`.
WRITERS = {
    "saved_model": (type(keras.export.ExportArchive()), "write_out"),
    "tflite": (keras.Model, "export"),
}


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


def scores(path):
    """The artifact's outputs on `IDS`, read the way a user would."""
    if os.path.isdir(path):
        loaded = tf.saved_model.load(str(path))
        return loaded.signatures["forward"](ids=tf.constant(IDS))["scores"].numpy()
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner()
    return runner(ids=IDS)["output_0"]


def leftovers(folder):
    return sorted(p for p in os.listdir(folder) if p.startswith(_io.STAGING_PREFIX))


def after_writing(monkeypatch, artifact, action):
    """Runs `action(path)` right after the exporter wrote the artifact at `path`."""
    owner, name = WRITERS[artifact]
    real = getattr(owner, name)

    def write(self, path, *args, **kwargs):
        result = real(self, path, *args, **kwargs)
        action(os.fspath(path))
        return result

    monkeypatch.setattr(owner, name, write)


@pytest.mark.parametrize("artifact", ["saved_model", "tflite"])
def test_a_users_ktl_export_folder_survives(tmp_path, previous_artifacts, artifact):
    target = previous(tmp_path, previous_artifacts, artifact)
    notes = tmp_path / ".ktl-export-notes"
    notes.mkdir()
    (notes / "keep.txt").write_text("mine")
    EXPORTERS[artifact](small_model(1), target, overwrite=True)
    assert (notes / "keep.txt").read_text() == "mine"
    assert leftovers(tmp_path) == [".ktl-export-notes"]
    np.testing.assert_allclose(scores(target), small_model(1)(IDS), atol=1e-5)


def test_the_cli_leaves_a_users_ktl_export_folder_in_out_dir(tmp_path, keras_file):
    out = tmp_path / "out"
    (out / ".ktl-export-notes").mkdir(parents=True)
    (out / ".ktl-export-notes" / "keep.txt").write_text("mine")
    assert cli.main([str(keras_file), str(out), "--overwrite"]) == 0
    assert (out / ".ktl-export-notes" / "keep.txt").read_text() == "mine"
    assert sorted(os.listdir(out)) == [".ktl-export-notes", "saved_model"]


@pytest.mark.parametrize("artifact", ["saved_model", "tflite"])
def test_a_concurrent_writer_is_never_replaced_without_overwrite(
    tmp_path, previous_artifacts, monkeypatch, artifact
):
    """Two exports to one new path: the one that finishes second is refused."""
    (tmp_path / "other").mkdir()
    other = previous(tmp_path / "other", previous_artifacts, artifact)
    target = tmp_path / other.name

    def other_writer_finishes_first(path):
        (shutil.copytree if artifact == "saved_model" else shutil.copy)(other, target)

    after_writing(monkeypatch, artifact, other_writer_finishes_first)
    with pytest.raises(FileExistsError, match="created by another writer"):
        EXPORTERS[artifact](small_model(1), target)
    assert snapshot(target) == snapshot(other)
    assert leftovers(tmp_path) == []


DANGEROUS = ["rename", "replace", "link", "remove", "unlink", "rmdir"]


def kill_at(monkeypatch, artifact, step):
    """After the artifact is written, the `step`-th file-system change raises `Killed`.

    From then on every file-system change does nothing: a killed process
    runs no `finally` and no roll-back.
    """
    state = {"written": False, "calls": 0, "dead": False}
    after_writing(monkeypatch, artifact, lambda path: state.update(written=True))

    def patched(real):
        def call(*args, **kwargs):
            if state["dead"]:
                return None
            if state["written"]:
                if state["calls"] == step:
                    state["dead"] = True
                    raise Killed()
                state["calls"] += 1
            return real(*args, **kwargs)

        return call

    for name in DANGEROUS:
        monkeypatch.setattr(os, name, patched(getattr(os, name)))
    monkeypatch.setattr(shutil, "rmtree", patched(shutil.rmtree))
    if hasattr(_io, "_exchange"):
        monkeypatch.setattr(_io, "_exchange", patched(_io._exchange))
    return state


@pytest.mark.parametrize("step", range(4))
@pytest.mark.parametrize("artifact", ["saved_model", "tflite"])
def test_a_kill_at_any_step_leaves_the_old_or_the_new_artifact(
    tmp_path, previous_artifacts, monkeypatch, artifact, step
):
    target = previous(tmp_path, previous_artifacts, artifact)
    before = snapshot(target)
    state = kill_at(monkeypatch, artifact, step)
    try:
        EXPORTERS[artifact](small_model(1), target, overwrite=True)
    except Killed:
        pass
    monkeypatch.undo()
    assert state["written"]
    assert os.path.exists(target), f"killed at step {step}: the target is gone"
    if snapshot(target) != before:
        np.testing.assert_allclose(scores(target), small_model(1)(IDS), atol=1e-5)


@pytest.mark.parametrize("artifact", ["saved_model", "tflite"])
def test_a_failed_final_step_keeps_the_previous_artifact(
    tmp_path, previous_artifacts, monkeypatch, artifact
):
    """Every rename onto the target fails (e.g. an I/O error), moving it away does
    not: nothing is lost, and nothing has to be put back."""
    target = previous(tmp_path, previous_artifacts, artifact)
    before = snapshot(target)

    def failing(real):
        def call(*args, **kwargs):
            if os.fspath(args[1]) == str(target):
                raise OSError(errno.EIO, "injected I/O error")
            return real(*args, **kwargs)

        return call

    for owner, name in [(os, "rename"), (os, "replace"), (os, "link"), (_io, "_exchange")]:
        if hasattr(owner, name):
            monkeypatch.setattr(owner, name, failing(getattr(owner, name)))
    with pytest.raises(OSError, match="injected I/O error"):
        EXPORTERS[artifact](small_model(1), target, overwrite=True)
    monkeypatch.undo()
    assert snapshot(target) == before
    assert leftovers(tmp_path) == []


def test_without_an_atomic_exchange_a_folder_is_still_replaced(
    tmp_path, previous_artifacts, monkeypatch
):
    """Where `renameat2` is missing, the previous folder goes aside, then the new one in."""
    target = previous(tmp_path, previous_artifacts, "saved_model")

    def unavailable(first, second):
        raise OSError(errno.ENOSYS, "renameat2 is not available")

    monkeypatch.setattr(_io, "_exchange", unavailable)
    export.export_saved_model(small_model(1), target, overwrite=True)
    np.testing.assert_allclose(scores(target), small_model(1)(IDS), atol=1e-5)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("artifact", ["saved_model", "tflite"])
def test_full_disk_keeps_previous_artifact(tmp_path, previous_artifacts, monkeypatch, artifact):
    target = previous(tmp_path, previous_artifacts, artifact)

    def write_partly_then_fail(obj, filepath, *args, **kwargs):
        if artifact == "saved_model":
            os.makedirs(filepath)
            filepath = os.path.join(filepath, "saved_model.pb")
        with open(filepath, "wb") as f:
            f.write(b"\0" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(*WRITERS[artifact], write_partly_then_fail)
    before = snapshot(target)
    with pytest.raises(OSError, match="No space left"):
        EXPORTERS[artifact](small_model(1), target, overwrite=True)
    assert snapshot(target) == before
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
    """Nothing in OUT_DIR changes before every artifact is written; the folders the
    command created (OUT_DIR and its missing parents) are deleted."""
    out = previous_out_dir(tmp_path) if existing else tmp_path / "new" / "parent" / "out"
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
        assert os.listdir(tmp_path) == []


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


def test_cli_replaces_both_artifacts_and_keeps_other_files(tmp_path, keras_file):
    out = previous_out_dir(tmp_path)
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
