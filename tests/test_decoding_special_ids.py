"""Decoding never emits the padding or start id, so cached decoding equals the full model.

The full model masks a padding id inside the target; a key/value cache keeps
every written position as a real token. A generated padding id would make the
two disagree, so greedy, beam search and sampling all exclude the padding
and start ids. The models here are untrained and their output bias strongly
favours id 0 and the start id (by about 6 logits), so without the exclusion
every step would pick one of them.
"""

import numpy as np
import pytest

from keras_transformer_layers.data.tokenizer import END_ID, START_ID
from keras_transformer_layers.decoding import TranslationGenerator
from tests.decoding_fixtures import (
    assert_no_special_ids_before_end,
    cached_step_logits,
    logits_of,
    recompute_beam,
    recompute_greedy,
    recompute_sample,
    sampling_logits,
    sequence_log_prob,
    small_model,
)

MAX_LENGTH = 8
SOURCE = np.array(
    [[4, 5, 6, 0, 0], [7, 8, 9, 10, 11], [5, 5, 0, 0, 0], [11, 10, 9, 8, 0]], "int32"
)
JIT = pytest.mark.parametrize("jit_compile", [False, True], ids=["eager", "xla"])


@pytest.fixture(scope="module")
def biased_model():
    return small_model()


def _assert_cached_equals_full(generator, model, token_ids, start_id=START_ID, end_id=END_ID):
    """The cached logits after every generated prefix equal the full model's on it."""
    decoder_inputs = np.concatenate(
        [np.full((len(token_ids), 1), start_id, "int32"), token_ids[:, :-1]], axis=1
    )
    cached = cached_step_logits(generator, SOURCE, decoder_inputs)
    full = logits_of(model, SOURCE, decoder_inputs)
    # Up to and including the step that produced the end token.
    live = np.cumsum(token_ids == end_id, axis=1) - (token_ids == end_id) == 0
    np.testing.assert_allclose(cached[live], full[live], atol=1e-4)


def test_the_bias_favours_padding_and_start(biased_model):
    logits = logits_of(biased_model, SOURCE, np.full((4, 1), START_ID))[:, -1]
    assert set(logits.argmax(-1)) <= {0, START_ID}
    assert np.all(np.sort(logits, -1)[:, -3] < logits[:, [0, START_ID]].min(-1) - 4)


@JIT
def test_greedy_excludes_padding_and_start_and_equals_full_recompute(biased_model, jit_compile):
    generator = TranslationGenerator(biased_model, max_length=MAX_LENGTH, jit_compile=jit_compile)
    token_ids, scores = generator.generate(SOURCE, return_scores=True)
    np.testing.assert_array_equal(token_ids, recompute_greedy(biased_model, SOURCE, MAX_LENGTH))
    assert_no_special_ids_before_end(token_ids)
    # Scores stay the model's own log-probabilities (padding and start included
    # in the softmax).
    np.testing.assert_allclose(
        scores, sequence_log_prob(biased_model, SOURCE, token_ids), atol=1e-4
    )
    _assert_cached_equals_full(generator, biased_model, token_ids)


@pytest.mark.parametrize(
    "jit_compile, alpha", [(False, 0.6), (True, 0.0)], ids=["eager_alpha_0.6", "xla_alpha_0"]
)
def test_beam_search_excludes_padding_and_start_and_equals_full_recompute(
    biased_model, jit_compile, alpha
):
    generator = TranslationGenerator(
        biased_model, max_length=MAX_LENGTH, num_beams=3, length_penalty=alpha,
        jit_compile=jit_compile,
    )
    token_ids, scores = generator.generate(SOURCE, return_scores=True)
    expected_ids, expected_scores = recompute_beam(biased_model, SOURCE, MAX_LENGTH, 3, alpha)
    np.testing.assert_array_equal(token_ids, expected_ids)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-4)
    # Finished beams went on with padding only.
    assert_no_special_ids_before_end(token_ids)
    _assert_cached_equals_full(generator, biased_model, token_ids)


@pytest.mark.parametrize(
    "jit_compile, settings",
    [
        (False, {"temperature": 1.0}),
        (False, {"temperature": 3.0, "top_k": 5}),
        (False, {"temperature": 2.0, "top_p": 0.9}),
        (False, {"temperature": 2.0, "top_k": 12, "top_p": 0.95}),
        (True, {"temperature": 2.0, "top_k": 12, "top_p": 0.95}),
    ],
    ids=["plain", "top_k", "top_p", "top_k_vocabulary_and_top_p", "xla"],
)
def test_sampling_excludes_padding_and_start_and_equals_full_recompute(
    biased_model, jit_compile, settings
):
    generator = TranslationGenerator(
        biased_model, max_length=MAX_LENGTH, sample=True, seed=11, jit_compile=jit_compile,
        **settings,
    )
    token_ids = generator.generate(SOURCE)
    assert_no_special_ids_before_end(token_ids)
    _assert_cached_equals_full(generator, biased_model, token_ids)
    if not jit_compile:
        expected = recompute_sample(biased_model, SOURCE, MAX_LENGTH, 11, **settings)
        np.testing.assert_array_equal(token_ids, expected)
    # XLA draws other samples from the same seed: each token must still lie in
    # the filtered support of the full model's logits on its prefix.
    decoder_inputs = np.concatenate([np.full((4, 1), START_ID), token_ids[:, :-1]], axis=1)
    logits = logits_of(biased_model, SOURCE, decoder_inputs)
    logits[..., [0, START_ID]] = -np.inf
    support = np.isfinite(sampling_logits(logits, **settings))
    chosen = np.take_along_axis(support, token_ids[..., None], axis=-1)[..., 0]
    live = np.cumsum(token_ids == END_ID, axis=1) - (token_ids == END_ID) == 0
    assert chosen[live].all(), token_ids


def test_hot_sampling_never_draws_padding_or_start(biased_model):
    # 64 rows x 8 steps at temperature 50: every allowed id is drawn, the two
    # excluded ones (the most likely under the model) never.
    source = np.repeat(SOURCE, 16, axis=0)
    generator = TranslationGenerator(
        biased_model, max_length=MAX_LENGTH, sample=True, temperature=50.0
    )
    for seed in (0, 1, 2):
        token_ids = generator.generate(source, seed=seed)
        assert_no_special_ids_before_end(token_ids)
        assert set(np.unique(token_ids)) == set(range(12)) - {START_ID}, seed


def test_tiny_temperature_is_greedy_not_nan(biased_model):
    greedy = TranslationGenerator(biased_model, max_length=MAX_LENGTH).generate(SOURCE)
    for temperature in (1e-30, 1.2e-38):
        sampled = TranslationGenerator(
            biased_model, max_length=MAX_LENGTH, sample=True, temperature=temperature, seed=0
        ).generate(SOURCE)
        np.testing.assert_array_equal(sampled, greedy)


def test_huge_temperature_still_excludes_padding_and_start(biased_model):
    # Dividing the exclusion's -1e9 by 1e12 would bring it next to the others.
    token_ids = TranslationGenerator(
        biased_model, max_length=MAX_LENGTH, sample=True, temperature=1e12, seed=0
    ).generate(np.repeat(SOURCE, 8, axis=0))
    assert_no_special_ids_before_end(token_ids)


def test_other_start_id_is_excluded_too():
    # Id 1 as the start id, the bias favouring it and padding.
    model = small_model(favoured=(0, 1))
    for settings in ({}, {"num_beams": 3}, {"sample": True, "seed": 3}):
        generator = TranslationGenerator(model, max_length=MAX_LENGTH, start_id=1, **settings)
        token_ids = generator.generate(SOURCE)
        assert_no_special_ids_before_end(token_ids, start_id=1)
        _assert_cached_equals_full(generator, model, token_ids, start_id=1)
    np.testing.assert_array_equal(
        TranslationGenerator(model, max_length=MAX_LENGTH, start_id=1).generate(SOURCE),
        recompute_greedy(model, SOURCE, MAX_LENGTH, start_id=1),
    )


@pytest.mark.parametrize("num_beams", [1, 3], ids=["greedy", "beams"])
def test_without_end_id_every_row_runs_to_max_length(biased_model, num_beams):
    generator = TranslationGenerator(
        biased_model, max_length=MAX_LENGTH, end_id=None, num_beams=num_beams
    )
    token_ids = generator.generate(SOURCE)
    assert not np.isin(token_ids, [0, START_ID]).any(), token_ids
    if num_beams == 1:
        expected = recompute_greedy(biased_model, SOURCE, MAX_LENGTH, end_id=None)
    else:
        expected = recompute_beam(biased_model, SOURCE, MAX_LENGTH, 3, 0.6, end_id=None)[0]
    np.testing.assert_array_equal(token_ids, expected)
    _assert_cached_equals_full(generator, biased_model, token_ids, end_id=None)


def test_model_without_padding_mask_attends_to_every_source_id():
    # `mask_zero=False`: the full model attends to source id 0 like any other,
    # so the generator must not mask it either.
    model = small_model(mask_zero=False, favoured=(), seed=2)
    generator = TranslationGenerator(model, max_length=MAX_LENGTH)
    token_ids = generator.generate(SOURCE)
    _assert_cached_equals_full(generator, model, token_ids)
    np.testing.assert_array_equal(token_ids, recompute_greedy(model, SOURCE, MAX_LENGTH))
