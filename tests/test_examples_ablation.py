"""examples/ablation_spa_eng.py: the subword entry of TOKENIZERS and the tie it selects."""

import argparse
import importlib.util
import pathlib

import numpy as np
import pytest
import tensorflow as tf

_PATH = pathlib.Path(__file__).resolve().parents[1] / "examples" / "ablation_spa_eng.py"
_spec = importlib.util.spec_from_file_location("examples_ablation_spa_eng", _PATH)
ablation = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ablation)

_PAIRS = [
    ("the cat is here .", "el gato está aquí ."),
    ("where is the dog ?", "¿ dónde está el perro ?"),
    ("i see the cat .", "veo al gato ."),
]
_ARGS = argparse.Namespace(
    vocabulary_size=30,
    num_layers=1,
    model_dim=16,
    num_heads=2,
    intermediate_dim=32,
    dropout=0.0,
    sequence_length=8,
)


@pytest.fixture(scope="module")
def tokenizers():
    english, spanish = zip(*_PAIRS, strict=True)
    pairs = tf.data.Dataset.from_tensor_slices((list(english), list(spanish)))
    return ablation.TOKENIZERS["subword"](pairs.repeat(4), _ARGS)


def test_subword_entry_is_one_vocabulary_for_both_languages(tokenizers):
    source, target = tokenizers
    assert source is target
    assert source.vocabulary_size == _ARGS.vocabulary_size
    # Both languages' sentences round-trip through the one vocabulary, [START]/[END] framed.
    sentences = [english for english, _ in _PAIRS] + [spanish for _, spanish in _PAIRS]
    ids = source(tf.constant(sentences)).numpy()
    assert (ids[:, 0] == ablation.ktl.data.START_ID).all()
    assert not (ids == ablation.ktl.data.OOV_ID).any()
    decoded = [text.decode("utf-8") for text in source.detokenize(ids).numpy()]
    assert decoded == sentences


@pytest.mark.parametrize(
    ("shared", "tie", "saved_matrices"), [(True, "all", 2), (False, "decoder", 1)]
)
def test_row_e_ties_all_three_matrices_on_a_shared_vocabulary(shared, tie, saved_matrices):
    size = _ARGS.vocabulary_size
    untied = ablation.row_model("d", size, size, shared, _ARGS)
    tied = ablation.row_model("e", size, size, shared, _ARGS)
    assert tied.get_config()["tie_embeddings"] == tie
    assert tied.logits_layer.embedding is tied.decoder_embedding
    assert (tied.encoder_embedding is tied.decoder_embedding) == shared
    matrix = size * _ARGS.model_dim
    assert untied.count_params() - tied.count_params() == saved_matrices * matrix
    # The tied model runs: logits over the shared vocabulary for every target position.
    inputs = {
        "encoder_inputs": np.array([[2, 5, 6, 3]], "int32"),
        "decoder_inputs": np.array([[2, 7, 8]], "int32"),
    }
    assert tuple(tied(inputs).shape) == (1, 3, size)
