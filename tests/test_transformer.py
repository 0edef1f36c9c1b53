import keras
import numpy as np
import pytest

import keras_transformer_layers as ktl
from keras_transformer_layers.tokens import END_ID
from keras_transformer_layers.tokens import START_ID
from tests import example_modules

reversal_task = example_modules.load("reversal_task")
reversal_arrays = reversal_task.reversal_arrays

SMALL = {"num_layers": 2, "model_dim": 16, "num_heads": 2, "intermediate_dim": 32}


def test_inputs_outputs_and_paper_defaults():
    model = ktl.build_transformer(30, 40, **SMALL)
    assert sorted(t.name for t in model.inputs) == ["decoder_inputs", "encoder_inputs"]
    assert all(tuple(t.shape) == (None, None) for t in model.inputs)
    logits = model({"encoder_inputs": np.array([[3, 4, 5]]), "decoder_inputs": np.array([[1, 6]])})
    assert logits.shape == (1, 2, 40)
    base = ktl.build_transformer(100, 100)
    encoder = base.get_layer("encoder")
    assert (encoder.num_layers, encoder.num_heads, encoder.intermediate_dim, encoder.dropout) == (
        6,
        8,
        2048,
        0.1,
    )
    assert base.get_layer("encoder_embedding").embedding_dim == 512


def _padded(rows, length):
    return np.array([row + [0] * (length - len(row)) for row in rows], "int32")


@pytest.mark.parametrize("normalize_first", [False, True], ids=["post_norm", "pre_norm"])
def test_padding_changes_no_real_target_output(normalize_first):
    model = ktl.build_transformer(30, 30, **SMALL, normalize_first=normalize_first)
    source, target = [[5, 6, 7], [8, 9, 10, 11, 12]], [[1, 4], [1, 4, 5, 6]]
    reference = np.asarray(
        model({"encoder_inputs": _padded(source, 5), "decoder_inputs": _padded(target, 4)})
    )
    longer = np.asarray(
        model({"encoder_inputs": _padded(source, 9), "decoder_inputs": _padded(target, 7)})
    )
    # The same padding, but the model sees more of it: nothing real moves.
    np.testing.assert_allclose(longer[0, :2], reference[0, :2], atol=1e-5)
    np.testing.assert_allclose(longer[1, :4], reference[1, :4], atol=1e-5)
    # Alone in its batch, with no padding at all, each row gives the same logits.
    alone = np.asarray(
        model({"encoder_inputs": np.array([source[0]]), "decoder_inputs": np.array([target[0]])})
    )
    np.testing.assert_allclose(alone[0], reference[0, :2], atol=1e-5)


def test_changing_target_token_t_changes_no_earlier_logit():
    model = ktl.build_transformer(30, 30, **SMALL)
    source = np.array([[5, 6, 7, 8]])
    target = np.array([[1, 9, 10, 11, 12]])
    reference = np.asarray(model({"encoder_inputs": source, "decoder_inputs": target}))
    for t in range(1, 5):
        changed = target.copy()
        changed[0, t] = 20
        logits = np.asarray(model({"encoder_inputs": source, "decoder_inputs": changed}))
        np.testing.assert_allclose(logits[0, :t], reference[0, :t], atol=1e-5)
        assert np.abs(logits[0, t] - reference[0, t]).max() > 1e-4


def test_logits_carry_the_target_padding_mask_and_stay_float32_in_mixed_precision():
    model = ktl.build_transformer(30, 30, **SMALL)
    assert model.outputs[0]._keras_mask is not None
    keras.config.set_dtype_policy("mixed_bfloat16")
    mixed = ktl.build_transformer(30, 30, **SMALL)
    logits = mixed({"encoder_inputs": np.array([[3, 4]]), "decoder_inputs": np.array([[1, 5]])})
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    assert mixed.get_layer("decoder").compute_dtype == "bfloat16"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"source_vocabulary_size": 0},
            "`source_vocabulary_size`.*Received: source_vocabulary_size=0",
        ),
        (
            {"target_vocabulary_size": -5},
            "`target_vocabulary_size`.*Received: target_vocabulary_size=-5",
        ),
        (
            {"model_dim": 30, "num_heads": 4},
            "divisible by `num_heads`.*Received: model_dim=30, num_heads=4",
        ),
        ({"num_heads": 0}, "`num_heads`.*Received: num_heads=0"),
        ({"dropout": 1.0}, r"`dropout`.*Received: dropout=1\.0"),
        ({"intermediate_dim": 0}, "`intermediate_dim`.*Received: intermediate_dim=0"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    arguments = {"source_vocabulary_size": 10, "target_vocabulary_size": 10, **SMALL}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ktl.build_transformer(**arguments)


def test_reversal_data_is_shifted_for_teacher_forcing():
    inputs, target = reversal_arrays(5, min_length=2, max_length=4, seed=1)
    for source, decoder_inputs, target_out in zip(
        inputs["encoder_inputs"], inputs["decoder_inputs"], target, strict=True
    ):
        tokens = source[source != 0]
        np.testing.assert_array_equal(decoder_inputs[: len(tokens) + 1], [START_ID, *tokens[::-1]])
        np.testing.assert_array_equal(target_out[: len(tokens) + 1], [*tokens[::-1], END_ID])
        np.testing.assert_array_equal(
            decoder_inputs[1:], target_out[:-1] * (target_out[:-1] != END_ID)
        )
    with pytest.raises(
        ValueError, match="`max_length` must be at least `min_length`.*min_length=5, max_length=3"
    ):
        reversal_arrays(2, min_length=5, max_length=3)
    with pytest.raises(ValueError, match="Received: vocabulary_size=4"):
        reversal_arrays(2, vocabulary_size=4)
