"""The helpers of `examples/demo.py` on a tiny untrained model (no training)."""

import datetime
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import keras_transformer_layers as ktl
from keras_transformer_layers.data import TextTokenizer
from keras_transformer_layers.generation import Generator
from tests import example_modules

_PATH = pathlib.Path(__file__).resolve().parents[1] / "examples" / "demo.py"
_TEXTS = ["14.08.1941", "Thursday, August 14, 1941", "1 May 2000"]


@pytest.fixture(scope="module")
def demo():
    return example_modules.load("demo")


@pytest.fixture(scope="module")
def tiny(demo):
    source = TextTokenizer(sorted(set("".join(_TEXTS))), name="source_tokenizer")
    target = TextTokenizer(list("0123456789-"), name="target_tokenizer")
    model = ktl.build_transformer(
        source.vocabulary_size,
        target.vocabulary_size,
        num_layers=2,
        model_dim=16,
        num_heads=2,
        intermediate_dim=32,
        dropout=0.0,
    )
    generator = Generator(model, max_new_tokens=6, start_id=2, end_id=3)
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


def test_options_are_described_and_checked(demo):
    args = demo.parse_args([])
    assert (args.verbose, args.epochs, args.min_exact_match) == (False, 10, 0.99)
    assert demo.parse_args(["--verbose"]).verbose
    for bad in (["--epochs", "0"], ["--num-train", "-5"], ["--min-exact-match", "nan"]):
        with pytest.raises(SystemExit):
            demo.parse_args(bad)
    # `--help` runs before TensorFlow loads and describes every option.
    result = subprocess.run(
        [sys.executable, str(_PATH), "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stderr == ""
    options = re.findall(r"^  (--[a-z-]+)", result.stdout, flags=re.M)
    assert len(options) == 12 and "--verbose" in options
    assert len(re.findall(r"\(default:\s", result.stdout)) == 12
    assert "14 forms" in result.stdout


def test_date_forms_are_listed(demo, capsys):
    demo.describe_date_forms([("a", "2000-01-01"), ("b", "1941-08-14"), ("c", "2099-12-31")])
    lines = capsys.readouterr().out.splitlines()
    assert "from 1941-08-14 to 2099-12-31" in lines[0] and "these 14 forms" in lines[0]
    forms = [line.strip() for line in lines[1:]]
    date_forms = example_modules.load("synthetic_translation").date_forms
    assert forms == list(date_forms(datetime.date(1941, 8, 14)))
    assert "the 14th of august, 1941" in forms and "14.08.1941" in forms
