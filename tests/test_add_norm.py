import keras
import numpy as np
import pytest

import keras_transformer_layers as ktl
from tests import numpy_reference as ref
from tests.layer_contract import check_layer

pytestmark = pytest.mark.backend_neutral


def test_contract(tmp_path):
    x = np.random.rand(2, 4, 8).astype("float32")
    check_layer(
        tmp_path,
        ktl.AddNorm,
        {"dropout": 0.1, "epsilon": 1e-5},
        [x, x],
        expected_output_shape=(2, 4, 8),
        expected_num_trainable_weights=2,
        expected_num_non_trainable_variables=1,
    )


def test_hand_computed_values():
    output = ktl.AddNorm(epsilon=1e-6)(
        np.arange(5, dtype="float32")[None, None], np.zeros((1, 1, 5), "float32")
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(output)[0, 0],
        [-1.41421, -0.70711, 0.0, 0.70711, 1.41421],
        atol=1e-5,
    )


def test_matches_numpy_reference():
    layer = ktl.AddNorm(epsilon=1e-3)
    x = np.random.rand(2, 3, 6).astype("float32")
    sub = np.random.rand(2, 3, 6).astype("float32")
    layer(x, sub)
    layer.layer_norm.gamma.assign(np.random.rand(6).astype("float32"))
    layer.layer_norm.beta.assign(np.random.rand(6).astype("float32"))
    expected = ref.add_norm(
        x,
        sub,
        keras.ops.convert_to_numpy(layer.layer_norm.gamma),
        keras.ops.convert_to_numpy(layer.layer_norm.beta),
        1e-3,
    )
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x, sub)), expected, atol=1e-5)


def test_dropout_acts_on_the_sublayer_output_only_in_training():
    layer = ktl.AddNorm(dropout=0.5)
    x = np.random.rand(1, 50, 8).astype("float32")
    sub = np.random.rand(1, 50, 8).astype("float32") + 1.0
    inference = keras.ops.convert_to_numpy(layer(x, sub, training=False))
    np.testing.assert_allclose(
        inference, keras.ops.convert_to_numpy(ktl.AddNorm()(x, sub)), atol=1e-5
    )
    assert np.abs(keras.ops.convert_to_numpy(layer(x, sub, training=True)) - inference).max() > 0.1


def test_mask_passes_through():
    ids = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(10, 4, mask_zero=True)(ids)
    out = ktl.AddNorm()(x, x)
    model = keras.Model(ids, keras.ops.cast(out._keras_mask, "int32"))
    np.testing.assert_array_equal(model(np.array([[1, 0]])), [[1, 0]])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"dropout": 1.5}, r"`dropout`.*Received: dropout=1\.5"),
        ({"dropout": "0.1"}, r"`dropout` must be a float. Received: dropout='0\.1'"),
        ({"epsilon": 0}, "`epsilon`.*Received: epsilon=0"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ktl.AddNorm(**kwargs)
