import keras
import numpy as np
import pytest

import keras_transformer_layers as ktl
from tests import numpy_reference as ref
from tests.layer_contract import check_layer
from tests.layer_weights import block_params
from tests.layer_weights import randomize

pytestmark = pytest.mark.backend_neutral

BLOCK_KWARGS = {"num_heads": 2, "intermediate_dim": 16, "layer_norm_epsilon": 1e-5}


@pytest.mark.parametrize("normalize_first", [False, True], ids=["post_norm", "pre_norm"])
def test_block_contract(tmp_path, normalize_first):
    check_layer(
        tmp_path,
        ktl.TransformerEncoderBlock,
        {**BLOCK_KWARGS, "dropout": 0.1, "normalize_first": normalize_first},
        [np.random.rand(2, 5, 8).astype("float32")],
        expected_output_shape=(2, 5, 8),
        # 8 attention + 4 feed-forward + 2 x (gamma, beta)
        expected_num_trainable_weights=16,
        expected_num_non_trainable_variables=2,  # one dropout seed per residual
    )


def test_stack_contract(tmp_path):
    check_layer(
        tmp_path,
        ktl.TransformerEncoder,
        {"num_layers": 2, **BLOCK_KWARGS, "normalize_first": True},
        [np.random.rand(2, 5, 8).astype("float32")],
        expected_output_shape=(2, 5, 8),
        expected_num_trainable_weights=2 * 16 + 2,  # + final LayerNorm
    )


@pytest.mark.parametrize("normalize_first", [False, True], ids=["post_norm", "pre_norm"])
def test_block_matches_numpy_reference(normalize_first):
    block = ktl.TransformerEncoderBlock(**BLOCK_KWARGS, normalize_first=normalize_first)
    x = np.random.normal(size=(2, 5, 8)).astype("float32")
    mask = np.array([[True] * 5, [True, True, True, False, False]])
    block(x)
    randomize(block)
    output = keras.ops.convert_to_numpy(block(x, mask=mask))
    for example in range(2):
        expected = ref.encoder_block(
            x[example], block_params(block), mask[example], 1e-5, normalize_first
        )
        valid = mask[example]
        np.testing.assert_allclose(output[example][valid], expected[valid], atol=1e-5)


def test_stack_matches_numpy_reference_block_after_block():
    encoder = ktl.TransformerEncoder(num_layers=2, **BLOCK_KWARGS)
    x = np.random.normal(size=(1, 4, 8)).astype("float32")
    mask = np.array([[True, True, True, False]])
    encoder(x)
    randomize(encoder)
    expected = x[0]
    for block in encoder.blocks:
        expected = ref.encoder_block(expected, block_params(block), mask[0], 1e-5)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(encoder(x, mask=mask))[0, :3], expected[:3], atol=1e-5
    )


def test_padding_mask_flows_through_the_stack():
    ids = keras.Input((None,), dtype="int32")
    embedded = ktl.PositionalEmbedding(20, 8)(ids)
    encoded = ktl.TransformerEncoder(num_layers=2, **BLOCK_KWARGS)(embedded)
    model = keras.Model(ids, [encoded, keras.ops.cast(encoded._keras_mask, "int32")])
    short, mask = model(np.array([[4, 5, 6, 0]]))
    longer, _ = model(np.array([[4, 5, 6, 0, 0, 0, 0]]))
    np.testing.assert_array_equal(mask, [[1, 1, 1, 0]])
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(short)[0, :3],
        keras.ops.convert_to_numpy(longer)[0, :3],
        atol=1e-5,
    )


def test_training_reaches_every_sublayer():
    # With dropout ~1 every sublayer output is dropped: a post-norm block
    # reduces to LayerNorm(LayerNorm(x)) = LayerNorm(x) (KerasHub's check).
    block = ktl.TransformerEncoderBlock(**BLOCK_KWARGS, dropout=0.9999999)
    x = np.random.normal(size=(2, 3, 8)).astype("float32")
    output = keras.ops.convert_to_numpy(block(x, training=True))
    expected = ref.layer_norm(ref.layer_norm(x, 1.0, 0.0, 1e-5), 1.0, 0.0, 1e-5)
    np.testing.assert_allclose(output, expected, atol=1e-4)


def test_rejects_model_dim_not_divisible_by_num_heads():
    with pytest.raises(
        ValueError, match="divisible by `num_heads`.*Received: model_dim=6, num_heads=4"
    ):
        ktl.TransformerEncoderBlock(num_heads=4, intermediate_dim=8)(np.zeros((1, 2, 6), "float32"))
    # An explicit key_dim lifts the requirement.
    block = ktl.TransformerEncoderBlock(num_heads=4, intermediate_dim=8, key_dim=3)
    assert block(np.zeros((1, 2, 6), "float32")).shape == (1, 2, 6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_heads": 0, "intermediate_dim": 8}, "`num_heads`.*Received: num_heads=0"),
        (
            {"num_heads": 2, "intermediate_dim": -1},
            "`intermediate_dim`.*Received: intermediate_dim=-1",
        ),
        ({"num_heads": 2, "intermediate_dim": 8, "dropout": 2}, "`dropout`.*Received: dropout=2"),
        (
            {"num_heads": 2, "intermediate_dim": 8, "layer_norm_epsilon": -1.0},
            r"Received: layer_norm_epsilon=-1\.0",
        ),
    ],
)
def test_block_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ktl.TransformerEncoderBlock(**kwargs)


def test_stack_rejects_bad_num_layers():
    with pytest.raises(ValueError, match="`num_layers`.*Received: num_layers=0"):
        ktl.TransformerEncoder(num_layers=0, num_heads=2, intermediate_dim=8)


def test_rejects_rank_two_input():
    with pytest.raises(
        ValueError, match=r"`inputs` must be a rank-3.*Received: inputs.shape=\(2, 8\)"
    ):
        ktl.TransformerEncoder(1, 2, 8)(np.zeros((2, 8), "float32"))
