import keras
import numpy as np
import pytest

import keras_transformer_layers as ktl
from tests import numpy_reference as ref
from tests.layer_contract import check_layer

pytestmark = pytest.mark.backend_neutral


def test_contract(tmp_path):
    check_layer(
        tmp_path,
        ktl.FeedForward,
        {"intermediate_dim": 16, "dropout": 0.1},
        [np.random.rand(2, 4, 8).astype("float32")],
        expected_output_shape=(2, 4, 8),
        expected_num_trainable_weights=4,
        expected_num_non_trainable_variables=1,
    )


def test_matches_equation_two():
    layer = ktl.FeedForward(intermediate_dim=12)
    x = np.random.normal(size=(2, 5, 6)).astype("float32")
    layer(x)
    for weight in layer.weights:
        weight.assign(np.random.normal(size=weight.shape).astype("float32"))
    expected = ref.feed_forward(
        x,
        keras.ops.convert_to_numpy(layer.intermediate_dense.kernel),
        keras.ops.convert_to_numpy(layer.intermediate_dense.bias),
        keras.ops.convert_to_numpy(layer.output_dense.kernel),
        keras.ops.convert_to_numpy(layer.output_dense.bias),
    )
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, atol=1e-4, rtol=1e-5)


def test_is_position_wise():
    layer = ktl.FeedForward(intermediate_dim=8)
    x = np.random.rand(1, 4, 4).astype("float32")
    full = keras.ops.convert_to_numpy(layer(x))
    alone = keras.ops.convert_to_numpy(layer(x[:, 2:3]))
    np.testing.assert_allclose(full[:, 2:3], alone, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"intermediate_dim": 0}, "`intermediate_dim`.*Received: intermediate_dim=0"),
        ({"intermediate_dim": None}, "Received: intermediate_dim=None"),
        ({"intermediate_dim": 4, "dropout": 1.0}, r"Received: dropout=1\.0"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ktl.FeedForward(**kwargs)
