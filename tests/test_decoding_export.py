"""Generation exported as a SavedModel and as TFLite gives the Keras tokens."""

import json
import subprocess
import sys

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from keras_transformer_layers.decoding import (
    TranslationGenerator,
    decode_step_tflite,
    export_generation_saved_model,
    generation_tflite,
)
from keras_transformer_layers.data.tokenizer import END_ID, START_ID
from tests.decoding_fixtures import sources, trained_model  # noqa: F401

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
