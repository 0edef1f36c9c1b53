"""Cached generation equals a full recompute, and never emits the padding or start id.

For encoder-decoder and decoder-only models (prompts of different lengths in
one batch), with greedy, beam search and sampling, compiled (`generate`: a
`tf.function` graph on TensorFlow, `jax.jit` on JAX), and on TensorFlow also
eagerly (`generate_tensors` called directly) and with XLA.

The full model masks a padding id inside the target; a key/value cache keeps
every written position as a real token. A generated padding id would make the
two disagree, so every strategy excludes the padding and start ids. The
models here are untrained and their output bias strongly favours id 0 and the
start id (by several logits), so without the exclusion every step would pick
one of them.
"""

import keras
import numpy as np
import pytest
from keras import ops

from keras_transformer_layers.generation import BeamSearch
from keras_transformer_layers.generation import Generator
from keras_transformer_layers.generation import Greedy
from keras_transformer_layers.generation import Sampling
from keras_transformer_layers.tokens import END_ID
from keras_transformer_layers.tokens import START_ID
from tests.generation_fixtures import assert_no_special_ids_before_end
from tests.generation_fixtures import cached_step_logits
from tests.generation_fixtures import full_logits
from tests.generation_fixtures import live_positions
from tests.generation_fixtures import recompute_beam
from tests.generation_fixtures import recompute_greedy
from tests.generation_fixtures import recompute_sample
from tests.generation_fixtures import sampling_logits
from tests.generation_fixtures import sequence_log_prob
from tests.generation_fixtures import small_model

pytestmark = pytest.mark.backend_neutral

# Decoder positions of an encoder-decoder sequence: the start token and 8 generated tokens.
MAX_LENGTH = 9
SOURCE = np.array([[4, 5, 6, 0, 0], [7, 8, 9, 10, 11], [5, 5, 0, 0, 0], [11, 10, 9, 8, 0]], "int32")
# Decoder-only prompts of 1 to 5 tokens, right-padded.
PROMPTS = np.array(
    [[4, 5, 6, 0, 0], [7, 8, 9, 10, 11], [5, 0, 0, 0, 0], [11, 10, 9, 8, 0]], "int32"
)
PROMPT_LENGTHS = (PROMPTS != 0).sum(1)
LM_MAX_LENGTH = 11
TF_ONLY = pytest.mark.skipif(
    keras.config.backend() != "tensorflow",
    reason="TensorFlow-only: XLA via tf.function, and eager TF next to its graph",
)
# Eager on JAX compiles the `lax.while_loop` like `jax.jit` does ("compiled").
MODES = pytest.mark.parametrize(
    "mode",
    [
        pytest.param("eager", marks=TF_ONLY),
        "compiled",
        pytest.param("xla", marks=TF_ONLY),
    ],
)
KINDS = pytest.mark.parametrize("kind", ["seq2seq", "decoder_only"])


@pytest.fixture(scope="module")
def biased_models():
    return {
        "seq2seq": small_model(),
        "decoder_only": small_model(decoder_only=True, seed=3),
    }


def _setup(biased_models, kind):
    """`(model, interface, references' keyword arguments, inputs, max_length)`."""
    model, interface = biased_models[kind]
    if kind == "seq2seq":
        return model, interface, {"source": SOURCE}, SOURCE, MAX_LENGTH
    return model, interface, {"prompts": PROMPTS}, PROMPTS, LM_MAX_LENGTH


def run(generator, inputs, mode, seed=0):
    """`(token_ids, scores)` as NumPy arrays, eagerly or through `generate`."""
    if mode == "eager":
        token_ids, scores = generator.generate_tensors(
            generator.check_inputs(inputs), ops.convert_to_tensor(seed, "int32")
        )
        return ops.convert_to_numpy(token_ids), ops.convert_to_numpy(scores)
    return generator.generate(inputs, return_scores=True, seed=seed)


def _prompt_lengths(kind):
    return None if kind == "seq2seq" else PROMPT_LENGTHS


def assert_cached_equals_full(
    model, interface, token_ids, references, start_id=START_ID, end_id=END_ID
):
    """The cached logits after every generated prefix equal the full model's on it."""
    source = references.get("source")
    if source is not None:
        decoder_inputs = np.concatenate(
            [np.full((len(token_ids), 1), start_id, "int32"), token_ids[:, :-1]], axis=1
        )
        targets = token_ids
    else:
        decoder_inputs, targets = token_ids[:, :-1], token_ids[:, 1:]
    cached = cached_step_logits(interface, decoder_inputs, source)
    full = full_logits(model, source, decoder_inputs)
    live = live_positions(targets, end_id)  # up to the step that produced the end token
    np.testing.assert_allclose(cached[live], full[live], atol=1e-4)


@pytest.fixture(scope="module")
def expected():
    """The references, computed once per model kind and settings for all modes."""
    computed = {}

    def get(key, compute):
        if key not in computed:
            computed[key] = compute()
        return computed[key]

    return get


@KINDS
def test_the_bias_favours_padding_and_start(biased_models, kind):
    model, _, references, inputs, _ = _setup(biased_models, kind)
    first = np.full((4, 1), START_ID) if kind == "seq2seq" else inputs[:, :1]
    logits = full_logits(model, references.get("source"), first)[:, -1]
    assert set(logits.argmax(-1)) <= {0, START_ID}
    assert np.all(np.sort(logits, -1)[:, -3] < logits[:, [0, START_ID]].min(-1) - 3)


@MODES
@KINDS
def test_greedy_excludes_padding_and_start_and_equals_full_recompute(
    biased_models, expected, kind, mode
):
    model, interface, references, inputs, max_length = _setup(biased_models, kind)
    generator = Generator(interface, "greedy", max_length=max_length, jit_compile=mode == "xla")
    token_ids, scores = run(generator, inputs, mode)
    expected_ids, expected_scores = expected(
        (kind, "greedy"), lambda: recompute_greedy(model, max_length, **references)
    )
    np.testing.assert_array_equal(token_ids, expected_ids)
    assert token_ids.dtype == np.int32 and scores.dtype == np.float32
    assert_no_special_ids_before_end(token_ids, prompt_lengths=_prompt_lengths(kind))
    # Scores stay the model's own log-probabilities (padding and start included
    # in the softmax), prompt tokens excluded.
    np.testing.assert_allclose(scores, expected_scores, atol=1e-4)
    if mode == "compiled":  # the same tokens in every mode: checked once
        np.testing.assert_allclose(
            scores, sequence_log_prob(model, token_ids, **references), atol=1e-4
        )
        assert_cached_equals_full(model, interface, token_ids, references)
    if kind == "decoder_only":
        # The prompts come back unchanged, and rows of every length generated.
        for row, length in enumerate(PROMPT_LENGTHS):
            np.testing.assert_array_equal(token_ids[row, :length], PROMPTS[row, :length])
            assert token_ids[row, length] != 0


@MODES
@KINDS
def test_beam_search_excludes_padding_and_start_and_equals_full_recompute(
    biased_models, expected, kind, mode
):
    model, interface, references, inputs, max_length = _setup(biased_models, kind)
    alpha = 0.0 if mode == "xla" else 0.6
    generator = Generator(
        interface,
        BeamSearch(num_beams=3, length_penalty=alpha),
        max_length=max_length,
        jit_compile=mode == "xla",
    )
    token_ids, scores = run(generator, inputs, mode)
    expected_ids, expected_scores = expected(
        (kind, "beam", alpha), lambda: recompute_beam(model, max_length, 3, alpha, **references)
    )
    np.testing.assert_array_equal(token_ids, expected_ids)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-4)
    # Finished beams went on with padding only.
    assert_no_special_ids_before_end(token_ids, prompt_lengths=_prompt_lengths(kind))
    if mode == "compiled":
        assert_cached_equals_full(model, interface, token_ids, references)


# top_k and top_p alone: tests/test_sampling_draw.py (their sets and renormalized
# probabilities) and tests/test_generation.py (top-k ranks).
SAMPLING_SETTINGS = [
    {"temperature": 1.0},
    {"temperature": 2.0, "top_k": 12, "top_p": 0.95},
]


@pytest.mark.parametrize(
    "mode, settings",
    [("compiled", settings) for settings in SAMPLING_SETTINGS]
    + [
        pytest.param("eager", SAMPLING_SETTINGS[1], marks=TF_ONLY),
        pytest.param("xla", SAMPLING_SETTINGS[1], marks=TF_ONLY),
    ],
    ids=["plain", "top_k_vocabulary_and_top_p", "eager", "xla"],
)
@KINDS
def test_sampling_excludes_padding_and_start_and_equals_full_recompute(
    biased_models, expected, kind, mode, settings
):
    model, interface, references, inputs, max_length = _setup(biased_models, kind)
    generator = Generator(
        interface,
        Sampling(seed=11, **settings),
        max_length=max_length,
        jit_compile=mode == "xla",
    )
    token_ids, scores = run(generator, inputs, mode, seed=11)
    assert_no_special_ids_before_end(token_ids, prompt_lengths=_prompt_lengths(kind))
    np.testing.assert_allclose(scores, sequence_log_prob(model, token_ids, **references), atol=1e-4)
    # The counter-based draw gives the same tokens eagerly, compiled and under XLA.
    expected_ids, _ = expected(
        (kind, "sampling", tuple(sorted(settings.items()))),
        lambda: recompute_sample(model, max_length, 11, **references, **settings),
    )
    np.testing.assert_array_equal(token_ids, expected_ids)
    if mode != "compiled" or settings is SAMPLING_SETTINGS[0]:
        assert_cached_equals_full(model, interface, token_ids, references)
    # Each token lies in the filtered support of the full model's logits on its prefix.
    if kind == "seq2seq":
        decoder_inputs = np.concatenate([np.full((4, 1), START_ID), token_ids[:, :-1]], axis=1)
        targets = token_ids
    else:
        decoder_inputs, targets = token_ids[:, :-1], token_ids[:, 1:]
    logits = full_logits(model, references.get("source"), decoder_inputs)
    logits[..., [0, START_ID]] = -np.inf
    support = np.isfinite(sampling_logits(logits, **settings))
    chosen = np.take_along_axis(support, targets[..., None], axis=-1)[..., 0]
    generated = live_positions(targets)
    if kind == "decoder_only":
        generated &= np.arange(1, LM_MAX_LENGTH)[None, :] >= PROMPT_LENGTHS[:, None]
    assert chosen[generated].all(), token_ids


def test_hot_sampling_never_draws_padding_or_start(biased_models):
    # 64 rows x 8 steps at temperature 50: every allowed id is drawn, the two
    # excluded ones (the most likely under the model) never.
    source = np.repeat(SOURCE, 16, axis=0)
    generator = Generator(
        biased_models["seq2seq"][1], Sampling(temperature=50.0), max_length=MAX_LENGTH
    )
    for seed in (0, 1, 2):
        token_ids = generator.generate(source, seed=seed)
        assert_no_special_ids_before_end(token_ids)
        assert set(np.unique(token_ids)) == set(range(12)) - {START_ID}, seed


@KINDS
def test_tiny_temperature_is_greedy_not_nan(biased_models, kind):
    _, interface, _, inputs, max_length = _setup(biased_models, kind)
    greedy = Generator(interface, max_length=max_length).generate(inputs)
    for temperature in (1e-30, 1.2e-38):
        sampled = Generator(
            interface, Sampling(temperature=temperature, seed=0), max_length=max_length
        ).generate(inputs)
        np.testing.assert_array_equal(sampled, greedy)


def test_huge_temperature_still_excludes_padding_and_start(biased_models):
    # Dividing the exclusion's -1e9 by 1e12 would bring it next to the others.
    token_ids = Generator(
        biased_models["seq2seq"][1], Sampling(temperature=1e12, seed=0), max_length=MAX_LENGTH
    ).generate(np.repeat(SOURCE, 8, axis=0))
    assert_no_special_ids_before_end(token_ids)


def test_other_start_id_is_excluded_too():
    # Id 1 as the start id, the bias favouring it and padding.
    model, interface = small_model(favoured=(0, 1))
    references = {"source": SOURCE}
    for strategy in (Greedy(), BeamSearch(num_beams=3), Sampling(seed=3)):
        generator = Generator(interface, strategy, max_length=MAX_LENGTH, start_id=1)
        token_ids = generator.generate(SOURCE)
        assert_no_special_ids_before_end(token_ids, start_id=1)
        assert_cached_equals_full(model, interface, token_ids, references, start_id=1)
    np.testing.assert_array_equal(
        Generator(interface, max_length=MAX_LENGTH, start_id=1).generate(SOURCE),
        recompute_greedy(model, MAX_LENGTH, source=SOURCE, start_id=1)[0],
    )


@pytest.mark.parametrize("strategy", ["greedy", "beam_search"])
@KINDS
def test_without_end_id_every_row_runs_to_max_length(biased_models, kind, strategy):
    model, interface, references, inputs, max_length = _setup(biased_models, kind)
    strategy = Greedy() if strategy == "greedy" else BeamSearch(num_beams=3)
    generator = Generator(interface, strategy, max_length=max_length, end_id=None)
    token_ids = generator.generate(inputs)
    assert not np.isin(token_ids, [0, START_ID]).any(), token_ids
    if isinstance(strategy, Greedy):
        expected = recompute_greedy(model, max_length, end_id=None, **references)[0]
    else:
        expected = recompute_beam(model, max_length, 3, 0.6, end_id=None, **references)[0]
    np.testing.assert_array_equal(token_ids, expected)
    assert_cached_equals_full(model, interface, token_ids, references, end_id=None)


@KINDS
def test_model_without_padding_mask_attends_to_every_source_id(kind):
    # `mask_zero=False`: the full model attends to id 0 like any other, so the
    # generator must not mask it either.
    model, interface = small_model(
        mask_zero=False, favoured=(), seed=2, decoder_only=kind == "decoder_only"
    )
    references = {"source": SOURCE} if kind == "seq2seq" else {"prompts": PROMPTS}
    max_length = MAX_LENGTH if kind == "seq2seq" else LM_MAX_LENGTH
    inputs = SOURCE if kind == "seq2seq" else PROMPTS
    token_ids = Generator(interface, max_length=max_length).generate(inputs)
    assert_cached_equals_full(model, interface, token_ids, references)
    np.testing.assert_array_equal(token_ids, recompute_greedy(model, max_length, **references)[0])


@KINDS
def test_later_weight_updates_are_seen(kind):
    # The compiled loop (a tf.function, or jax.jit with the variables passed
    # as arguments) reads the weights at call time, not at trace time.
    model, interface = small_model(decoder_only=kind == "decoder_only", seed=5)
    references = {"source": SOURCE} if kind == "seq2seq" else {"prompts": PROMPTS}
    max_length = MAX_LENGTH if kind == "seq2seq" else LM_MAX_LENGTH
    inputs = SOURCE if kind == "seq2seq" else PROMPTS
    generator = Generator(interface, max_length=max_length)
    before = generator.generate(inputs)
    bias = np.zeros(12, "float32")
    bias[7] = 20.0  # id 7 now wins every step
    interface.logits_layer.bias.assign(bias)
    after = generator.generate(inputs)
    assert not np.array_equal(after, before)
    np.testing.assert_array_equal(after, recompute_greedy(model, max_length, **references)[0])
    generated = after if kind == "seq2seq" else after[:, PROMPTS.shape[1] :]
    assert np.all(generated == 7)
