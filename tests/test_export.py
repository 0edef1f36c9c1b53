"""SavedModel export: signatures, fresh-process serving, text, verification, errors."""

import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_transformer_layers as ktl
from keras_transformer_layers import export
from keras_transformer_layers.export import generation_signatures
from keras_transformer_layers.generation import Generator
from keras_transformer_layers.tokens import END_ID
from keras_transformer_layers.tokens import START_ID
from tests import export_helpers as helpers
from tests.generation_fixtures import interface_of
from tests.generation_fixtures import small_model

SOURCES = ["abc", "hgfedcba", "jj", "a"]
MAX_NEW_TOKENS = 12


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A character model exported with every signature: forward, encoder, translate, generation."""
    model, tokenizer = helpers.character_model()
    generator = Generator(interface_of(model), max_new_tokens=MAX_NEW_TOKENS)
    translator = export.text_translation_function(generator, tokenizer, tokenizer)
    path = str(tmp_path_factory.mktemp("export") / "saved_model")
    report = export.export_saved_model(
        model,
        path,
        text_translator=translator,
        extra_signatures=generation_signatures(generator),
    )
    return {
        "model": model,
        "tokenizer": tokenizer,
        "generator": generator,
        "path": path,
        "report": report,
    }


def keras_greedy_translation(model, tokenizer, text):
    """Reference: a Python loop over the full `model(...)` on the whole prefix."""
    source = tokenizer(tf.constant([text])).numpy()
    tokens = [START_ID]
    for _ in range(MAX_NEW_TOKENS):
        logits = model({"encoder_inputs": source, "decoder_inputs": np.array([tokens], "int32")})
        tokens.append(int(np.argmax(np.asarray(logits)[0, -1])))
        if tokens[-1] == END_ID:
            break
    return tokenizer.detokenize(np.array([tokens[1:]])).numpy()[0].decode()


def learned_positions_model():
    """Token and learned position tables of 16 ids and 4 positions."""
    keras.utils.set_random_seed(4)
    ids = keras.Input((None,), dtype="int32", name="ids")
    x = ktl.PositionalEmbedding(16, 8, learned_positions=True, sequence_length=4)(ids)
    return keras.Model(ids, keras.layers.Dense(3, name="scores")(x))


@pytest.fixture(scope="module")
def learned_export(tmp_path_factory):
    model = learned_positions_model()
    path = str(tmp_path_factory.mktemp("learned") / "saved_model")
    export.export_saved_model(model, path)
    return {"model": model, "path": path}


# Inputs outside the embedding tables: (signature, feed, what the error must say).
BAD_INPUTS = [
    (
        "forward",
        {"encoder_inputs": [[4, 14, 5]], "decoder_inputs": [[1, 2]]},
        r"`encoder_inputs` must hold token ids in \[0, 14\)\. Received: encoder_inputs with smallest id\] \[4\] \[and largest id\] \[14\]",
    ),
    (
        "serving_default",
        {"encoder_inputs": [[4, 5]], "decoder_inputs": [[1, -1]]},
        r"`decoder_inputs` must hold token ids in \[0, 14\)\. Received: decoder_inputs with smallest id\] \[-1\]",
    ),
    (
        "encoder",
        {"source_ids": [[1, 10**6]]},
        r"`source_ids` must hold token ids in \[0, 14\).*\[1000000\]",
    ),
    ("learned", {"ids": [[1, 16, 2]]}, r"`ids` must hold token ids in \[0, 16\).*\[16\]"),
    ("learned", {"ids": [[-1, 2]]}, r"`ids` must hold token ids in \[0, 16\).*\[-1\]"),
    (
        "learned",
        {"ids": [[1, 2, 3, 4, 5]]},
        r"`ids` must be at most 4 tokens long \(the learned position table\)\. Received: ids of length\] \[5\]",
    ),
]


@pytest.fixture(scope="module")
def fresh_process_run(exported, learned_export, tmp_path_factory):
    """Runs every signature with TensorFlow alone, in `python -I -S`.

    The child gets the venv's site-packages without its `.pth` files, so the
    editable install of this package is not on its path; it proves that
    `keras_transformer_layers` cannot be imported before loading.
    """
    work = tmp_path_factory.mktemp("fresh")
    inputs = [
        helpers.translation_inputs(14, 2, 6, 5, seed=1),
        helpers.translation_inputs(14, 3, 9, 4, seed=2),
    ]
    np.savez(
        work / "inputs.npz", **{f"{k}_{i}": v for i, x in enumerate(inputs) for k, v in x.items()}
    )
    script = f"""
import importlib.util, json, sys
sys.path.extend(json.loads({helpers.site_packages()!r}))
assert importlib.util.find_spec("keras_transformer_layers") is None, sys.path
try:
    import keras_transformer_layers
    print("PACKAGE_IMPORTED")
except ModuleNotFoundError:
    print("PACKAGE_NOT_IMPORTABLE")
import numpy as np
import tensorflow as tf
loaded = tf.saved_model.load({exported["path"]!r})
data = np.load("inputs.npz")
out = {{}}
for i in range(2):
    feed = {{k: tf.constant(data[f"{{k}}_{{i}}"]) for k in ("encoder_inputs", "decoder_inputs")}}
    out[f"logits_{{i}}"] = loaded.signatures["forward"](**feed)["logits"].numpy()
    state = loaded.signatures["encoder"](source_ids=feed["encoder_inputs"])
    out[f"source_mask_{{i}}"] = state["source_mask"].numpy()
    out[f"cross_attention_cache_{{i}}"] = state["cross_attention_cache"].numpy()
result = loaded.signatures["translate"](text=tf.constant({SOURCES!r}))
learned = tf.saved_model.load({learned_export["path"]!r})
out["learned_ok"] = learned.signatures["forward"](ids=tf.constant([[1, 15, 0, 2]]))["scores"].numpy()
errors = []
for signature, feed in {[(name, feed) for name, feed, _ in BAD_INPUTS]!r}:
    function = (learned.signatures["forward"] if signature == "learned"
                else loaded.signatures[signature])
    try:
        function(**{{k: tf.constant(v) for k, v in feed.items()}})
        errors.append("no error")
    except tf.errors.InvalidArgumentError as error:
        errors.append(error.message)
with open("errors.json", "w") as f:
    json.dump(errors, f)
np.savez("outputs.npz", **out)
print(json.dumps([s.decode() for s in result["translation"].numpy()]))
print("KTL_LOADED" if "keras_transformer_layers" in sys.modules else "KTL_NOT_LOADED")
"""
    stdout = helpers.run_python(["-I", "-S"], script, cwd=work)
    outputs = dict(np.load(work / "outputs.npz"))
    errors = json.loads((work / "errors.json").read_text())
    return {"stdout": stdout, "outputs": outputs, "inputs": inputs, "errors": errors}


def test_signatures_are_named(exported):
    assert exported["report"]["path"] == os.path.abspath(exported["path"])
    assert exported["report"]["signatures"] == [
        "decode_step",
        "encode",
        "encoder",
        "forward",
        "generate",
        "serving_default",
        "translate",
    ]


def test_fresh_process_cannot_import_package(fresh_process_run):
    lines = fresh_process_run["stdout"].splitlines()
    assert "PACKAGE_NOT_IMPORTABLE" in lines
    assert "KTL_NOT_LOADED" in lines


def test_fresh_process_forward_and_encoder_match_keras(exported, fresh_process_run):
    """`encoder` returns `call_encoder`'s state: the mask as int32, the blocks stacked on axis 1."""
    model = exported["model"]
    outputs = fresh_process_run["outputs"]
    for i, inputs in enumerate(fresh_process_run["inputs"]):
        np.testing.assert_allclose(outputs[f"logits_{i}"], model(inputs), atol=1e-5)
        state = model.call_encoder(inputs["encoder_inputs"])
        np.testing.assert_array_equal(outputs[f"source_mask_{i}"], inputs["encoder_inputs"] != 0)
        assert outputs[f"source_mask_{i}"].dtype == np.int32
        np.testing.assert_allclose(
            outputs[f"cross_attention_cache_{i}"],
            np.stack([np.asarray(block) for block in state["cross_attention_cache"]], axis=1),
            atol=1e-5,
        )


@pytest.mark.parametrize("case", range(len(BAD_INPUTS)))
def test_fresh_process_signatures_reject_ids_outside_the_tables(fresh_process_run, case):
    """TensorFlow alone, without this package: a loud error, never another row."""
    assert re.search(BAD_INPUTS[case][2], fresh_process_run["errors"][case]), fresh_process_run[
        "errors"
    ][case]


def test_fresh_process_learned_positions_in_range_match_keras(learned_export, fresh_process_run):
    np.testing.assert_allclose(
        fresh_process_run["outputs"]["learned_ok"],
        learned_export["model"](np.array([[1, 15, 0, 2]])),
        atol=1e-6,
    )


def test_signature_checks_run_in_graph_and_eager_calls(learned_export):
    """The same checks in `forward_function` called eagerly and inside `tf.function`."""
    forward, _ = export.forward_function(learned_export["model"])
    # Any length, as in the SavedModel: with a static length the layer itself
    # would refuse a too-long input while tracing.
    graph_forward = tf.function(forward, input_signature=[tf.TensorSpec((None, None), tf.int32)])
    message = r"`ids` must be at most 4 tokens long"
    for call in (forward, graph_forward):
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            call(tf.constant([[1, 2, 3, 4, 5]]))
        with pytest.raises(
            tf.errors.InvalidArgumentError, match=r"`ids` must hold token ids in \[0, 16\)"
        ):
            call(tf.constant([[1, -3]]))
    ids = np.array([[3, 0, 7, 15]], "int32")
    np.testing.assert_allclose(
        graph_forward(tf.constant(ids))["scores"], learned_export["model"](ids), atol=1e-6
    )


def test_saved_signatures_hold_the_asserts_and_are_not_xla_compiled(learned_export):
    """XLA drops `Assert`: the checks fire because Keras saves signatures uncompiled."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(learned_export["path"], "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    library = proto.meta_graphs[0].graph_def.library.function
    assert sum(node.op == "Assert" for f in library for node in f.node_def) >= 2
    for function in library:
        assert not function.attr["_XlaMustCompile"].b, function.signature.name
        for node in function.node_def:
            assert not node.attr["_XlaMustCompile"].b, node.name


def test_translate_signature_rejects_a_tokenizer_larger_than_the_model():
    """Tokenizer ids reach the model only if they fit its source vocabulary."""
    _, tokenizer = helpers.character_model()  # 14 ids
    model = helpers.tiny_transformer(8)
    generator = Generator(interface_of(model), max_length=3)
    translate = export.text_translation_function(generator, tokenizer, tokenizer).function
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"`source_ids` must hold token ids in \[0, 8\).*\[13\]",
    ):
        tf.function(translate)(tf.constant(["ajj"]))


def test_translate_signature_needs_an_encoder_decoder_generator():
    _, tokenizer = helpers.character_model()
    lm_generator = Generator(small_model(decoder_only=True)[1], max_length=3)
    for generator, received in ((lm_generator, "generator with model="), ("g", "generator='g'")):
        with pytest.raises(ValueError, match=rf"`generator` must .*Received: {received}"):
            export.text_translation_function(generator, tokenizer, tokenizer)


def test_text_signature_translates_like_keras(exported, fresh_process_run):
    translations = json.loads(fresh_process_run["stdout"].splitlines()[-2])
    expected = [
        keras_greedy_translation(exported["model"], exported["tokenizer"], text) for text in SOURCES
    ]
    assert translations == expected
    # The untrained model still produces text, so the comparison is not vacuous.
    assert any(translations)


def test_saved_model_cli_show_and_run(exported):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    commands = {
        "show": [cli, "show", "--dir", exported["path"], "--all"],
        "run": [
            cli,
            "run",
            "--dir",
            exported["path"],
            "--tag_set",
            "serve",
            "--signature_def",
            "forward",
            "--input_exprs",
            "encoder_inputs=[[4,5,6]];decoder_inputs=[[2,7]]",
        ],
    }
    processes = {
        key: subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        for key, command in commands.items()
    }
    results = {key: process.communicate(timeout=180) for key, process in processes.items()}
    for key, process in processes.items():
        assert process.returncode == 0, results[key][1][-2000:]
    show, run = results["show"][0], results["run"][0]
    for name in exported["report"]["signatures"]:
        assert f"signature_def['{name}']" in show
    assert "Result for output key logits" in run
    printed = run.split("Result for output key logits:")[1]
    values = np.array(re.findall(r"-?\d+\.\d*(?:e[-+]\d+)?", printed), "float64")
    expected = exported["model"](
        {"encoder_inputs": np.array([[4, 5, 6]]), "decoder_inputs": np.array([[2, 7]])}
    )
    np.testing.assert_allclose(values, np.ravel(expected), atol=1e-5)


def test_verify_export_reports_match_and_mismatch(exported):
    model = exported["model"]
    inputs = helpers.translation_inputs(14, 2, 7, 6, seed=3)
    result = export.verify_export(exported["path"], model, inputs)
    assert result["max_abs_diff"] <= 1e-5
    assert result["token_agreement"] == 1.0
    # A model with other weights must be reported as different.
    other = helpers.character_model()[0]
    other.set_weights([w + 0.5 for w in model.get_weights()])
    mismatch = export.verify_export(exported["path"], other, inputs)
    assert mismatch["max_abs_diff"] > 0.1
    assert mismatch["token_agreement"] < 1.0


def test_generation_signature_gives_the_keras_tokens(exported):
    source = helpers.translation_inputs(14, 3, 5, 4, seed=4)["encoder_inputs"]
    generator = exported["generator"]

    def keras_generation(source_ids):
        token_ids, scores = generator.generate(source_ids, return_scores=True)
        return {"token_ids": token_ids, "scores": scores}

    result = export.verify_export(
        exported["path"], keras_generation, {"source_ids": source}, signature="generate"
    )
    assert result["token_agreement"] == 1.0
    assert result["max_abs_diff"] <= 1e-4


def test_functional_encoder_model_exports(tmp_path):
    """Any functional model of the layers, not only `build_transformer`."""
    ids = keras.Input((None,), dtype="int32", name="ids")
    x = ktl.PositionalEmbedding(20, 8)(ids)
    x = ktl.TransformerEncoder(num_layers=1, num_heads=2, intermediate_dim=16)(x)
    model = keras.Model(ids, keras.layers.Dense(3, name="scores")(x))
    report = export.export_saved_model(model, tmp_path / "sm")
    assert report["signatures"] == ["forward", "serving_default"]
    inputs = {"ids": helpers.random_ids(20, 2, 6, seed=5, pad_tail=2)}
    assert export.verify_export(tmp_path / "sm", model, inputs)["max_abs_diff"] <= 1e-5


def test_verify_export_refuses_float_ids(exported):
    # They were cast to the signature's int32: 4.5 compared as 4.
    inputs = helpers.translation_inputs(14, 2, 7, 6, seed=3)
    inputs["encoder_inputs"] = inputs["encoder_inputs"] + 0.5
    with pytest.raises(
        ValueError,
        match=r"`encoder_inputs` must be an integer array of token ids[\s\S]*"
        r"Received: encoder_inputs.dtype=float64",
    ):
        export.verify_export(exported["path"], exported["model"], inputs)


def test_encoder_signature_comes_from_the_decoding_interface_not_layer_names(tmp_path):
    """A functional model with an `encoder` layer and `encoder_inputs` has no decoding
    interface, so it gets no `encoder` signature (no layer is looked up by name)."""
    embedding = ktl.PositionalEmbedding(20, 8)
    encoder = ktl.TransformerEncoder(1, 2, 16, name="encoder")
    source = keras.Input((None,), dtype="int32", name="encoder_inputs")
    model = keras.Model(source, keras.layers.Dense(3)(encoder(embedding(source))))
    report = export.export_saved_model(model, tmp_path / "sm")
    assert report["signatures"] == ["forward", "serving_default"]
    assert sorted(tf.saved_model.load(str(tmp_path / "sm")).signatures) == report["signatures"]


def _leftovers(folder):
    return sorted(p for p in os.listdir(folder) if p.startswith(".ktl-export"))


def test_existing_path_is_refused_and_untouched(tmp_path):
    model = helpers.tiny_transformer(11)
    ids = keras.Input((None,), dtype="int32", name="ids")
    small = keras.Model(ids, keras.layers.Embedding(5, 2)(ids))
    target = tmp_path / "sm"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(
        ValueError, match=r"`path` already exists.*overwrite=True.*Received: path='.*sm'"
    ):
        export.export_saved_model(model, target)
    assert os.listdir(target) == ["keep.txt"]
    tflite_target = tmp_path / "m.tflite"
    tflite_target.write_bytes(b"old")
    with pytest.raises(ValueError, match=r"`path` already exists.*m\.tflite"):
        export.export_tflite(model, tflite_target)
    assert tflite_target.read_bytes() == b"old"
    # An empty folder is not "existing content".
    empty = tmp_path / "empty"
    empty.mkdir()
    export.export_saved_model(small, empty)
    assert (empty / "saved_model.pb").exists()
    assert _leftovers(tmp_path) == []


def test_unknown_quantization_is_refused(tmp_path):
    model = helpers.tiny_transformer(11)
    with pytest.raises(
        ValueError, match=r"`quantization` must be one of .*Received: quantization='int4'"
    ):
        export.export_tflite(model, tmp_path / "m.tflite", quantization="int4")
    assert os.listdir(tmp_path) == []


def test_model_without_inputs_is_refused(tmp_path):
    class NoInputs(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match=r"`model` must have inputs.*Received: model="):
        export.export_saved_model(NoInputs(), tmp_path / "sm")
    with pytest.raises(ValueError, match=r"`model` must be a `keras.Model`.*Received: model='x'"):
        export.export_tflite("x", tmp_path / "m.tflite")
    assert os.listdir(tmp_path) == []


def test_failed_export_leaves_nothing_behind(tmp_path):
    model = helpers.tiny_transformer(11)

    def broken(encoder_inputs):
        raise RuntimeError("boom")

    spec = [tf.TensorSpec([None, None], tf.int32, name="encoder_inputs")]
    with pytest.raises(RuntimeError, match="boom"):
        export.export_saved_model(
            model, tmp_path / "sm", extra_signatures={"broken": (broken, spec)}
        )
    assert os.listdir(tmp_path) == []


def test_mixed_precision_model_is_refused_for_tflite(tmp_path):
    keras.config.set_dtype_policy("mixed_float16")
    model = helpers.tiny_transformer(11)
    with pytest.raises(
        ValueError,
        match=r"float32 dtype policy.*Received: model computing in \['mixed_float16'\]",
    ):
        export.export_tflite(model, tmp_path / "m.tflite")
    assert os.listdir(tmp_path) == []


def test_pre_norm_transformer_exports_to_tflite(tmp_path):
    keras.utils.set_random_seed(2)
    model = ktl.build_transformer(
        11,
        11,
        num_layers=1,
        model_dim=8,
        num_heads=2,
        intermediate_dim=16,
        normalize_first=True,
    )
    report = export.export_tflite(
        model,
        tmp_path / "m.tflite",
        sample_inputs=helpers.translation_inputs(11, 2, 5, 4, seed=6),
    )
    assert report["max_abs_diff"] <= 1e-4
    assert not [op for op in report["op_names"] if op.startswith("CUSTOM")]
