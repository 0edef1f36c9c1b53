"""TranslationGenerator on a trained reversal model, against uncached references."""

import doctest

import keras
import numpy as np
import pytest

import keras_transformer_layers as ktl
from keras_transformer_layers.data.tokenizer import END_ID, START_ID
from keras_transformer_layers.decoding import TranslationGenerator, length_penalty
from tests.decoding_fixtures import (
    recompute_greedy,
    sequence_log_prob,
    sources,
    trained_model,  # noqa: F401  (pytest fixture)
)

MAX_LENGTH = 10


@pytest.fixture(scope="module")
def greedy(trained_model):
    """The greedy generator and its output on `sources(4)`, shared by the tests."""
    generator = TranslationGenerator(trained_model, max_length=MAX_LENGTH)
    token_ids, scores = generator.generate(sources(4), return_scores=True)
    return generator, token_ids, scores


@pytest.mark.parametrize("batch_size", [1, 4], ids=["batch1", "batch4_mixed_lengths"])
def test_cached_greedy_matches_full_recompute(trained_model, greedy, batch_size):
    source = sources(batch_size)
    generator = greedy[0]
    token_ids, scores = generator.generate(source, return_scores=True)
    expected = recompute_greedy(trained_model, source, MAX_LENGTH)
    np.testing.assert_array_equal(token_ids, expected)
    np.testing.assert_allclose(
        scores, sequence_log_prob(trained_model, source, token_ids), atol=1e-4
    )
    # The model has learned something: most rows are the reversed source + end.
    lengths = (source != 0).sum(1)
    correct = [
        token_ids[row, : lengths[row] + 1].tolist()
        == source[row, : lengths[row]][::-1].tolist() + [END_ID]
        for row in range(batch_size)
    ]
    assert np.mean(correct) >= 0.5, (source, token_ids)


def test_jit_compiled_loop_matches(trained_model, greedy):
    source = sources(4)
    plain = greedy[1]
    jit = TranslationGenerator(trained_model, max_length=MAX_LENGTH, jit_compile=True)
    np.testing.assert_array_equal(jit.generate(source), plain)


def test_end_token_stops_each_row_and_max_length_is_respected(trained_model, greedy):
    source = sources(4)
    token_ids = greedy[1]
    end_positions = []
    for row in token_ids:
        ends = np.flatnonzero(row == END_ID)
        assert len(ends) == 1, row  # exactly one end token
        assert np.all(row[ends[0] + 1 :] == 0), row  # padding after it
        assert np.all(row[: ends[0]] != 0), row  # no padding before it
        end_positions.append(ends[0])
    # Rows stopped at different steps: the others went on after the first stopped.
    assert len(set(end_positions)) > 1, end_positions
    # Too short a budget: rows are cut at max_length, no end token.
    short = TranslationGenerator(trained_model, max_length=2).generate(source)
    assert short.shape == (4, 2)
    np.testing.assert_array_equal(short, recompute_greedy(trained_model, source, 2))


def test_beam_search_with_one_beam_is_greedy(trained_model, greedy):
    source = sources(4)
    _, greedy_ids, greedy_scores = greedy
    beam, beam_scores = TranslationGenerator(
        trained_model, max_length=MAX_LENGTH, num_beams=1, length_penalty=0.0
    ).generate(source, return_scores=True)
    np.testing.assert_array_equal(beam, greedy_ids)
    np.testing.assert_allclose(beam_scores, greedy_scores, atol=1e-5)


def test_four_beams_find_at_least_greedy_log_prob(trained_model):
    # A source longer than any seen in training makes the model unsure.
    source = np.concatenate([sources(4), np.full((4, 2), 9, "int32")], axis=1)
    greedy = TranslationGenerator(trained_model, max_length=12).generate(source)
    beam, beam_scores = TranslationGenerator(
        trained_model, max_length=12, num_beams=4, length_penalty=0.0
    ).generate(source, return_scores=True)
    greedy_log_prob = sequence_log_prob(trained_model, source, greedy)
    beam_log_prob = sequence_log_prob(trained_model, source, beam)
    np.testing.assert_allclose(beam_scores, beam_log_prob, atol=1e-4)
    assert np.all(beam_log_prob >= greedy_log_prob - 1e-5), (beam_log_prob, greedy_log_prob)


def test_beam_scores_follow_the_length_penalty_formula(trained_model):
    source = sources(4)
    chosen = {}
    for alpha in (0.0, 1.0):
        beam, scores = TranslationGenerator(
            trained_model, max_length=MAX_LENGTH, num_beams=3, length_penalty=alpha
        ).generate(source, return_scores=True)
        lengths = (beam != 0).sum(1)
        expected = sequence_log_prob(trained_model, source, beam) / ((5.0 + lengths) / 6.0) ** alpha
        np.testing.assert_allclose(scores, expected, atol=1e-4)
        chosen[alpha] = lengths
    # The same final beams ranked with a larger alpha never pick a shorter one.
    assert np.all(chosen[1.0] >= chosen[0.0])


def test_length_penalty_changes_the_ranking_as_the_formula_says():
    assert length_penalty(7, 1.0) == 2.0
    assert length_penalty(1, 0.6) == 1.0
    # A short beam (-2.0 over 2 tokens) and a long one (-2.6 over 6 tokens).
    log_probs, lengths = np.array([-2.0, -2.6]), np.array([2, 6])
    plain = log_probs / np.asarray(length_penalty(lengths, 0.0))
    penalized = log_probs / np.asarray(length_penalty(lengths, 1.0))
    np.testing.assert_allclose(penalized, [-2.0 / (7 / 6), -2.6 / (11 / 6)], atol=1e-6)
    assert plain.argmax() == 0 and penalized.argmax() == 1


@pytest.mark.parametrize(
    "settings",
    [{"top_k": 1, "temperature": 0.7, "seed": 3}, {"top_p": 1e-6, "temperature": 1.5, "seed": 4}],
    ids=["top_k_1", "top_p_near_0"],
)
def test_degenerate_sampling_is_greedy(trained_model, greedy, settings):
    source = sources(4)
    sampled = TranslationGenerator(
        trained_model, max_length=MAX_LENGTH, sample=True, **settings
    ).generate(source)
    np.testing.assert_array_equal(sampled, greedy[1])


def test_fixed_seed_reproduces_the_sample(trained_model, greedy):
    source = sources(4)
    settings = {"max_length": MAX_LENGTH, "sample": True, "temperature": 5.0, "top_p": 0.95}
    first = TranslationGenerator(trained_model, seed=7, **settings)
    sample = first.generate(source)
    np.testing.assert_array_equal(first.generate(source), sample)
    np.testing.assert_array_equal(first.generate(source, seed=7), sample)
    assert not np.array_equal(first.generate(source, seed=8), sample)
    # A new generator with the same settings draws the same sample.
    np.testing.assert_array_equal(
        TranslationGenerator.from_config(first.get_config(), trained_model).generate(source),
        sample,
    )
    # Hot sampling leaves greedy's path.
    assert not np.array_equal(sample, greedy[1])


def test_top_k_samples_only_among_the_k_best(trained_model):
    source = sources(4)
    sampled = TranslationGenerator(
        trained_model, max_length=MAX_LENGTH, sample=True, top_k=2, temperature=10.0, seed=0
    ).generate(source)
    decoder_inputs = np.concatenate([np.full((4, 1), START_ID, "int32"), sampled[:, :-1]], axis=1)
    logits = np.asarray(
        trained_model({"encoder_inputs": source, "decoder_inputs": decoder_inputs})
    )
    rank = (logits > np.take_along_axis(logits, sampled[..., None], -1)).sum(-1)
    live = np.cumsum(sampled == END_ID, axis=1) - (sampled == END_ID) == 0  # up to the end token
    assert np.all(rank[live] <= 1)


def test_generator_on_a_model_composed_of_the_layers():
    keras.utils.set_random_seed(1)
    source_ids = keras.Input((None,), dtype="int32")
    target_ids = keras.Input((None,), dtype="int32")
    x = ktl.PositionalEmbedding(12, 16, name="src_embed")(source_ids)
    x = ktl.TransformerEncoder(1, 2, 32, normalize_first=True, name="enc")(x)
    y = ktl.PositionalEmbedding(12, 16, name="tgt_embed")(target_ids)
    y = ktl.TransformerDecoder(1, 2, 32, normalize_first=True, name="dec")(y, x)
    logits = keras.layers.Dense(12, name="head")(y)
    model = keras.Model({"encoder_inputs": source_ids, "decoder_inputs": target_ids}, logits)
    names = {
        "encoder_embedding": "src_embed",
        "encoder": "enc",
        "decoder_embedding": "tgt_embed",
        "decoder": "dec",
        "logits": "head",
    }
    generator = TranslationGenerator(model, max_length=6, end_id=11, layer_names=names)
    source = np.array([[3, 4, 5, 0], [6, 7, 8, 9]], "int32")
    np.testing.assert_array_equal(
        generator.generate(source), recompute_greedy(model, source, 6, end_id=11)
    )
    with pytest.raises(ValueError, match="no layer named 'encoder_embedding'"):
        TranslationGenerator(model)


def test_get_config_round_trip(trained_model):
    generator = TranslationGenerator(
        trained_model, max_length=7, num_beams=3, length_penalty=1.0, end_id=END_ID
    )
    config = generator.get_config()
    revived = TranslationGenerator.from_config(config, trained_model)
    assert revived.get_config() == config
    assert config["num_beams"] == 3 and config["max_length"] == 7


@pytest.mark.parametrize(
    "settings, argument",
    [
        ({"num_beams": 0}, "num_beams=0"),
        ({"top_p": 0.0, "sample": True}, "top_p=0.0"),
        ({"top_p": 1.5, "sample": True}, "top_p=1.5"),
        ({"max_length": 0}, "max_length=0"),
        ({"temperature": 0.0}, "temperature=0.0"),
        ({"temperature": -1.0}, "temperature=-1.0"),
        ({"top_k": 0, "sample": True}, "top_k=0"),
        ({"length_penalty": -0.5}, "length_penalty=-0.5"),
        ({"sample": True, "num_beams": 2}, "num_beams=2"),
        ({"top_k": 5}, "top_k=5"),
    ],
    ids=[
        "num_beams_0", "top_p_0", "top_p_above_1", "max_length_0", "temperature_0",
        "temperature_negative", "top_k_0", "length_penalty_negative",
        "sample_with_beams", "top_k_without_sample",
    ],
)
def test_bad_settings_name_the_argument(settings, argument):
    model = ktl.build_transformer(8, 8, num_layers=1, model_dim=8, num_heads=2, intermediate_dim=8)
    name = argument.split("=")[0]
    with pytest.raises(ValueError, match=rf"`{name}`[\s\S]*Received: [\s\S]*{argument}"):
        TranslationGenerator(model, **settings)


def test_public_decoding_names_are_documented():
    from keras_transformer_layers import decoding

    assert ktl.decoding is decoding
    for name in set(decoding.__all__) - {"DEFAULT_LAYER_NAMES"}:
        doc = getattr(decoding, name).__doc__
        for section in ("Args:", "Returns:", "Example:"):
            assert section in doc, (name, section)
    for name in ("TranslationGenerator", "length_penalty"):
        tests = doctest.DocTestFinder(recurse=False).find(
            getattr(decoding, name), name, globs={"np": np, "keras_transformer_layers": ktl}
        )
        runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
        for test in tests:
            assert test.examples, name
            runner.run(test)
        assert runner.summarize(verbose=False).failed == 0, name
