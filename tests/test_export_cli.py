"""`python -m keras_transformer_layers.export`: progress, outputs and errors."""

import os
import subprocess
import sys
import zipfile

import keras
import numpy as np

from keras_transformer_layers import export
from keras_transformer_layers.export import __main__ as cli
from tests import export_helpers as helpers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_cli_exports_saved_model_and_quantized_tflite(tmp_path):
    model = helpers.tiny_transformer(11)
    model.save(tmp_path / "model.keras")
    # Level 2 shows TensorFlow's errors; the CLI drops its known notices (cuInit, oneDNN).
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_transformer_layers.export",
            str(tmp_path / "model.keras"),
            str(tmp_path / "out"),
            "--tflite",
            "--quantize",
            "float16",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    notices = [
        line for line in result.stderr.splitlines() if line.startswith("E0000") or "XNNPACK" in line
    ]
    assert not notices
    lines = result.stdout.splitlines()
    assert lines[0].startswith("[1/3] Loading")
    assert any(line.startswith("[2/3] Writing SavedModel") for line in lines)
    assert any(line.startswith("[3/3] Writing TFLite") for line in lines)
    assert lines[-1] == "done"
    assert sorted(os.listdir(tmp_path / "out")) == ["model_float16.tflite", "saved_model"]
    inputs = helpers.translation_inputs(11, 2, 6, 4, seed=0)
    saved = export.verify_export(tmp_path / "out" / "saved_model", model, inputs)
    assert saved["max_abs_diff"] <= 1e-5
    tflite = export.verify_export(tmp_path / "out" / "model_float16.tflite", model, inputs)
    assert 0 < tflite["max_abs_diff"] <= 1e-2


def test_cli_missing_file_exits_non_zero(tmp_path):
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}
    missing = str(tmp_path / "missing.keras")
    result = subprocess.run(
        [sys.executable, "-m", "keras_transformer_layers.export", missing, str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert result.returncode == 2
    assert f"Received: model={missing!r}" in result.stderr
    assert not (tmp_path / "out").exists()


def test_cli_unreadable_file(tmp_path, capsys):
    junk = tmp_path / "junk.keras"
    junk.write_text("not a zip")
    assert cli.main([str(junk), str(tmp_path / "out")]) == 2
    assert "MODEL is not a Keras archive" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    # A zip archive that is not a Keras model is reported as unreadable.
    with zipfile.ZipFile(tmp_path / "zip.keras", "w") as archive:
        archive.writestr("notes.txt", "hello")
    assert cli.main([str(tmp_path / "zip.keras"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "cannot read MODEL as a Keras model (KeyError:" in err and "config.json" in err
    assert not (tmp_path / "out").exists()


def test_cli_model_not_built_by_package(tmp_path, capsys):
    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Dense(2)(inputs)).save(tmp_path / "plain.keras")
    assert cli.main([str(tmp_path / "plain.keras"), str(tmp_path / "out")]) == 2
    assert "has no layer of keras_transformer_layers" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_refuses_non_empty_out_dir(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    model = helpers.tiny_transformer(11)
    model.save(tmp_path / "model.keras")
    assert cli.main([str(tmp_path / "model.keras"), str(tmp_path / "out")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert os.listdir(tmp_path / "out") == ["keep.txt"]


def test_cli_sample_inputs_use_valid_ids():
    model = helpers.tiny_transformer(5)
    inputs = cli._sample_inputs(model)
    assert sorted(inputs) == ["decoder_inputs", "encoder_inputs"]
    for ids in inputs.values():
        assert ids.dtype == np.int32 and ids.min() >= 1 and ids.max() < 5
