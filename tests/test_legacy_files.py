"""`.keras` files saved before the model classes and Keras-core attention still load."""

import pathlib

import keras
import numpy as np
import pytest

import keras_transformer_layers  # noqa: F401  (registers the layers)

pytestmark = pytest.mark.backend_neutral

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("name", ["postnorm", "prenorm"])
def test_legacy_seq2seq_file_loads_with_the_same_outputs(name):
    io = np.load(FIXTURES / "legacy_io.npz")
    model = keras.models.load_model(FIXTURES / f"legacy_{name}.keras")
    logits = model({"encoder_inputs": io["encoder_inputs"], "decoder_inputs": io["decoder_inputs"]})
    np.testing.assert_allclose(keras.ops.convert_to_numpy(logits), io[f"{name}_logits"], atol=1e-5)


def test_legacy_decoder_only_file_loads_with_the_same_outputs():
    io = np.load(FIXTURES / "legacy_io.npz")
    model = keras.models.load_model(FIXTURES / "legacy_lm.keras")
    logits = model(io["decoder_inputs"])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(logits), io["lm_logits"], atol=1e-5)
