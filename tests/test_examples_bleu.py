import importlib.util
import math
import pathlib

import keras_hub
import pytest
import tensorflow as tf

_PATH = pathlib.Path(__file__).resolve().parents[1] / "examples" / "bleu.py"
_spec = importlib.util.spec_from_file_location("examples_bleu", _PATH)
bleu = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bleu)


def test_hand_values():
    sentence = "a b c d e".split()
    assert bleu.corpus_bleu([sentence], [[sentence]]) == pytest.approx(100.0)
    # Hypothesis 'a b c d' against 'a b c d e f g h': all precisions 1,
    # brevity penalty exp(1 - 8/4).
    assert bleu.corpus_bleu([list("abcd")], [[list("abcdefgh")]]) == pytest.approx(
        100 * math.exp(-1.0)
    )
    assert bleu.corpus_bleu([list("xyzw")], [[list("abcd")]]) == 0.0


def test_matches_keras_hub_bleu():
    hypotheses = ["the cat sat on the mat", "a dog is here now", "hello there my good friend"]
    references = [
        ["the cat is on the mat", "there is a cat on the mat"],
        ["a dog is here", "the dog is here now"],
        ["hello my good friend", "hi there my friend"],
    ]
    ours = bleu.corpus_bleu(
        [h.split() for h in hypotheses], [[r.split() for r in refs] for refs in references]
    )
    reference = keras_hub.metrics.Bleu(tokenizer=lambda x: tf.strings.split(x))
    reference.update_state(tf.ragged.constant(references), tf.constant(hypotheses))
    assert ours == pytest.approx(100 * float(reference.result()), rel=1e-5)


def test_length_mismatch():
    with pytest.raises(ValueError, match=r"Received: len\(hypotheses\)=1, len\(references\)=0"):
        bleu.corpus_bleu([["a"]], [])
