"""`model.quantize("int8")`: every model of the layers quantizes, generates and reloads.

The trained fixture (`fixtures/int8_reversal.keras`, written by
`fixtures/make_int8_fixture.py`) reverses sequences; its float32 greedy
outputs are stored next to it, so int8 is compared with float32 on every
backend. Generation on the int8 model is checked against the full int8 model
recomputed on whole prefixes (no cache), per strategy.
"""

import pathlib

import keras
import numpy as np
import pytest

import keras_transformer_layers as ktl
from keras_transformer_layers.generation import BeamSearch
from keras_transformer_layers.generation import Generator
from keras_transformer_layers.generation import Sampling
from keras_transformer_layers.models import CachedDecoding
from tests.generation_fixtures import cached_step_logits
from tests.generation_fixtures import full_logits
from tests.generation_fixtures import recompute_beam
from tests.generation_fixtures import recompute_greedy
from tests.generation_fixtures import recompute_sample

pytestmark = pytest.mark.backend_neutral

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "int8_reversal"
MAX_NEW_TOKENS = 10  # as in make_int8_fixture.py
# The agreement docs/quantization.md promises on this fixture.
DOCUMENTED_AGREEMENT = 0.99
SIZES = {"num_layers": 1, "model_dim": 16, "num_heads": 2, "intermediate_dim": 32}
SOURCE = np.array([[5, 6, 7, 8, 9], [4, 10, 11, 0, 0]], "int32")
TARGET = np.array([[2, 5, 9, 4, 6], [2, 7, 8, 0, 0]], "int32")


@pytest.fixture(scope="module")
def stored():
    with np.load(FIXTURE.with_suffix(".npz")) as data:
        return dict(data)


@pytest.fixture(scope="module")
def int8_model():
    model = keras.models.load_model(FIXTURE.with_suffix(".keras"))
    model.quantize("int8")
    return model


def _agreement(expected, got):
    """Equal ids over the positions where either holds a token (padding in both not counted)."""
    tokens = (expected != 0) | (got != 0)
    return np.sum((expected == got) & tokens) / np.sum(tokens)


def test_int8_greedy_agrees_with_float32_on_the_trained_fixture(stored, int8_model):
    target = stored["target"]
    float_greedy = stored["float32_greedy"]
    # The comparison is on a trained model: float32 reverses the test rows.
    assert (float_greedy[:, : target.shape[1]] == target).all(axis=1).mean() >= 0.95
    int8_greedy = Generator(int8_model, max_new_tokens=MAX_NEW_TOKENS).generate(stored["source"])
    assert _agreement(float_greedy, int8_greedy) >= DOCUMENTED_AGREEMENT
    assert (int8_greedy[:, : target.shape[1]] == target).all(axis=1).mean() >= 0.95
    # Every kernel and token table is int8.
    int8_variables = [
        w for w in int8_model.weights if keras.backend.standardize_dtype(w.dtype) == "int8"
    ]
    # The 4 projections of 3 attentions, 2 of 2 feed-forwards, 2 token tables, the logits.
    assert len(int8_variables) == 3 * 4 + 2 * 2 + 2 + 1


def test_int8_generation_equals_the_full_int8_model(stored, int8_model):
    rows, length = stored["source"][:2], 6  # 6 steps: the check is per step, not per length
    expected = recompute_greedy(int8_model, length, source=rows)[0]
    np.testing.assert_array_equal(Generator(int8_model, max_length=length).generate(rows), expected)
    beams = Generator(int8_model, BeamSearch(num_beams=3, length_penalty=0.6), max_length=length)
    expected = recompute_beam(int8_model, length, 3, 0.6, source=rows)[0]
    np.testing.assert_array_equal(beams.generate(rows), expected)
    sampling = Generator(int8_model, Sampling(temperature=3.0, seed=5), max_length=length)
    expected = recompute_sample(int8_model, length, 5, source=rows, temperature=3.0)[0]
    np.testing.assert_array_equal(sampling.generate(rows), expected)


@pytest.mark.skipif(
    keras.config.backend() != "tensorflow",
    reason="`jit_compile` is TensorFlow's XLA switch; JAX always compiles (tests above)",
)
def test_int8_generation_with_xla_equals_eager(stored, int8_model):
    rows = stored["source"][:4]
    eager = Generator(int8_model, max_new_tokens=MAX_NEW_TOKENS).generate(rows)
    xla = Generator(int8_model, max_new_tokens=MAX_NEW_TOKENS, jit_compile=True).generate(rows)
    np.testing.assert_array_equal(xla, eager)


def _functional():
    """A decoder-only functional model composed by hand, and its interface."""
    inputs = keras.Input((None,), dtype="int32", name="token_ids")
    embedding = ktl.PositionalEmbedding(20, 16, name="embedding")
    decoder = ktl.TransformerDecoder(num_layers=1, num_heads=2, intermediate_dim=32, name="decoder")
    logits = keras.layers.Dense(20, name="logits")
    return keras.Model(inputs, logits(decoder(embedding(inputs))))


MODELS = {
    "post-norm": lambda: ktl.build_transformer(20, 20, **SIZES),
    "pre-norm, layer-wise": lambda: ktl.build_transformer(
        20, 20, normalize_first=True, encoder_connection="layerwise", **SIZES
    ),
    "tied all": lambda: ktl.build_transformer(20, 20, tie_embeddings="all", **SIZES),
    "tied language model": lambda: ktl.build_transformer_lm(20, tie_embeddings="decoder", **SIZES),
    "functional": _functional,
}


def _interface(model):
    if hasattr(model, "decoding_spec"):
        return model
    return CachedDecoding(
        decoder_embedding=model.get_layer("embedding"),
        decoder=model.get_layer("decoder"),
        logits=model.get_layer("logits"),
    )


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_quantized_models_reload_from_keras_files(kind, tmp_path):
    model = MODELS[kind]()
    source = None if len(model.inputs) == 1 else SOURCE
    float_logits = full_logits(model, source, TARGET)
    model.quantize("int8")
    int8_logits = full_logits(model, source, TARGET)
    real = TARGET != 0
    # int8 rounding moves the logits a little, not a lot.
    assert 0 < np.abs(int8_logits - float_logits)[real].max() < 0.1 * np.abs(float_logits).max()
    model.save(tmp_path / "int8.keras")
    loaded = keras.models.load_model(tmp_path / "int8.keras")
    # The same int8 variables come back, in the same layers.
    assert [w.path for w in loaded.weights] == [w.path for w in model.weights]
    for saved, reloaded in zip(model.weights, loaded.weights, strict=True):
        assert reloaded.dtype == saved.dtype, saved.path
    np.testing.assert_array_equal(full_logits(loaded, source, TARGET), int8_logits)
    # The decoding interface of the reloaded model reads the int8 weights too.
    cached = cached_step_logits(_interface(loaded), TARGET, source=source)
    np.testing.assert_allclose(cached[real], int8_logits[real], atol=1e-5)
