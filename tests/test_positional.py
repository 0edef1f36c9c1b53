import keras
import numpy as np
import pytest

import keras_transformer_layers as ktl
from tests import numpy_reference as ref
from tests.layer_contract import check_layer

pytestmark = pytest.mark.backend_neutral


def test_positional_encoding_contract(tmp_path):
    check_layer(
        tmp_path,
        ktl.PositionalEncoding,
        {"max_wavelength": 10000},
        [np.random.rand(2, 5, 6).astype("float32")],
        expected_output_shape=(2, 5, 6),
        expected_num_trainable_weights=0,
    )


@pytest.mark.parametrize("learned", [False, True], ids=["sinusoid", "learned"])
def test_positional_embedding_contract(tmp_path, learned):
    check_layer(
        tmp_path,
        ktl.PositionalEmbedding,
        {
            "vocabulary_size": 20,
            "embedding_dim": 8,
            "learned_positions": learned,
            "sequence_length": 10 if learned else None,
        },
        [np.array([[3, 4, 5, 0], [1, 2, 0, 0]], "int32")],
        expected_output_shape=(2, 4, 8),
        expected_num_trainable_weights=2 if learned else 1,
    )


def test_encoding_position_zero_is_zero_one_interleaved():
    output = ktl.PositionalEncoding()(np.zeros((1, 2, 6), "float32"))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(output)[0, 0], [0, 1, 0, 1, 0, 1], atol=1e-7
    )
    # Position 1, channel 0 is sin(1), channel 1 is cos(1) (wavelength 2*pi).
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(output)[0, 1, :2], [np.sin(1), np.cos(1)], atol=1e-6
    )


@pytest.mark.parametrize("dim", [6, 7, 64], ids=["even", "odd", "wide"])
def test_encoding_matches_numpy_reference(dim):
    x = np.random.rand(2, 50, dim).astype("float32")
    output = keras.ops.convert_to_numpy(ktl.PositionalEncoding()(x))
    np.testing.assert_allclose(output, x + ref.positional_encoding(50, dim)[None], atol=1e-5)


def test_encoding_start_index_gives_later_rows():
    full = keras.ops.convert_to_numpy(ktl.PositionalEncoding()(np.zeros((1, 40, 16), "float32")))
    step = keras.ops.convert_to_numpy(
        ktl.PositionalEncoding()(np.zeros((1, 1, 16), "float32"), start_index=37)
    )
    np.testing.assert_allclose(step[0, 0], full[0, 37], atol=1e-5)


def test_encoding_has_no_maximum_length():
    output = keras.ops.convert_to_numpy(ktl.PositionalEncoding()(np.zeros((1, 5000, 4), "float32")))
    np.testing.assert_allclose(
        output[0, 4999], ref.positional_encoding(1, 4, start=4999)[0], atol=1e-4
    )


def test_encoding_in_bfloat16_is_the_float32_table_rounded():
    # keras-hub's sinusoid drifts by up to 2.0 at length 2048 in bfloat16;
    # ours computes the angles in float32 and only rounds the result.
    layer = ktl.PositionalEncoding(dtype="bfloat16")
    output = layer(keras.ops.zeros((1, 2048, 64), "bfloat16"))
    error = np.abs(
        keras.ops.convert_to_numpy(keras.ops.cast(output, "float32"))[0]
        - ref.positional_encoding(2048, 64)
    )
    assert error.max() < 0.01


def test_encoding_passes_the_keras_mask_through():
    ids = keras.Input((None,), dtype="int32")
    embedded = keras.layers.Embedding(10, 4, mask_zero=True)(ids)
    encoded = ktl.PositionalEncoding()(embedded)
    model = keras.Model(ids, keras.ops.cast(encoded._keras_mask, "int32"))
    np.testing.assert_array_equal(model(np.array([[3, 1, 0]])), [[1, 1, 0]])


def test_embedding_is_scaled_token_embedding_plus_sinusoid():
    layer = ktl.PositionalEmbedding(10, 8)
    ids = np.array([[3, 7, 0]])
    output = keras.ops.convert_to_numpy(layer(ids))
    table = keras.ops.convert_to_numpy(layer.token_embedding.embeddings)
    expected = table[ids[0]] * np.sqrt(8) + ref.positional_encoding(3, 8)
    np.testing.assert_allclose(output[0], expected, atol=1e-5)


def test_embedding_emits_padding_mask_and_start_index():
    layer = ktl.PositionalEmbedding(10, 8)
    ids = np.array([[3, 7, 0, 0]])
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(layer.compute_mask(ids)), [[True, True, False, False]]
    )
    full = keras.ops.convert_to_numpy(layer(ids))
    step = keras.ops.convert_to_numpy(layer(ids[:, 2:3], start_index=2))
    np.testing.assert_allclose(step[0, 0], full[0, 2], atol=1e-5)
    assert ktl.PositionalEmbedding(10, 8, mask_zero=False).compute_mask(ids) is None


def test_learned_positions_use_the_learned_table():
    layer = ktl.PositionalEmbedding(10, 4, learned_positions=True, sequence_length=6)
    ids = np.array([[2, 3, 4]])
    output = keras.ops.convert_to_numpy(layer(ids, start_index=1))
    tokens = keras.ops.convert_to_numpy(layer.token_embedding.embeddings)[ids[0]] * 2.0
    np.testing.assert_allclose(
        output[0], tokens + keras.ops.convert_to_numpy(layer.position_embeddings)[1:4], atol=1e-6
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"vocabulary_size": 0, "embedding_dim": 4},
            "`vocabulary_size`.*Received: vocabulary_size=0",
        ),
        (
            {"vocabulary_size": 5, "embedding_dim": -2},
            "`embedding_dim`.*Received: embedding_dim=-2",
        ),
        (
            {"vocabulary_size": 5, "embedding_dim": 4, "learned_positions": True},
            "`sequence_length`.*Received: sequence_length=None",
        ),
    ],
)
def test_embedding_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ktl.PositionalEmbedding(**kwargs)


def test_encoding_rejects_bad_arguments():
    with pytest.raises(ValueError, match="`max_wavelength`.*Received: max_wavelength=0"):
        ktl.PositionalEncoding(max_wavelength=0)
    with pytest.raises(
        ValueError, match=r"`inputs` must be a rank-3.*Received: inputs.shape=\(2, 3\)"
    ):
        ktl.PositionalEncoding()(np.zeros((2, 3), "float32"))
