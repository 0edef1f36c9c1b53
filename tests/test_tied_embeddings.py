"""`tie_embeddings`: the embedding matrix reused by the pre-softmax projection (section 3.4)."""

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

VOCABULARY = 14
DIM = 16
SOURCE = np.array([[5, 6, 7, 8, 9], [4, 10, 11, 0, 0]], "int32")
TARGET = np.array([[2, 5, 9, 4], [2, 7, 0, 0]], "int32")
SIZES = {"num_layers": 1, "model_dim": DIM, "num_heads": 2, "intermediate_dim": 32}


def _seq2seq(tie, source_vocabulary=VOCABULARY):
    keras.utils.set_random_seed(1)
    model = ktl.build_transformer(
        source_vocabulary, VOCABULARY, dropout=0.0, tie_embeddings=tie, **SIZES
    )
    if tie != "none":
        # Output bias away from zero, so the argmax is not decided by ties.
        model.logits_layer.bias.assign(np.linspace(-1.0, 1.0, VOCABULARY).astype("float32"))
    return model


def _lm(tie):
    keras.utils.set_random_seed(1)
    return ktl.build_transformer_lm(VOCABULARY, dropout=0.0, tie_embeddings=tie, **SIZES)


@pytest.fixture(scope="module")
def tied():
    return _seq2seq("decoder")


@pytest.fixture(scope="module")
def all_tied():
    return _seq2seq("all")


def _table(embedding):
    return embedding.token_embedding.embeddings


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def test_decoder_tie_is_one_variable():
    tied = _seq2seq("decoder")
    table = _table(tied.decoder_embedding)
    assert isinstance(tied.logits_layer, ktl.TiedLogits)
    assert tied.logits_layer.embedding is tied.decoder_embedding
    assert [w.path for w in tied.logits_layer.weights if w is not table] == ["logits/bias"]
    # The model lists the shared matrix once; the encoder keeps its own.
    assert sum(w is table for w in tied.weights) == 1
    assert _table(tied.encoder_embedding) is not table
    # Training moves the one variable seen by the embedding and the logits.
    before = _numpy(table).copy()
    tied.compile(
        optimizer=keras.optimizers.SGD(1.0),
        loss=ktl.training.MaskedSparseCategoricalCrossentropy(),
    )
    tied.train_on_batch({"encoder_inputs": SOURCE, "decoder_inputs": TARGET}, TARGET)
    assert np.abs(_numpy(table) - before).max() > 0
    np.testing.assert_array_equal(
        _numpy(tied.logits_layer.embedding.token_embedding.embeddings), _numpy(table)
    )


def test_all_tie_shares_the_source_embedding_too(all_tied):
    assert all_tied.encoder_embedding is all_tied.decoder_embedding
    table = _table(all_tied.decoder_embedding)
    assert sum(w is table for w in all_tied.weights) == 1
    assert all_tied.logits_layer.embedding is all_tied.decoder_embedding


@pytest.mark.parametrize("tie, fewer", [("none", 0), ("decoder", 1), ("all", 2)])
def test_parameter_count_drops_by_one_matrix_per_tie(tie, fewer):
    untied = _seq2seq("none").count_params()
    assert _seq2seq(tie).count_params() == untied - fewer * VOCABULARY * DIM


def test_lm_parameter_count_drops_by_one_matrix():
    assert _lm("decoder").count_params() == _lm("none").count_params() - VOCABULARY * DIM


def test_logits_are_the_unscaled_transposed_table_plus_bias(tied):
    """In: `E[ids] * sqrt(d_model)` (+ sinusoid); out: `y @ E^T + b`, no sqrt (section 3.4)."""
    table = _numpy(_table(tied.decoder_embedding)).astype("float64")
    embedded = _numpy(tied.decoder_embedding(TARGET))
    positions = _numpy(ktl.PositionalEncoding()(np.zeros((1, 4, DIM), "float32")))[0]
    np.testing.assert_allclose(embedded, table[TARGET] * np.sqrt(DIM) + positions, atol=1e-5)
    memory = tied.encoder(tied.encoder_embedding(SOURCE))
    hidden = _numpy(tied.decoder(tied.decoder_embedding(TARGET), memory)).astype("float64")
    expected = hidden @ table.T + _numpy(tied.logits_layer.bias)
    np.testing.assert_allclose(full_logits(tied, SOURCE, TARGET), expected, atol=1e-4)


@pytest.mark.parametrize("which", ["decoder", "all"])
def test_cached_steps_and_generation_equal_a_full_recompute(which, tied, all_tied):
    model = tied if which == "decoder" else all_tied
    cached = cached_step_logits(model, TARGET, source=SOURCE)
    real = TARGET != 0
    np.testing.assert_allclose(cached[real], full_logits(model, SOURCE, TARGET)[real], atol=1e-5)
    # One compiled decoding loop per model (test time): greedy for one, beam for the other.
    if which == "decoder":
        token_ids, scores = Generator(model, max_length=6, end_id=None).generate(
            SOURCE, return_scores=True
        )
        expected_ids, expected_scores = recompute_greedy(model, 6, source=SOURCE, end_id=None)
        np.testing.assert_array_equal(token_ids, expected_ids)
        np.testing.assert_allclose(scores, expected_scores, atol=1e-4)
    else:
        beam_ids = Generator(
            model, BeamSearch(num_beams=3, length_penalty=0.6), max_length=5, end_id=None
        ).generate(SOURCE)
        np.testing.assert_array_equal(
            beam_ids, recompute_beam(model, 5, 3, 0.6, source=SOURCE, end_id=None)[0]
        )


def test_lm_generation_equals_a_full_recompute():
    model = _lm("decoder")
    model.logits_layer.bias.assign(np.linspace(-1.0, 1.0, VOCABULARY).astype("float32"))
    prompts = np.array([[2, 5, 6], [2, 7, 0]], "int32")
    token_ids = Generator(model, max_length=7, end_id=None).generate(prompts)
    expected_ids, _ = recompute_greedy(model, 7, prompts=prompts, end_id=None)
    np.testing.assert_array_equal(token_ids, expected_ids)


@pytest.mark.parametrize("which", ["decoder", "all", "lm"])
def test_keras_file_round_trip_keeps_the_tie(which, tied, all_tied, tmp_path):
    model = {"decoder": tied, "all": all_tied, "lm": None}[which] or _lm("decoder")
    path = tmp_path / "tied.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(model)
    assert loaded.get_config()["tie_embeddings"] == ("all" if which == "all" else "decoder")
    assert loaded.logits_layer.embedding is loaded.decoder_embedding
    if which == "lm":
        np.testing.assert_allclose(
            full_logits(loaded, None, TARGET), full_logits(model, None, TARGET), atol=1e-6
        )
    else:
        np.testing.assert_allclose(
            full_logits(loaded, SOURCE, TARGET), full_logits(model, SOURCE, TARGET), atol=1e-6
        )


def test_int8_quantization_quantizes_the_shared_table():
    model = _seq2seq("all")
    float_logits = full_logits(model, SOURCE, TARGET)
    model.quantize("int8")
    embedding = model.decoder_embedding.token_embedding
    assert embedding.quantization_mode == "int8"
    assert keras.backend.standardize_dtype(embedding._embeddings.dtype) == "int8"
    quantized = full_logits(model, SOURCE, TARGET)
    real = TARGET != 0
    # int8 rounding moves the logits a little, not a lot.
    assert 0 < np.abs(quantized - float_logits)[real].max() < 0.1 * np.abs(float_logits).max()
    # The decoding interface reads the same int8 table: cached steps equal the full model.
    cached = cached_step_logits(model, TARGET, source=SOURCE)
    np.testing.assert_allclose(cached[real], quantized[real], atol=1e-5)


def test_untied_default_is_unchanged():
    model = _seq2seq("none")
    assert model.get_config()["tie_embeddings"] == "none"
    assert isinstance(model.logits_layer, keras.layers.Dense)
    assert model.encoder_embedding is not model.decoder_embedding
    assert isinstance(_lm("none").logits_layer, keras.layers.Dense)


def test_bad_tie_embeddings_are_value_errors():
    with pytest.raises(
        ValueError,
        match=r"`tie_embeddings` must be one of .*Received: "
        r"tie_embeddings='encoder'",
    ):
        ktl.build_transformer(10, 10, tie_embeddings="encoder", **SIZES)
    with pytest.raises(
        ValueError,
        match=r"`source_vocabulary_size` must equal "
        r"`target_vocabulary_size`. Received: source_vocabulary_size=12, "
        r"target_vocabulary_size=10",
    ):
        ktl.build_transformer(12, 10, tie_embeddings="all", **SIZES)
    with pytest.raises(
        ValueError,
        match=r"`tie_embeddings` must be one of .*Received: "
        r"tie_embeddings='all'",
    ):
        ktl.build_transformer_lm(10, tie_embeddings="all", **SIZES)
    with pytest.raises(ValueError, match=r"`tie_embeddings`.*Received: tie_embeddings=True"):
        ktl.build_transformer_lm(10, tie_embeddings=True, **SIZES)


def test_tied_logits_checks_its_embedding_and_inputs():
    with pytest.raises(
        ValueError,
        match=r"`embedding` must be this package's "
        r"`PositionalEmbedding` layer. Received: embedding=",
    ):
        ktl.TiedLogits(keras.layers.Embedding(10, 4))
    layer = ktl.TiedLogits(ktl.PositionalEmbedding(10, 4))
    with pytest.raises(
        ValueError,
        match=r"The last axis of `inputs` must be the embedding's "
        r"`embedding_dim` \(4\). Received: inputs.shape=\(1, 2, 8\)",
    ):
        layer(np.zeros((1, 2, 8), "float32"))


@pytest.mark.skipif(keras.config.backend() != "tensorflow", reason="TensorFlow-only: export")
def test_tied_model_exports_its_generation(all_tied, tmp_path):
    from keras_transformer_layers.export import export_generation_saved_model
    from keras_transformer_layers.export import export_generation_tflite

    generator = Generator(all_tied, max_length=6, end_id=None)
    saved = export_generation_saved_model(generator, tmp_path / "sm", sample_inputs=SOURCE)
    assert saved["token_agreement"] == 1.0
    tflite = export_generation_tflite(
        generator, tmp_path / "g.tflite", batch_size=2, input_len=5, sample_inputs=SOURCE
    )
    assert tflite["token_agreement"] == 1.0


def test_mixed_precision_logits_are_float32_and_match(all_tied):
    weights = all_tied.get_weights()
    try:
        keras.config.set_dtype_policy("mixed_float16")
        mixed = ktl.build_transformer(
            VOCABULARY, VOCABULARY, dropout=0.0, tie_embeddings="all", **SIZES
        )
    finally:
        keras.config.set_dtype_policy("float32")
    mixed.set_weights(weights)
    logits = mixed({"encoder_inputs": SOURCE, "decoder_inputs": TARGET})
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    real = TARGET != 0
    np.testing.assert_allclose(
        _numpy(logits)[real], full_logits(all_tied, SOURCE, TARGET)[real], atol=1e-2
    )
