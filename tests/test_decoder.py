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
        ktl.TransformerDecoderBlock,
        {**BLOCK_KWARGS, "dropout": 0.1, "normalize_first": normalize_first},
        [np.random.rand(2, 4, 8).astype("float32"), np.random.rand(2, 6, 8).astype("float32")],
        expected_output_shape=(2, 4, 8),
        expected_num_trainable_weights=8 + 8 + 4 + 3 * 2,
        expected_num_non_trainable_variables=3,
    )


def test_decoder_only_block_contract(tmp_path):
    check_layer(
        tmp_path,
        ktl.TransformerDecoderBlock,
        BLOCK_KWARGS,
        [np.random.rand(2, 4, 8).astype("float32")],
        expected_output_shape=(2, 4, 8),
        expected_num_trainable_weights=8 + 4 + 2 * 2,
    )


def test_stack_contract(tmp_path):
    check_layer(
        tmp_path,
        ktl.TransformerDecoder,
        {"num_layers": 2, **BLOCK_KWARGS},
        [np.random.rand(2, 4, 8).astype("float32"), np.random.rand(2, 6, 8).astype("float32")],
        expected_output_shape=(2, 4, 8),
        expected_num_trainable_weights=2 * 26,
    )


@pytest.mark.parametrize("normalize_first", [False, True], ids=["post_norm", "pre_norm"])
def test_block_matches_numpy_reference(normalize_first):
    block = ktl.TransformerDecoderBlock(**BLOCK_KWARGS, normalize_first=normalize_first)
    target = np.random.normal(size=(2, 4, 8)).astype("float32")
    source = np.random.normal(size=(2, 6, 8)).astype("float32")
    target_mask = np.array([[True] * 4, [True, True, False, False]])
    source_mask = np.array([[True] * 6, [True, True, True, False, False, False]])
    block(target, source)
    randomize(block)
    output = keras.ops.convert_to_numpy(
        block(target, source, decoder_inputs_mask=target_mask, encoder_outputs_mask=source_mask)
    )
    for example in range(2):
        expected = ref.decoder_block(
            target[example],
            source[example],
            block_params(block),
            target_mask[example],
            source_mask[example],
            1e-5,
            normalize_first,
        )
        valid = target_mask[example]
        np.testing.assert_allclose(output[example][valid], expected[valid], atol=1e-5)


def test_stack_feeds_the_last_encoder_output_to_every_block():
    decoder = ktl.TransformerDecoder(num_layers=2, **BLOCK_KWARGS)
    target = np.random.normal(size=(1, 3, 8)).astype("float32")
    source = np.random.normal(size=(1, 5, 8)).astype("float32")
    decoder(target, source)
    randomize(decoder)
    ones = np.ones(3, bool)
    expected = target[0]
    for block in decoder.blocks:
        expected = ref.decoder_block(
            expected, source[0], block_params(block), ones, np.ones(5, bool), 1e-5
        )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(decoder(target, source))[0], expected, atol=1e-5
    )


@pytest.mark.parametrize("cross_attention", [True, False], ids=["encoder_decoder", "decoder_only"])
def test_changing_token_t_changes_no_earlier_output(cross_attention):
    decoder = ktl.TransformerDecoder(num_layers=2, **BLOCK_KWARGS)
    source = [np.random.normal(size=(1, 5, 8)).astype("float32")] if cross_attention else []
    target = np.random.normal(size=(1, 6, 8)).astype("float32")
    first = keras.ops.convert_to_numpy(decoder(target, *source))
    for t in range(6):
        changed = target.copy()
        changed[:, t] += np.random.normal(size=8).astype("float32") * 3
        second = keras.ops.convert_to_numpy(decoder(changed, *source))
        np.testing.assert_allclose(second[:, :t], first[:, :t], atol=1e-5)
        assert np.abs(second[:, t] - first[:, t]).max() > 1e-3


def test_masks_flow_from_embeddings_in_both_forms():
    source_ids = keras.Input((None,), dtype="int32")
    target_ids = keras.Input((None,), dtype="int32")
    source = ktl.PositionalEmbedding(20, 8)(source_ids)
    target = ktl.PositionalEmbedding(20, 8)(target_ids)
    decoded = ktl.TransformerDecoder(1, **BLOCK_KWARGS)(target, source)
    decoder_only = ktl.TransformerDecoder(1, **BLOCK_KWARGS)(target)
    model = keras.Model([source_ids, target_ids], [decoded, decoder_only])
    first, first_only = model([np.array([[3, 4, 0]]), np.array([[5, 6, 0]])])
    second, second_only = model([np.array([[3, 4, 0, 0, 0]]), np.array([[5, 6, 0, 0]])])
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(first)[0, :2],
        keras.ops.convert_to_numpy(second)[0, :2],
        atol=1e-5,
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(first_only)[0, :2],
        keras.ops.convert_to_numpy(second_only)[0, :2],
        atol=1e-5,
    )
    assert decoded._keras_mask is not None and decoder_only._keras_mask is not None


def test_rejects_encoder_width_mismatch():
    with pytest.raises(
        ValueError,
        match=r"`encoder_outputs` must have the same last dimension.*encoder_outputs.shape\[-1\]=6, decoder_inputs.shape\[-1\]=8",
    ):
        ktl.TransformerDecoderBlock(**BLOCK_KWARGS)(
            np.zeros((1, 3, 8), "float32"), np.zeros((1, 4, 6), "float32")
        )


def test_rejects_the_other_form_after_build():
    block = ktl.TransformerDecoderBlock(**BLOCK_KWARGS)
    block(np.zeros((1, 3, 8), "float32"))
    with pytest.raises(
        ValueError, match=r"built without cross-attention.*Received: encoder_outputs=<tensor"
    ):
        block(np.zeros((1, 3, 8), "float32"), np.zeros((1, 4, 8), "float32"))
    block = ktl.TransformerDecoderBlock(**BLOCK_KWARGS)
    block(np.zeros((1, 3, 8), "float32"), np.zeros((1, 4, 8), "float32"))
    with pytest.raises(
        ValueError, match="built with cross-attention.*Received: encoder_outputs=None"
    ):
        block(np.zeros((1, 3, 8), "float32"))


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="`num_heads`.*Received: num_heads=-2"):
        ktl.TransformerDecoder(num_layers=1, num_heads=-2, intermediate_dim=8)
    with pytest.raises(ValueError, match=r"`dropout`.*Received: dropout=1\.0"):
        ktl.TransformerDecoderBlock(num_heads=2, intermediate_dim=8, dropout=1.0)


def test_block_returns_the_attention_scores_of_both_attentions():
    block = ktl.TransformerDecoderBlock(**BLOCK_KWARGS)
    target = np.random.normal(size=(2, 4, 8)).astype("float32")
    source = np.random.normal(size=(2, 6, 8)).astype("float32")
    target_mask = np.array([[True] * 4, [True, True, False, False]])
    source_mask = np.array([[True] * 6, [True, True, True, False, False, False]])
    block(target, source)
    randomize(block)
    output, scores = block(
        target,
        source,
        decoder_inputs_mask=target_mask,
        encoder_outputs_mask=source_mask,
        return_attention_scores=True,
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(output),
        keras.ops.convert_to_numpy(
            block(target, source, decoder_inputs_mask=target_mask, encoder_outputs_mask=source_mask)
        ),
        atol=1e-6,
    )
    # The cross-attention weights are those of equation (1) on the block's own
    # intermediate tensors: recompute them with the NumPy reference.
    params = block_params(block)
    for example in range(2):
        y = target[example]
        self_mask = ref.padding_to_attention_mask(target_mask[example], target_mask[example])
        self_mask &= np.tril(np.ones((4, 4), bool))
        attended, self_weights = ref.multi_head_attention(y, y, params["self_attention"], self_mask)
        y = ref.layer_norm(y + attended, *params["self_attention_norm"], 1e-5)
        cross_mask = ref.padding_to_attention_mask(target_mask[example], source_mask[example])
        _, cross_weights = ref.multi_head_attention(
            y, source[example], params["cross_attention"], cross_mask
        )
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(scores["self_attention"])[example], self_weights, atol=1e-5
        )
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(scores["cross_attention"])[example], cross_weights, atol=1e-5
        )
    # The same structure in a functional call.
    symbolic = block(keras.Input((None, 8)), keras.Input((None, 8)), return_attention_scores=True)
    assert tuple(symbolic[1]["cross_attention"].shape) == (None, 2, None, None)
    only_self = ktl.TransformerDecoderBlock(**BLOCK_KWARGS)(target, return_attention_scores=True)[1]
    assert set(only_self) == {"self_attention"}
