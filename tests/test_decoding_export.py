"""Generation exported as a SavedModel and as TFLite gives the Keras tokens."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from keras_transformer_layers.decoding import (
    TranslationGenerator,
    decode_step_tflite,
    export_generation_saved_model,
    generation_signatures,
    generation_tflite,
)
from keras_transformer_layers.data.tokenizer import END_ID, START_ID
from tests.decoding_fixtures import small_model, sources, trained_model  # noqa: F401

MAX_LENGTH = 10

# Runs in `python -I` (no PYTHONPATH, no cwd on sys.path) with the package
# made unimportable, so only TensorFlow and the SavedModel are used.
_LOAD_AND_GENERATE = """
import json, sys
sys.modules["keras_transformer_layers"] = None
try:
    import keras_transformer_layers
    raise SystemExit("the package must not be importable here")
except ImportError:
    pass
import tensorflow as tf
path, source = sys.argv[1], json.loads(sys.argv[2])
serve = tf.saved_model.load(path).signatures["serving_default"]
outputs = serve(source_ids=tf.constant(source, tf.int32))
print(json.dumps({name: value.numpy().tolist() for name, value in outputs.items()}))
"""


@pytest.fixture(scope="module")
def keras_generation(trained_model):
    generator = TranslationGenerator(trained_model, max_length=MAX_LENGTH)
    source = sources(4)
    token_ids, scores = generator.generate(source, return_scores=True)
    return generator, source, token_ids, scores


def _op_names(flat_buffer):
    interpreter = Interpreter(model_content=flat_buffer)
    return {op["op_name"] for op in interpreter._get_ops_details()}


def test_saved_model_generates_in_a_fresh_process(keras_generation, tmp_path):
    generator, source, token_ids, scores = keras_generation
    path = export_generation_saved_model(generator, str(tmp_path / "generator"))
    result = subprocess.run(
        [sys.executable, "-I", "-c", _LOAD_AND_GENERATE, path, json.dumps(source.tolist())],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = json.loads(result.stdout.strip().splitlines()[-1])
    np.testing.assert_array_equal(outputs["token_ids"], token_ids)
    np.testing.assert_allclose(outputs["scores"], scores, atol=1e-4)


def test_tflite_while_loop_gives_the_keras_tokens(keras_generation):
    generator, source, token_ids, scores = keras_generation
    flat_buffer = generation_tflite(generator, batch_size=4, source_len=source.shape[1])
    assert "WHILE" in _op_names(flat_buffer)
    runner = Interpreter(model_content=flat_buffer).get_signature_runner()
    outputs = runner(source_ids=source)
    np.testing.assert_array_equal(outputs["token_ids"], token_ids)
    np.testing.assert_allclose(outputs["scores"], scores, atol=1e-4)


def test_tflite_single_step_without_control_flow(keras_generation):
    generator, source, token_ids, _ = keras_generation
    source = source[:1]
    encode_buffer, step_buffer = decode_step_tflite(
        generator, batch_size=1, source_len=source.shape[1]
    )
    assert "WHILE" not in _op_names(step_buffer)
    encoded = Interpreter(model_content=encode_buffer).get_signature_runner()(
        source_ids=source
    )
    step = Interpreter(model_content=step_buffer).get_signature_runner()
    cache, token, generated = encoded["self_attention_cache"], np.array([[START_ID]], "int32"), []
    for index in range(MAX_LENGTH):  # the caller's loop, as on a delegate
        outputs = step(
            token_ids=token,
            index=np.array(index, "int32"),
            self_attention_cache=cache,
            cross_attention_cache=encoded["cross_attention_cache"],
            source_mask=encoded["source_mask"],
        )
        cache = outputs["self_attention_cache"]
        token = outputs["logits"].argmax(-1).astype("int32")[:, None]
        generated.append(int(token[0, 0]))
        if generated[-1] == END_ID:
            break
    np.testing.assert_array_equal(generated, token_ids[0, : len(generated)])
    assert np.all(token_ids[0, len(generated) :] == 0)


# ---------------------------------------------------------------------------
# Checks at the export boundary; the padding and start ids are never generated.


@pytest.fixture(scope="module")
def table_generator():
    """Learned position tables of 4 rows, the output bias favouring ids 0 and 2."""
    return TranslationGenerator(small_model(table=4), max_length=4)


TABLE_SOURCE = np.array([[4, 5, 6, 0], [7, 8, 9, 10]], "int32")


def test_exporters_check_their_arguments(table_generator, tmp_path):
    cases = [
        (lambda: generation_signatures("generator"), "generator", "generator='generator'"),
        (lambda: generation_signatures(table_generator, step_batch_size=0), "step_batch_size",
         "step_batch_size=0"),
        (lambda: generation_signatures(table_generator, step_source_len=5), "step_source_len",
         "step_source_len=5"),
        (lambda: export_generation_saved_model(table_generator, 3), "path", "path=3"),
        (lambda: generation_tflite(table_generator, batch_size=None), "batch_size",
         "batch_size=None"),
        (lambda: generation_tflite(table_generator, source_len=5), "source_len", "source_len=5"),
        (lambda: decode_step_tflite(table_generator, source_len=None), "source_len",
         "source_len=None"),
        (lambda: decode_step_tflite(table_generator, batch_size=1.0), "batch_size",
         "batch_size=1.0"),
    ]
    for export, name, received in cases:
        with pytest.raises(ValueError, match=rf"`{name}`[\s\S]*Received: {re.escape(received)}"):
            export()
    assert not list(tmp_path.iterdir())


def test_reloaded_saved_model_rejects_bad_ids_lengths_and_indices(table_generator, tmp_path):
    token_ids, scores = table_generator.generate(TABLE_SOURCE, return_scores=True)
    assert not np.isin(token_ids, [0, START_ID]).any(), token_ids  # inherited exclusion
    path = export_generation_saved_model(table_generator, str(tmp_path / "generator"))
    loaded = tf.saved_model.load(path)
    serve, encode, step = (
        loaded.signatures[name] for name in ("serving_default", "encode", "decode_step")
    )
    outputs = serve(source_ids=tf.constant(TABLE_SOURCE))
    np.testing.assert_array_equal(outputs["token_ids"], token_ids)
    np.testing.assert_allclose(outputs["scores"], scores, atol=1e-4)
    for signature in (serve, encode):
        for source, message in (
            ([[4, 12]], r"`source_ids` must hold token ids in \[0, 12\).*\[12\]"),
            ([[-1, 4]], r"`source_ids` must hold token ids in \[0, 12\).*\[-1\]"),
            ([[4, 5, 6, 7, 8]], r"`source_ids` must be at most 4 tokens long.*\[5\]"),
        ):
            with pytest.raises(tf.errors.InvalidArgumentError, match=message):
                signature(source_ids=tf.constant(source, tf.int32))
    encoded = encode(source_ids=tf.constant(TABLE_SOURCE[:1]))
    caches = {
        "self_attention_cache": encoded["self_attention_cache"],
        "cross_attention_cache": encoded["cross_attention_cache"],
        "source_mask": encoded["source_mask"],
    }
    logits = step(token_ids=tf.constant([[START_ID]]), index=tf.constant(0), **caches)["logits"]
    # The exported step excludes padding and start too, so an arg-max loop is safe.
    np.testing.assert_array_equal(np.asarray(logits)[0, [0, START_ID]], -1e9)
    assert np.asarray(logits)[0].argmax() == token_ids[0, 0]
    for token, index, message in (
        (12, 0, r"`token_ids` must hold token ids in \[0, 12\)"),
        (-1, 0, r"`token_ids` must hold token ids in \[0, 12\)"),
        (START_ID, 4, r"`index` must be in \[0, 4\)"),
        (START_ID, -1, r"`index` must be in \[0, 4\)"),
    ):
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            step(token_ids=tf.constant([[token]]), index=tf.constant(index), **caches)


def test_tflite_fails_closed_on_bad_ids_and_lengths(table_generator):
    # TFLite has no asserts: its GATHER refuses out-of-range indices,
    # negative ids included, so `invoke` raises RuntimeError.
    token_ids = table_generator.generate(TABLE_SOURCE[:1])
    runner = Interpreter(
        model_content=generation_tflite(table_generator, batch_size=1)
    ).get_signature_runner()
    np.testing.assert_array_equal(runner(source_ids=TABLE_SOURCE[:1])["token_ids"], token_ids)
    for source, message in (
        ([[4, 12]], "gather index out of bounds"),
        ([[-1, 4]], "gather index out of bounds"),
        ([[4, 5, 6, 7, 8]], "gather index out of bounds"),
    ):
        with pytest.raises(RuntimeError, match=message):
            runner(source_ids=np.array(source, "int32"))
    encode_buffer, step_buffer = decode_step_tflite(table_generator, batch_size=1, source_len=4)
    encoded = Interpreter(model_content=encode_buffer).get_signature_runner()(
        source_ids=TABLE_SOURCE[:1]
    )
    step = Interpreter(model_content=step_buffer).get_signature_runner()
    caches = {
        name: encoded[name]
        for name in ("self_attention_cache", "cross_attention_cache", "source_mask")
    }
    logits = step(
        token_ids=np.array([[START_ID]], "int32"), index=np.array(0, "int32"), **caches
    )["logits"]
    np.testing.assert_array_equal(logits[0, [0, START_ID]], -1e9)
    for token, index in ((12, 0), (-1, 0), (START_ID, 4), (START_ID, -1)):
        with pytest.raises(RuntimeError, match="gather index out of bounds"):
            step(token_ids=np.array([[token]], "int32"), index=np.array(index, "int32"), **caches)
