"""The counter-based draw of `Sampling`: the same integers everywhere, a correct categorical sampler.

The hash is checked bit for bit against an int64 NumPy transcription
(`numpy_random_bits`), eagerly and compiled (XLA on TensorFlow, `jax.jit` on
JAX); the TensorFlow graph, SavedModel and TFLite runs are in
`test_export_generation.py` and `test_generation_special_ids.py`. The draws are checked statistically at
fixed seeds (deterministic, so never flaky): empirical frequencies against
the softmax probabilities with a chi-square bound at p = 0.001, for plain
sampling, temperature, top-k and top-p.
"""

import doctest

import keras
import numpy as np
import pytest
from keras import ops

from keras_transformer_layers.generation import Sampling
from keras_transformer_layers.generation import counter_random
from keras_transformer_layers.generation import strategies
from tests.generation_fixtures import numpy_gumbel_noise
from tests.generation_fixtures import numpy_random_bits

pytestmark = pytest.mark.backend_neutral

SEEDS = (0, 1, -1, 7, 123456789, 2**31 - 1, -(2**31))
STEPS = (0, 1, 5, 2**15 + 3, 2**30 - 1)
ROWS = np.array([[0], [1], [2], [2**15], [2**30 - 1]], "int32")
IDS = np.array([list(range(12)) + [2**15 - 1, 2**15, 2**20 + 5, 2**30 - 1]], "int32")
# Chi-square quantiles at p = 0.001: the bound for (categories - 1) degrees of freedom.
CHI2_999 = {1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 24: 51.18}
PROBABILITIES = np.array([0.4, 0.25, 0.2, 0.1, 0.05])
LOGITS = np.log(PROBABILITIES).astype("float32")
DRAW_ROWS = 2000
DRAW_STEPS = 4


def compiled(function):
    """`function` compiled: XLA through `tf.function` on TensorFlow, `jax.jit` on JAX."""
    if keras.config.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(function, jit_compile=True)
    if keras.config.backend() == "jax":
        import jax

        return jax.jit(function)
    pytest.skip(f"no compiler on the {keras.config.backend()} backend")


def fast(function):
    """`jax.jit(function)` on JAX (its eager mode compiles op by op), else `function`."""
    return compiled(function) if keras.config.backend() == "jax" else function


@pytest.mark.parametrize("mode", ["eager", "compiled"])
def test_random_bits_equal_the_numpy_transcription_bit_for_bit(mode):
    # A TensorFlow graph without XLA runs in the SavedModel and TFLite tests.
    if mode == "eager" and keras.config.backend() == "jax":
        pytest.skip("JAX generates under jax.jit only (the compiled case)")

    def bits(seed, step):
        return counter_random.random_bits(seed, step, ROWS, IDS)

    if mode == "compiled":
        bits = compiled(bits)
    seeds = np.array(SEEDS, "int32")[:, None, None, None]  # (seeds, 1, 1, 1)
    steps = np.array(STEPS, "int32")[:, None, None]  # (steps, 1, 1)
    actual = ops.convert_to_numpy(
        bits(ops.convert_to_tensor(seeds), ops.convert_to_tensor(steps))
    )  # (seeds, steps, rows, ids)
    assert actual.dtype == np.int32 and actual.shape == (7, 5, 5, 16)
    np.testing.assert_array_equal(actual, numpy_random_bits(seeds, steps, ROWS, IDS))
    assert 0 <= actual.min() and actual.max() < 2**30


def test_every_counter_field_changes_the_bits():
    base = numpy_random_bits(5, 3, ROWS, IDS)
    # The largest ids and rows use the second base-2**15 digit; no two counters collide here.
    assert len(np.unique(base)) == base.size
    bits = fast(lambda seed, step: counter_random.random_bits(seed, step, ROWS, IDS))
    for seed, step in ((6, 3), (5, 4), (5 - 2**15, 3), (5 + 2**30, 3)):
        other = ops.convert_to_numpy(
            bits(ops.convert_to_tensor(seed, "int32"), ops.convert_to_tensor(step, "int32"))
        )
        assert np.mean(other == base) < 0.01, (seed, step)


def test_uniform_and_gumbel_noise():
    bits = np.array([0, 127, 128, 2**30 - 1], "int32")
    np.testing.assert_array_equal(
        ops.convert_to_numpy(counter_random.uniform(bits)),
        np.array([1, 1, 3, 2**24 - 1], "float32") / 2**24,
    )
    noise = ops.convert_to_numpy(fast(lambda: counter_random.gumbel_noise(3, 2, 4, 9))())
    assert noise.shape == (4, 9) and noise.dtype == np.float32
    np.testing.assert_allclose(noise, numpy_gumbel_noise(3, 2, 4, 9), rtol=1e-6, atol=1e-6)
    # Over many counters the noise has the Gumbel mean (Euler's gamma) and variance pi**2 / 6.
    many = numpy_gumbel_noise(11, 0, 500, 200)
    assert abs(many.mean() - 0.5772) < 0.01 and abs(many.var() - np.pi**2 / 6) < 0.03


def frequencies(choose, seed=17):
    """Counts of `choose(logits, step, seed)` over DRAW_ROWS rows and DRAW_STEPS steps."""
    logits = ops.convert_to_tensor(np.tile(LOGITS, (DRAW_ROWS, 1)))
    seed = ops.convert_to_tensor(seed, "int32")
    choose = fast(choose)
    counts = np.zeros(len(LOGITS))
    draws = []
    for step in range(DRAW_STEPS):
        tokens = ops.convert_to_numpy(choose(logits, ops.convert_to_tensor(step, "int32"), seed))
        draws.append(tokens)
        counts += np.bincount(tokens, minlength=len(LOGITS))
    return counts, np.stack(draws, axis=1)  # (rows, steps)


def chi_square(counts, probabilities):
    expected = counts.sum() * probabilities
    return float(((counts - expected) ** 2 / expected).sum())


def test_draw_is_a_categorical_sampler():
    counts, draws = frequencies(strategies.draw)
    assert chi_square(counts, PROBABILITIES) < CHI2_999[4], counts
    # Consecutive steps of a row are independent: pairs follow the product distribution.
    pairs = np.bincount(draws[:, :-1].ravel() * 5 + draws[:, 1:].ravel(), minlength=25)
    assert chi_square(pairs, np.outer(PROBABILITIES, PROBABILITIES).ravel()) < CHI2_999[24]
    # Another seed draws other tokens from the same distribution.
    other_counts, other_draws = frequencies(strategies.draw, seed=18)
    assert chi_square(other_counts, PROBABILITIES) < CHI2_999[4]
    assert np.mean(other_draws == draws) < 0.4  # sum(p**2) = 0.2725 for independent draws


def test_a_forbidden_logit_is_never_drawn():
    # The noise lies in about [-2.8, 16.7]: -30 below the best logit is never drawn either.
    logits = np.float32([strategies.FORBIDDEN, 0.0, -np.inf, -30.0, strategies.FORBIDDEN])
    counts, _ = frequencies(
        lambda _, step, seed: strategies.draw(np.tile(logits, (DRAW_ROWS, 1)), seed, step)
    )
    assert counts.tolist() == [0, DRAW_ROWS * DRAW_STEPS, 0, 0, 0]


def sampling_choose(**settings):
    strategy = Sampling(**settings)
    return lambda logits, step, seed: strategy.choose(logits, step, seed, lambda x: x)


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_temperature_samples_from_the_tempered_softmax(temperature):
    counts, _ = frequencies(sampling_choose(temperature=temperature))
    tempered = PROBABILITIES ** (1 / temperature) / (PROBABILITIES ** (1 / temperature)).sum()
    assert chi_square(counts, tempered) < CHI2_999[4], counts
    # ... and not from the untempered one (the bound is far exceeded).
    assert chi_square(counts, PROBABILITIES) > 10 * CHI2_999[4], counts


def test_top_k_draws_from_the_k_best_renormalized():
    counts, _ = frequencies(sampling_choose(top_k=2))
    assert counts[2:].sum() == 0, counts
    assert chi_square(counts[:2], PROBABILITIES[:2] / PROBABILITIES[:2].sum()) < CHI2_999[1]


def test_top_p_draws_from_the_nucleus_renormalized():
    # Mass before each sorted id: 0, 0.4, 0.65, 0.85, 0.95; top_p = 0.8 keeps three.
    counts, _ = frequencies(sampling_choose(top_p=0.8))
    assert counts[3:].sum() == 0, counts
    assert chi_square(counts[:3], PROBABILITIES[:3] / PROBABILITIES[:3].sum()) < CHI2_999[2]


@pytest.mark.skipif(
    keras.config.backend() != "tensorflow",
    reason="TensorFlow-only: the example prints a shape, and eager JAX compiles op by op",
)
def test_counter_random_docstring_example_runs():
    tests = doctest.DocTestFinder().find(counter_random, globs={"keras": keras})
    assert sum(len(test.examples) for test in tests) == 3
    runner = doctest.DocTestRunner()
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
