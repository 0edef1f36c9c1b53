"""The helpers of `examples/demo.py` on a tiny untrained model (no training)."""

import importlib.util
import pathlib

import numpy as np
import pytest
import tensorflow as tf

import keras_transformer_layers as ktl
from keras_transformer_layers.data import TextTokenizer
from keras_transformer_layers.generation import Generator

_PATH = pathlib.Path(__file__).resolve().parents[1] / "examples" / "demo.py"
_TEXTS = ["14.08.1941", "Thursday, August 14, 1941", "1 May 2000"]


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("examples_demo", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny(demo):
    source = TextTokenizer(sorted(set("".join(_TEXTS))), name="source_tokenizer")
    target = TextTokenizer(list("0123456789-"), name="target_tokenizer")
    model = ktl.build_transformer(
        source.vocabulary_size, target.vocabulary_size,
        num_layers=2, model_dim=16, num_heads=2, intermediate_dim=32, dropout=0.0,
    )
    generator = Generator(model, max_length=6, start_id=2, end_id=3)
    return model, generator, source, target


def test_cross_attention_scores_ignore_source_padding(demo, tiny):
    model = tiny[0]
    source_ids = np.array([[2, 5, 6, 7, 3, 0, 0]])
    decoder_ids = np.array([[2, 4, 5]])
    scores = demo.cross_attention_scores(model, source_ids, decoder_ids)
    assert scores.shape == (2, 3, 7)  # (heads, target_len, source_len)
    np.testing.assert_allclose(scores.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(scores[..., 5:], 0.0, atol=1e-6)


def test_cross_attention_picture(demo, tiny, tmp_path):
    model, generator, source, target = tiny
    path = tmp_path / "cross_attention.png"
    scores = demo.draw_cross_attention(model, generator, source, target, _TEXTS[1], str(path))
    assert path.stat().st_size > 0
    assert scores.shape[0] == 2 and scores.shape[2] == len(_TEXTS[1]) + 2


def test_exports_translate_like_keras_in_fresh_processes(demo, tiny, tmp_path):
    model, generator, source, target = tiny
    paths = demo.export_artifacts(model, generator, source, target, str(tmp_path))
    keras_out, saved_model_out, tflite_out = demo.translate_everywhere(
        generator, source, target, paths, _TEXTS
    )
    assert len(keras_out) == len(_TEXTS)
    assert saved_model_out == keras_out
    assert tflite_out == keras_out
    # The TFLite side tokenizes in plain Python; it must match the tokenizer.
    expected = demo.translate_ids(generator, source, _TEXTS)
    assert expected.shape == (3, 6)
    assert tf.io.gfile.exists(paths["keras"])
