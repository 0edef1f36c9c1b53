"""`Generator(length_buckets=...)`: the same results as unpadded inputs, a bounded compile count."""

import numpy as np
import pytest

from keras_transformer_layers.generation import BeamSearch
from keras_transformer_layers.generation import Generator
from keras_transformer_layers.generation import Sampling
from tests.generation_fixtures import small_model

pytestmark = pytest.mark.backend_neutral

VOCABULARY_SIZE = 20
MAX_LENGTH = 6  # decoder positions, the start token or the prompt included
# Sources of 1 to 7 tokens and prompts of 1 to 5, with padding beyond the longest.
LENGTHS = (1, 7, 3, 5, 2)
PROMPT_LENGTHS = (1, 4, 3, 5, 2)
STRATEGIES = {
    "greedy": "greedy",
    "beam": BeamSearch(num_beams=3),
    "sampling": Sampling(top_k=6, seed=11),
}


def _rows(lengths, width, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.zeros((len(lengths), width), "int32")
    for row, length in enumerate(lengths):
        ids[row, :length] = rng.integers(4, VOCABULARY_SIZE, length)
    return ids


@pytest.fixture(scope="module")
def models():
    """Untrained one-layer models: every source and prompt token moves the logits."""
    settings = {"vocabulary_size": VOCABULARY_SIZE, "favoured": (), "bias": 0.0}
    return {
        "seq2seq": (small_model(**settings)[1], _rows(LENGTHS, 9)),
        "lm": (small_model(decoder_only=True, **settings)[1], _rows(PROMPT_LENGTHS, 7)),
    }


@pytest.mark.parametrize("kind", ["seq2seq", "lm"])
@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_buckets_change_no_result(models, kind, strategy):
    model, inputs = models[kind]
    # Two batches of 3 rows (sampling numbers its draws by row within a batch).
    plain = Generator(model, STRATEGIES[strategy], max_length=MAX_LENGTH)
    expected, expected_scores = plain.generate(inputs, batch_size=3, return_scores=True, verbose=0)
    # Not a constant model: the rows differ, in their tokens or at least their scores
    # (on JAX's initial weights beam search ends every row at once, with different scores).
    rows = zip(expected.tolist(), expected_scores.tolist(), strict=True)
    assert len({(tuple(row), round(score, 4)) for row, score in rows}) > 1
    # A multiple of 4; the last batch is filled up to 3 rows with a copy of its first row.
    bucketed = Generator(model, STRATEGIES[strategy], max_length=MAX_LENGTH, length_buckets=4)
    token_ids, scores = bucketed.generate(inputs, batch_size=3, return_scores=True, verbose=0)
    np.testing.assert_array_equal(token_ids, expected)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-5)
    # Generated ids without the start token, or the prompts and their continuations.
    width = MAX_LENGTH - 1 if kind == "seq2seq" else MAX_LENGTH
    assert token_ids.shape == (len(LENGTHS), width) and scores.shape == (len(LENGTHS),)


def test_buckets_up_to_a_learned_position_table():
    """A multiple beyond the table pads to the table; a listed bucket beyond it is refused."""
    model = small_model(vocabulary_size=VOCABULARY_SIZE, favoured=(), bias=0.0, table=6)[1]
    source = _rows((5, 2), 6)
    expected = Generator(model, max_length=MAX_LENGTH).generate(source)
    bucketed = Generator(model, max_length=MAX_LENGTH, length_buckets=4)
    np.testing.assert_array_equal(bucketed.generate(source), expected)
    with pytest.raises(ValueError, match=r"`length_buckets` must be at most the encoder's learned"):
        Generator(model, length_buckets=[4, 8])


@pytest.mark.parametrize(
    "value",
    [0, -4, True, 2.0, "8", [], [4, 4], [8, 4], [4, 0], [4, 8.0], (4, None)],
)
def test_bad_length_buckets_are_value_errors(models, value):
    with pytest.raises(ValueError, match=r"`length_buckets` must be None, a positive int") as error:
        Generator(models["seq2seq"][0], length_buckets=value)
    assert f"Received: length_buckets={value!r}" in str(error.value)


def test_buckets_need_a_model_that_masks_source_padding():
    unmasked = small_model(vocabulary_size=VOCABULARY_SIZE, mask_zero=False)[1]
    with pytest.raises(ValueError, match=r"`length_buckets` needs a model whose encoder[\s\S]*=8"):
        Generator(unmasked, length_buckets=8)
    Generator(unmasked)  # without buckets the model is fine


def test_a_source_longer_than_the_largest_bucket_is_a_value_error(models):
    generator = Generator(models["seq2seq"][0], max_length=MAX_LENGTH, length_buckets=(2, 4))
    source = _rows((3, 5), 8)  # trailing padding does not count: 5 tokens
    with pytest.raises(ValueError, match=r"at most 4 tokens[\s\S]*source of 5 tokens"):
        generator.generate(source, batch_size=1, verbose=0)
    assert generator.tracing_count == 0  # raised before any batch ran


def test_length_buckets_round_trip_through_get_config(models):
    model = models["seq2seq"][0]
    for value in (None, 8, [4, 8]):
        config = Generator(model, length_buckets=value).get_config()
        assert config["length_buckets"] == value
        assert Generator.from_config(config, model).get_config() == config


def test_xla_compiles_once_for_many_lengths_and_batch_sizes(models):
    """The one XLA compile of the file: 16 requests of 8 lengths and 2 batch sizes."""
    model = models["seq2seq"][0]
    generator = Generator(model, max_length=MAX_LENGTH, jit_compile=True, length_buckets=8)
    requests = [
        _rows((length,) * rows, length + rows, seed=length)  # trailing padding of varied width
        for length in range(1, 9)
        for rows in (1, 2)
    ]
    results = [generator.generate(source, batch_size=2) for source in requests]
    # Without buckets, XLA would compile 16 shapes; with them, one: (2, 8).
    assert generator.tracing_count == 1
    plain = Generator(model, max_length=MAX_LENGTH)
    for index in (0, 9, 15):
        np.testing.assert_array_equal(results[index], plain.generate(requests[index]))
