"""`Generator` on a trained reversal model and on small models, against uncached references."""

import doctest

import keras
import numpy as np
import pytest
from keras import ops

import keras_transformer_layers as ktl
from keras_transformer_layers import generation
from keras_transformer_layers.generation import BeamSearch
from keras_transformer_layers.generation import Generator
from keras_transformer_layers.generation import Greedy
from keras_transformer_layers.generation import Sampling
from keras_transformer_layers.generation import length_penalty
from keras_transformer_layers.generation import strategies
from keras_transformer_layers.models import CachedDecoding
from keras_transformer_layers.tokens import END_ID
from keras_transformer_layers.tokens import PADDING_ID
from keras_transformer_layers.tokens import START_ID
from tests.generation_fixtures import full_logits
from tests.generation_fixtures import interface_of
from tests.generation_fixtures import recompute_greedy
from tests.generation_fixtures import sequence_log_prob
from tests.generation_fixtures import small_model
from tests.generation_fixtures import sources
from tests.generation_fixtures import trained_model  # noqa: F401  (pytest fixture)

pytestmark = pytest.mark.backend_neutral

MAX_NEW_TOKENS = 10


@pytest.fixture(scope="module")
def greedy(trained_model):
    """The greedy generator and its output on `sources(4)`, shared by the tests."""
    generator = Generator(interface_of(trained_model), max_new_tokens=MAX_NEW_TOKENS)
    token_ids, scores = generator.generate(sources(4), return_scores=True)
    return generator, token_ids, scores


@pytest.mark.parametrize("batch_size", [1, 4], ids=["batch1", "batch4_mixed_lengths"])
def test_cached_greedy_matches_full_recompute(trained_model, greedy, batch_size):
    source = sources(batch_size)
    generator = greedy[0]
    token_ids, scores = generator.generate(source, return_scores=True)
    expected, expected_scores = recompute_greedy(trained_model, MAX_NEW_TOKENS + 1, source=source)
    np.testing.assert_array_equal(token_ids, expected)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-4)
    np.testing.assert_allclose(
        scores, sequence_log_prob(trained_model, token_ids, source=source), atol=1e-4
    )
    # The model has learned something: most rows are the reversed source + end.
    lengths = (source != 0).sum(1)
    correct = [
        token_ids[row, : lengths[row] + 1].tolist()
        == source[row, : lengths[row]][::-1].tolist() + [END_ID]
        for row in range(batch_size)
    ]
    assert np.mean(correct) >= 0.5, (source, token_ids)


@pytest.mark.skipif(keras.config.backend() != "tensorflow", reason="TensorFlow-only: XLA")
def test_jit_compiled_loop_matches(trained_model, greedy):
    jit = Generator(interface_of(trained_model), max_new_tokens=MAX_NEW_TOKENS, jit_compile=True)
    np.testing.assert_array_equal(jit.generate(sources(4)), greedy[1])


def test_end_token_stops_each_row_and_max_new_tokens_is_respected(trained_model, greedy):
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
    # Too short a budget: rows are cut after max_new_tokens, no end token.
    short = Generator(interface_of(trained_model), max_new_tokens=2).generate(source)
    assert short.shape == (4, 2)
    np.testing.assert_array_equal(short, recompute_greedy(trained_model, 3, source=source)[0])


def test_beam_search_with_one_beam_is_greedy(trained_model, greedy):
    _, greedy_ids, greedy_scores = greedy
    beam, beam_scores = Generator(
        interface_of(trained_model),
        BeamSearch(num_beams=1, length_penalty=0.0),
        max_new_tokens=MAX_NEW_TOKENS,
    ).generate(sources(4), return_scores=True)
    np.testing.assert_array_equal(beam, greedy_ids)
    np.testing.assert_allclose(beam_scores, greedy_scores, atol=1e-5)


def test_four_beams_find_at_least_greedy_log_prob(trained_model):
    # A source longer than any seen in training makes the model unsure.
    source = np.concatenate([sources(4), np.full((4, 2), 9, "int32")], axis=1)
    model = interface_of(trained_model)
    greedy_ids = Generator(model, max_new_tokens=12).generate(source)
    beam, beam_scores = Generator(
        model, BeamSearch(num_beams=4, length_penalty=0.0), max_new_tokens=12
    ).generate(source, return_scores=True)
    greedy_log_prob = sequence_log_prob(trained_model, greedy_ids, source=source)
    beam_log_prob = sequence_log_prob(trained_model, beam, source=source)
    np.testing.assert_allclose(beam_scores, beam_log_prob, atol=1e-4)
    assert np.all(beam_log_prob >= greedy_log_prob - 1e-5), (beam_log_prob, greedy_log_prob)


def test_beam_scores_follow_the_length_penalty_formula(trained_model):
    source = sources(4)
    chosen = {}
    for alpha in (0.0, 1.0):
        beam, scores = Generator(
            interface_of(trained_model),
            BeamSearch(num_beams=3, length_penalty=alpha),
            max_new_tokens=MAX_NEW_TOKENS,
        ).generate(source, return_scores=True)
        lengths = (beam != 0).sum(1)
        expected = (
            sequence_log_prob(trained_model, beam, source=source) / ((5.0 + lengths) / 6.0) ** alpha
        )
        np.testing.assert_allclose(scores, expected, atol=1e-4)
        chosen[alpha] = lengths
    # The same final beams ranked with a larger alpha never pick a shorter one.
    assert np.all(chosen[1.0] >= chosen[0.0])


def test_length_penalty_changes_the_ranking_as_the_formula_says():
    assert length_penalty(7, 1.0) == 2.0
    assert length_penalty(1, 0.6) == 1.0
    # A short beam (-2.0 over 2 tokens) and a long one (-2.6 over 6 tokens).
    log_probs, lengths = np.array([-2.0, -2.6]), np.array([2, 6])
    plain = log_probs / ops.convert_to_numpy(length_penalty(ops.convert_to_tensor(lengths), 0.0))
    penalized = log_probs / ops.convert_to_numpy(
        length_penalty(ops.convert_to_tensor(lengths), 1.0)
    )
    np.testing.assert_allclose(penalized, [-2.0 / (7 / 6), -2.6 / (11 / 6)], atol=1e-6)
    assert plain.argmax() == 0 and penalized.argmax() == 1


@pytest.mark.parametrize(
    "settings",
    [{"top_k": 1, "temperature": 0.7, "seed": 3}, {"top_p": 1e-6, "temperature": 1.5, "seed": 4}],
    ids=["top_k_1", "top_p_near_0"],
)
def test_degenerate_sampling_is_greedy(trained_model, greedy, settings):
    sampled = Generator(
        interface_of(trained_model), Sampling(**settings), max_new_tokens=MAX_NEW_TOKENS
    ).generate(sources(4))
    np.testing.assert_array_equal(sampled, greedy[1])


def test_fixed_seed_reproduces_the_sample(trained_model, greedy):
    source = sources(4)
    strategy = Sampling(temperature=5.0, top_p=0.95, seed=7)
    first = Generator(interface_of(trained_model), strategy, max_new_tokens=MAX_NEW_TOKENS)
    sample = first.generate(source)
    np.testing.assert_array_equal(first.generate(source), sample)
    np.testing.assert_array_equal(first.generate(source, seed=7), sample)
    assert not np.array_equal(first.generate(source, seed=8), sample)
    # A new generator with the same settings draws the same sample.
    np.testing.assert_array_equal(
        Generator.from_config(first.get_config(), interface_of(trained_model)).generate(source),
        sample,
    )
    # Hot sampling leaves greedy's path.
    assert not np.array_equal(sample, greedy[1])


def test_every_step_draws_differently_and_a_seed_repeats():
    # 64 rows over 50 equally likely ids: two independent draws agree on
    # about one row; the same (seed, step) agrees on all of them.
    logits = np.zeros((64, 50), "float32")

    def draw(seed, step):
        return ops.convert_to_numpy(strategies.draw(logits, seed, step))

    np.testing.assert_array_equal(draw(3, 1), draw(3, 1))
    for other in (draw(3, 2), draw(4, 1), draw(-3, 1)):
        assert np.mean(other == draw(3, 1)) < 0.2
    # Uniform logits give every id: the draw follows the distribution.
    assert len(np.unique(np.concatenate([draw(3, step) for step in range(8)]))) > 45


def test_top_k_samples_only_among_the_k_best(trained_model):
    source = sources(4)
    sampled = Generator(
        interface_of(trained_model),
        Sampling(top_k=2, temperature=10.0, seed=0),
        max_new_tokens=MAX_NEW_TOKENS,
    ).generate(source)
    decoder_inputs = np.concatenate([np.full((4, 1), START_ID, "int32"), sampled[:, :-1]], axis=1)
    logits = full_logits(trained_model, source, decoder_inputs)
    # Top-k applies among the ids decoding may emit: padding and start never are.
    logits[..., [PADDING_ID, START_ID]] = -np.inf
    rank = (logits > np.take_along_axis(logits, sampled[..., None], -1)).sum(-1)
    live = np.cumsum(sampled == END_ID, axis=1) - (sampled == END_ID) == 0  # up to the end token
    assert np.all(rank[live] <= 1)


def test_generator_on_a_pre_norm_model_composed_of_the_layers():
    keras.utils.set_random_seed(1)
    source_ids = keras.Input((None,), dtype="int32", name="encoder_inputs")
    target_ids = keras.Input((None,), dtype="int32", name="decoder_inputs")
    source_embedding = ktl.PositionalEmbedding(12, 16)
    encoder = ktl.TransformerEncoder(1, 2, 32, normalize_first=True)
    target_embedding = ktl.PositionalEmbedding(12, 16)
    decoder = ktl.TransformerDecoder(1, 2, 32, normalize_first=True)
    head = keras.layers.Dense(12)
    memory = encoder(source_embedding(source_ids))
    model = keras.Model(
        {"encoder_inputs": source_ids, "decoder_inputs": target_ids},
        head(decoder(target_embedding(target_ids), memory)),
    )
    interface = CachedDecoding(
        encoder_embedding=source_embedding,
        encoder=encoder,
        decoder_embedding=target_embedding,
        decoder=decoder,
        logits=head,
    )
    generator = Generator(interface, max_new_tokens=6, end_id=11)
    source = np.array([[3, 4, 5, 0], [6, 7, 8, 9]], "int32")
    np.testing.assert_array_equal(
        generator.generate(source), recompute_greedy(model, 7, source=source, end_id=11)[0]
    )


@pytest.mark.parametrize("kind", ["seq2seq", "decoder_only"])
def test_max_length_counts_decoder_positions_and_cache_slots(kind):
    # `max_length` is the decoded sequence's positions, the start token or
    # the prompt included, and the cache slots; an encoder-decoder model
    # generates `max_new_tokens = max_length - 1` tokens. (It meant the
    # generated tokens for one kind of model and the sequence for the other.)
    _, interface = small_model(favoured=(), seed=4, decoder_only=kind == "decoder_only")
    inputs = np.array([[4, 5, 6, 0], [7, 8, 0, 0]], "int32")
    slots = []
    initial_cache = interface.initial_cache

    def recording(batch_size, max_length):
        slots.append(max_length)
        return initial_cache(batch_size, max_length)

    interface.initial_cache = recording
    try:
        generator = Generator(interface, "greedy", max_length=7, end_id=None)
        token_ids = generator.generate(inputs)
    finally:
        del interface.initial_cache
    assert (generator.max_length, generator.max_new_tokens, slots) == (7, 6, [7])
    assert token_ids.shape == ((2, 6) if kind == "seq2seq" else (2, 7))
    if kind == "seq2seq":
        same = Generator(interface, "greedy", max_new_tokens=6, end_id=None)
        assert same.max_length == 7
        np.testing.assert_array_equal(same.generate(inputs), token_ids)


def test_max_length_and_max_new_tokens_are_refused_where_they_do_not_apply():
    _, seq2seq = small_model(favoured=(), seed=4)
    _, lm = small_model(favoured=(), seed=4, decoder_only=True)
    with pytest.raises(
        ValueError, match=r"Give `max_length`[\s\S]*Received: max_length=7, max_new_tokens=6"
    ):
        Generator(seq2seq, max_length=7, max_new_tokens=6)
    with pytest.raises(
        ValueError, match=r"`max_new_tokens` is for encoder-decoder[\s\S]*max_new_tokens=4"
    ):
        Generator(lm, max_new_tokens=4)
    for interface in (seq2seq, lm):
        with pytest.raises(ValueError, match=r"`max_length` must be at least 2[\s\S]*=1"):
            Generator(interface, max_length=1)
    for bad in (0, 2.0, True):
        with pytest.raises(ValueError, match=rf"`max_new_tokens`[\s\S]*max_new_tokens={bad!r}"):
            Generator(seq2seq, max_new_tokens=bad)
    assert Generator(seq2seq).max_length == Generator(lm).max_length == 32


@pytest.mark.parametrize(
    "strategy",
    [
        Greedy(),
        BeamSearch(num_beams=3, length_penalty=1.0),
        Sampling(temperature=0.5, top_k=4, top_p=0.9, seed=5),
    ],
    ids=["greedy", "beam_search", "sampling"],
)
def test_get_config_round_trip(trained_model, strategy):
    generator = Generator(interface_of(trained_model), strategy, max_length=7, end_id=END_ID)
    config = generator.get_config()
    revived = Generator.from_config(config, interface_of(trained_model))
    assert revived.get_config() == config
    assert type(revived.strategy) is type(strategy)
    assert revived.strategy.get_config() == strategy.get_config()
    assert config["max_length"] == 7
    # The strategy alone round-trips through Keras serialization.
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(strategy))
    assert type(restored) is type(strategy) and restored.get_config() == strategy.get_config()


@pytest.mark.parametrize(
    "name, strategy_type", [("greedy", Greedy), ("beam_search", BeamSearch), ("sampling", Sampling)]
)
def test_strategy_names_give_default_settings(trained_model, name, strategy_type):
    generator = Generator(interface_of(trained_model), name, max_length=3)
    assert type(generator.strategy) is strategy_type
    assert generator.strategy.get_config() == strategy_type().get_config()


@pytest.mark.parametrize("strategy", ["greedy", "beam_search"])
@pytest.mark.parametrize("kind", ["seq2seq", "decoder_only"])
def test_batches_give_the_same_results_as_one_batch(strategy, kind, capsys):
    _, interface = small_model(favoured=(), seed=4, decoder_only=kind == "decoder_only")
    rng = np.random.default_rng(0)
    inputs = rng.integers(4, 12, (7, 5)).astype("int32")
    inputs[np.arange(5, dtype=int)[None, :] >= rng.integers(1, 6, (7, 1))] = 0  # right-padded
    generator = Generator(interface, strategy, max_length=8)
    whole, whole_scores = generator.generate(inputs, return_scores=True)
    assert capsys.readouterr().out == ""  # "auto": one batch, no progress bar
    batched, batched_scores = generator.generate(inputs, batch_size=3, return_scores=True)
    np.testing.assert_array_equal(batched, whole)
    np.testing.assert_allclose(batched_scores, whole_scores, atol=1e-5)
    assert "7/7" in capsys.readouterr().out  # "auto": three batches, a progress bar
    quiet = generator.generate(inputs, batch_size=3, verbose=0)
    np.testing.assert_array_equal(quiet, whole)
    assert capsys.readouterr().out == ""


def test_public_generation_names_are_documented():
    assert generation.Strategy.__doc__ and generation.Strategy.search.__doc__
    for name in set(generation.__all__) - {"Strategy"}:
        sections = ("Example:", "Reference")
        if name in ("Generator", "length_penalty"):
            sections += ("Args:", "Returns:", "Raises:")
        for section in sections:
            assert section in getattr(generation, name).__doc__, (name, section)
    globs = {"np": np, "keras": keras, "keras_transformer_layers": ktl}
    for name in ("Generator", "length_penalty", "Greedy", "BeamSearch", "Sampling"):
        tests = doctest.DocTestFinder(recurse=False).find(
            getattr(generation, name), name, globs=globs
        )
        runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
        for test in tests:
            assert test.examples, name
            runner.run(test)
        assert runner.summarize(verbose=False).failed == 0, name
