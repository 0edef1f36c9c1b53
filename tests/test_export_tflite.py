"""TFLite (LiteRT): Keras' own export, builtin ops only, standalone runtime, quantization."""

import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_transformer_layers as ktl
from keras_transformer_layers import export
from tests import export_helpers as helpers

VOCABULARY = 14
# (batch, source_len, target_len): two batch sizes and two sets of lengths.
SHAPES = [(1, 5, 3), (3, 9, 6)]


def encoder_classifier():
    """A functional model of the layers other than `build_transformer`."""
    keras.utils.set_random_seed(1)
    ids = keras.Input((None,), dtype="int32", name="ids")
    x = ktl.PositionalEmbedding(20, 8)(ids)
    x = ktl.TransformerEncoder(num_layers=1, num_heads=2, intermediate_dim=16)(x)
    return keras.Model(ids, keras.layers.Dense(3, name="scores")(x))


@pytest.fixture(scope="module")
def tflite_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tflite")
    transformer = helpers.tiny_transformer(VOCABULARY)
    classifier = encoder_classifier()
    # Keras' own exporter, default arguments.
    transformer.export(str(folder / "keras_transformer.tflite"), format="litert", verbose=False)
    classifier.export(str(folder / "keras_classifier.tflite"), format="litert", verbose=False)
    return {"folder": folder, "transformer": transformer, "classifier": classifier}


STANDALONE_SCRIPT = """
import json, sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter

def run(path, feeds):
    interpreter = Interpreter(model_path=path)
    # Input tensors are named "serving_default_<input name>:0".
    inputs = {d["name"].split("serving_default_")[-1].split(":")[0]: d
              for d in interpreter.get_input_details()}
    (output,) = interpreter.get_output_details()
    results = []
    for feed in feeds:
        for name, value in feed.items():
            interpreter.resize_tensor_input(inputs[name]["index"], value.shape)
        interpreter.allocate_tensors()
        for name, value in feed.items():
            interpreter.set_tensor(inputs[name]["index"], value)
        interpreter.invoke()
        results.append(interpreter.get_tensor(output["index"]))
    return results

data = np.load("inputs.npz")
count = len(data.files) // 5
out = {}
for file in ("keras_transformer", "ktl_transformer"):
    key = "ktl_" if file.startswith("ktl") else ""
    feeds = [{"encoder_inputs": data[f"{key}encoder_inputs_{i}"],
              "decoder_inputs": data[f"{key}decoder_inputs_{i}"]} for i in range(count)]
    for i, result in enumerate(run(file + ".tflite", feeds)):
        out[f"{file}_{i}"] = result
for i, result in enumerate(run("keras_classifier.tflite",
                               [{"ids": data[f"ids_{i}"]} for i in range(count)])):
    out[f"keras_classifier_{i}"] = result
np.savez("outputs.npz", **out)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))))
"""


@pytest.fixture(scope="module")
def standalone_run(tflite_files, quantized_reports):
    """Runs every file on `ai_edge_litert` in a process without TensorFlow.

    `ktl_transformer.tflite` is the float file of `export_tflite` (from the
    `quantized_reports` fixture, vocabulary 128).
    """
    folder = tflite_files["folder"]
    shutil.copy(quantized_reports[0][None]["path"], folder / "ktl_transformer.tflite")
    inputs = []
    arrays = {}
    for i, (batch, source_len, target_len) in enumerate(SHAPES):
        x = helpers.translation_inputs(VOCABULARY, batch, source_len, target_len, seed=i)
        x["ids"] = helpers.random_ids(20, batch, source_len, seed=10 + i, pad_tail=2)
        wide = helpers.translation_inputs(128, batch, source_len, target_len, seed=i)
        x.update({f"ktl_{k}": v for k, v in wide.items()})
        inputs.append(x)
        arrays.update({f"{k}_{i}": v for k, v in x.items()})
    np.savez(folder / "inputs.npz", **arrays)
    stdout = helpers.run_python(["-I"], STANDALONE_SCRIPT, cwd=folder)
    return {
        "imported": json.loads(stdout.splitlines()[-1]),
        "outputs": dict(np.load(folder / "outputs.npz")),
        "inputs": inputs,
    }


def test_standalone_process_never_imports_tensorflow(standalone_run):
    assert standalone_run["imported"] == []


@pytest.mark.parametrize("file", ["keras_transformer", "keras_classifier", "ktl_transformer"])
def test_builtin_ops_only(tflite_files, standalone_run, file):
    ops = export.tflite_op_names(tflite_files["folder"] / f"{file}.tflite")
    assert [op for op in ops if op.startswith("CUSTOM") or "Flex" in op] == []
    assert "FULLY_CONNECTED" in ops and "SOFTMAX" in ops


def test_tflite_op_names_agree_with_tensorflow_analyzer(tflite_files, capsys):
    path = str(tflite_files["folder"] / "keras_transformer.tflite")
    tf.lite.experimental.Analyzer.analyze(model_path=path)
    printed = capsys.readouterr().out
    for op in export.tflite_op_names(path):
        assert f" {op}(" in printed
    assert "Flex" not in printed


@pytest.mark.parametrize("file", ["keras_transformer", "ktl_transformer"])
def test_standalone_transformer_matches_keras(
    tflite_files, quantized_reports, standalone_run, file
):
    if file == "keras_transformer":
        model, key, vocabulary = tflite_files["transformer"], "", VOCABULARY
    else:
        model, key, vocabulary = quantized_reports[2], "ktl_", 128
    for i, inputs in enumerate(standalone_run["inputs"]):
        keras_inputs = {k: inputs[key + k] for k in ("encoder_inputs", "decoder_inputs")}
        got = standalone_run["outputs"][f"{file}_{i}"]
        assert got.shape == (SHAPES[i][0], SHAPES[i][2], vocabulary)
        np.testing.assert_allclose(got, model(keras_inputs), atol=1e-4)


def test_standalone_classifier_matches_keras(tflite_files, standalone_run):
    model = tflite_files["classifier"]
    for i, inputs in enumerate(standalone_run["inputs"]):
        np.testing.assert_allclose(
            standalone_run["outputs"][f"keras_classifier_{i}"],
            model(inputs["ids"]),
            atol=1e-4,
        )


def test_export_tflite_report(quantized_reports):
    report = quantized_reports[0][None]
    assert report["size_bytes"] == os.path.getsize(report["path"])
    assert report["quantization"] is None
    assert report["max_abs_diff"] <= 1e-4
    assert report["token_agreement"] == 1.0


def test_keras_saved_model_export_is_dynamic(tflite_files, tmp_path):
    """Keras' own `model.export(format="tf_saved_model")` at two shapes."""
    model = tflite_files["transformer"]
    model.export(str(tmp_path / "sm"), format="tf_saved_model", verbose=False)
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    for i, (batch, source_len, target_len) in enumerate(SHAPES):
        inputs = helpers.translation_inputs(VOCABULARY, batch, source_len, target_len, seed=i)
        np.testing.assert_allclose(loaded.serve(inputs), model(inputs), atol=1e-5)


@pytest.fixture(scope="module")
def quantized_reports(tmp_path_factory):
    """Float, float16 and int8 files of a model big enough for quantization.

    Dynamic-range quantization skips tensors under 1024 elements, so this
    model is wider than the others (137k parameters).
    """
    folder = tmp_path_factory.mktemp("quantized")
    model = helpers.tiny_transformer(128, model_dim=64, intermediate_dim=256, num_heads=4)
    inputs = helpers.translation_inputs(128, 4, 12, 10, seed=7)
    reports = {}
    for quantization in (None, "float16", "dynamic_int8"):
        reports[quantization] = export.export_tflite(
            model,
            folder / f"model_{quantization}.tflite",
            quantization=quantization,
            sample_inputs=inputs,
        )
    logits = np.asarray(model(inputs))
    return reports, float(np.abs(logits).max()), model


def test_quantized_files_are_smaller_and_close(quantized_reports):
    reports, logit_scale, _ = quantized_reports
    float_size = reports[None]["size_bytes"]
    # Measured: float 608,624 B, float16 333,940 B (1.82x), int8 210,240 B (2.89x). The graph,
    # the biases and the two embedding tables (read by GATHER, which
    # dynamic-range quantization leaves in float) stay float32, so the ratios
    # stay under 2 and 4.
    assert 1.7 < float_size / reports["float16"]["size_bytes"] < 2.1
    assert 2.6 < float_size / reports["dynamic_int8"]["size_bytes"] < 4.1
    assert reports[None]["max_abs_diff"] <= 1e-4
    # Measured on these inputs: float16 max |diff| 1.2e-3, int8 3.9e-2, for
    # logits up to 2.8 in absolute value; argmax agreement 1.0 for both.
    assert reports["float16"]["max_abs_diff"] <= 1e-2
    assert reports["dynamic_int8"]["max_abs_diff"] <= 0.2
    assert reports["float16"]["max_abs_diff"] > 0  # the file really is quantized
    assert reports["dynamic_int8"]["max_abs_diff"] > reports["float16"]["max_abs_diff"]
    assert reports["float16"]["token_agreement"] >= 0.95
    assert reports["dynamic_int8"]["token_agreement"] >= 0.9
    assert logit_scale > 1.0
    assert "DEQUANTIZE" in reports["float16"]["op_names"]


def test_tflite_op_names_refuses_truncated_or_foreign_files(tflite_files, tmp_path):
    data = (tflite_files["folder"] / "keras_classifier.tflite").read_bytes()
    for size in (0, 4, 8, 64, len(data) // 3, len(data) // 2, len(data) - 1):
        path = tmp_path / f"cut_{size}.tflite"
        path.write_bytes(data[:size])
        with pytest.raises(
            ValueError, match=rf"`path` .*TFLite flat buffer.*Received: path='.*cut_{size}\.tflite'"
        ):
            export.tflite_op_names(path)
    (tmp_path / "x.tflite").write_bytes(b"PK\x03\x04 a zip, not a model")
    with pytest.raises(ValueError, match=r"identifier 'TFL3'.*Received: path='.*x\.tflite'"):
        export.tflite_op_names(tmp_path / "x.tflite")
    with pytest.raises(
        ValueError, match=r"must be an existing `\.tflite` file. Received: path='.*missing"
    ):
        export.tflite_op_names(str(tmp_path / "missing.tflite"))


def test_out_of_range_ids_in_tflite(tflite_files, quantized_reports):
    """What LiteRT does with ids outside the vocabulary (builtin ops only, no asserts).

    GATHER checks its bounds: an id >= the vocabulary size raises. A negative
    id raises too (Keras' `take` would read -1 as the last row, but
    `PositionalEmbedding` sends negative ids past the end of its table), in
    Keras' own export and in `export_tflite`'s alike.
    """
    from ai_edge_litert.interpreter import Interpreter

    model = tflite_files["classifier"]  # PositionalEmbedding(20, 8)
    keras_runner = Interpreter(
        model_path=str(tflite_files["folder"] / "keras_classifier.tflite")
    ).get_signature_runner()
    good = np.array([[1, 19, 3]], "int32")
    np.testing.assert_allclose(keras_runner(ids=good)["output_0"], model(good), atol=1e-4)
    for bad in (20, 10**6, -1):
        ids = np.array([[1, bad, 3]], "int32")
        with pytest.raises(RuntimeError, match="gather index out of bounds"):
            keras_runner(ids=ids)

    reports = quantized_reports[0]  # export_tflite, vocabulary 128
    for quantization in (None, "dynamic_int8"):
        runner = Interpreter(model_path=reports[quantization]["path"]).get_signature_runner()
        good = helpers.translation_inputs(128, 1, 4, 3, seed=8)
        assert runner(**good)["output_0"].shape == (1, 3, 128)
        for key, bad in [("encoder_inputs", -1), ("decoder_inputs", -5), ("encoder_inputs", 128)]:
            ids = {k: v.copy() for k, v in good.items()}
            ids[key][0, 1] = bad
            with pytest.raises(RuntimeError, match="gather index out of bounds"):
                runner(**ids)


def test_learned_position_table_overrun_raises_in_tflite(tmp_path):
    keras.utils.set_random_seed(3)
    ids = keras.Input((None,), dtype="int32", name="ids")
    x = ktl.PositionalEmbedding(16, 8, learned_positions=True, sequence_length=4)(ids)
    model = keras.Model(ids, keras.layers.Dense(3, name="scores")(x))
    path = tmp_path / "learned.tflite"
    report = export.export_tflite(model, path)
    assert not [op for op in report["op_names"] if op.startswith("CUSTOM")]
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner()
    full = np.array([[1, 2, 3, 4]], "int32")
    np.testing.assert_allclose(runner(ids=full)["output_0"], model(full), atol=1e-5)
    with pytest.raises(RuntimeError, match="gather index out of bounds"):
        runner(ids=np.array([[1, 2, 3, 4, 5]], "int32"))
