"""examples/translate.py: SacreBLEU scoring with several references, and its options."""

import pytest
import sacrebleu

from tests import example_modules

translate = example_modules.load("translate")


def test_score_reads_every_reference_of_a_sentence():
    hypotheses = ["the cat sat on the mat today .", "a dog ran to the old red house ."]
    # The first sentence matches only its second reference; the second has one.
    references = [
        ["there is a cat on a mat", "the cat sat on the mat today ."],
        ["a dog ran to the old red house ."],
    ]
    bleu, signature = translate.score(hypotheses, references, lowercase=True)
    assert bleu == 100.0
    assert "nrefs:var" in signature and "case:lc" in signature and "tok:intl" in signature
    # Without the second reference it is not a perfect score.
    single, _ = translate.score(hypotheses, [refs[:1] for refs in references], lowercase=True)
    assert single < 60.0


def test_score_case_and_unicode_punctuation():
    hypothesis = ["¿ qué hora es en la casa de tom ?"]
    reference = [["¿Qué hora es en la casa de Tom?"]]
    # The intl tokenizer splits "¿" and "?" off, so spacing does not matter.
    assert translate.score(hypothesis, reference, lowercase=True)[0] == 100.0
    cased, signature = translate.score(hypothesis, reference, lowercase=False)
    assert "case:mixed" in signature
    expected = sacrebleu.metrics.BLEU(tokenize="intl").corpus_score(hypothesis, [reference[0]])
    assert cased == round(expected.score, 2) < 100.0


def test_options_default_per_dataset():
    spa = translate.parse_args(["--dataset", "spa_eng", "--corpus", "spa.txt"])
    ted = translate.parse_args(["--dataset", "ted", "--epochs", "2", "--tokenizer", "subword"])
    assert (spa.epochs, spa.sequence_length, spa.num_layers, spa.tokenizer) == (3, 20, 2, "word")
    assert (ted.epochs, ted.sequence_length, ted.num_layers, ted.tokenizer) == (2, 64, 4, "subword")
    with pytest.raises(SystemExit):
        translate.parse_args(["--dataset", "spa_eng"])
