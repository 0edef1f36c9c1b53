"""`build_transformer(encoder_connection="layerwise")`: the model, its cache, generation, export."""

import keras
import numpy as np
import pytest

import keras_transformer_layers as ktl
from keras_transformer_layers.generation import BeamSearch
from keras_transformer_layers.generation import Generator
from tests.generation_fixtures import cached_step_logits
from tests.generation_fixtures import full_logits
from tests.generation_fixtures import recompute_beam
from tests.generation_fixtures import recompute_greedy

pytestmark = pytest.mark.backend_neutral

SOURCE = np.array([[5, 6, 7, 8, 9], [4, 10, 11, 0, 0]], "int32")
TARGET = np.array([[2, 5, 9, 4], [2, 7, 0, 0]], "int32")


def _model(connection="layerwise", normalize_first=False):
    keras.utils.set_random_seed(1)
    model = ktl.build_transformer(
        14,
        14,
        num_layers=2,
        model_dim=16,
        num_heads=2,
        intermediate_dim=32,
        dropout=0.0,
        normalize_first=normalize_first,
        encoder_connection=connection,
    )
    # Output bias away from zero, so the argmax is not decided by ties.
    model.logits_layer.bias.assign(np.linspace(-1.0, 1.0, 14).astype("float32"))
    return model


@pytest.mark.parametrize("normalize_first", [False, True], ids=["post_norm", "pre_norm"])
def test_layerwise_model_feeds_block_i_from_encoder_block_i(normalize_first):
    model = _model(normalize_first=normalize_first)
    assert model.get_config()["encoder_connection"] == "layerwise"
    x = model.encoder_embedding(SOURCE)
    memories = model.encoder(x)  # one output per encoder block
    assert isinstance(memories, list) and len(memories) == 2
    y = model.decoder_embedding(TARGET)
    expected = model.logits_layer(model.decoder(y, memories))
    logits = full_logits(model, SOURCE, TARGET)
    np.testing.assert_allclose(logits, keras.ops.convert_to_numpy(expected), atol=1e-5)
    # ...and it is not the paper's connection with the same weights.
    last = model.logits_layer(model.decoder(y, [memories[-1]] * 2))
    assert np.abs(logits - keras.ops.convert_to_numpy(last)).max() > 1e-3


def test_layerwise_cached_steps_equal_the_full_model():
    model = _model()
    cached = cached_step_logits(model, TARGET, source=SOURCE)
    full = full_logits(model, SOURCE, TARGET)
    real = TARGET != 0
    np.testing.assert_allclose(cached[real], full[real], atol=1e-5)


def test_layerwise_generation_equals_a_full_recompute():
    model = _model()
    token_ids, scores = Generator(model, max_length=6, end_id=None).generate(
        SOURCE, return_scores=True
    )
    expected_ids, expected_scores = recompute_greedy(model, 6, source=SOURCE, end_id=None)
    np.testing.assert_array_equal(token_ids, expected_ids)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-4)
    beam_ids = Generator(
        model, BeamSearch(num_beams=3, length_penalty=0.6), max_length=5, end_id=None
    ).generate(SOURCE)
    np.testing.assert_array_equal(
        beam_ids, recompute_beam(model, 5, 3, 0.6, source=SOURCE, end_id=None)[0]
    )


def test_layerwise_model_round_trips_through_keras_file(tmp_path):
    model = _model()
    path = tmp_path / "layerwise.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is ktl.Seq2SeqTransformer
    assert loaded.decoder.encoder_connection == "layerwise"
    np.testing.assert_allclose(
        full_logits(loaded, SOURCE, TARGET), full_logits(model, SOURCE, TARGET), atol=1e-6
    )


def test_unknown_encoder_connection_is_a_value_error():
    with pytest.raises(
        ValueError,
        match=r"`encoder_connection` must be one of .*Received: "
        r"encoder_connection='per_layer'",
    ):
        ktl.build_transformer(
            10,
            10,
            num_layers=1,
            model_dim=8,
            num_heads=2,
            intermediate_dim=8,
            encoder_connection="per_layer",
        )


@pytest.mark.skipif(keras.config.backend() != "tensorflow", reason="TensorFlow-only: export")
def test_layerwise_model_exports_its_generation(tmp_path):
    from keras_transformer_layers.export import export_generation_saved_model
    from keras_transformer_layers.export import export_generation_tflite

    generator = Generator(_model(), max_length=6, end_id=None)
    saved = export_generation_saved_model(generator, tmp_path / "sm", sample_inputs=SOURCE)
    assert saved["token_agreement"] == 1.0
    tflite = export_generation_tflite(
        generator, tmp_path / "g.tflite", batch_size=2, input_len=5, sample_inputs=SOURCE
    )
    assert tflite["token_agreement"] == 1.0
