"""How N encoder blocks feed N decoder blocks: the paper's "last" and the layer-wise option."""

import keras
import numpy as np
import pytest

import keras_transformer_layers as ktl
from tests import numpy_reference as ref
from tests.layer_weights import block_params
from tests.layer_weights import randomize

pytestmark = pytest.mark.backend_neutral

KWARGS = {"num_layers": 2, "num_heads": 2, "intermediate_dim": 16, "layer_norm_epsilon": 1e-5}
NORMS = pytest.mark.parametrize("normalize_first", [False, True], ids=["post_norm", "pre_norm"])


def _numpy(tensor):
    return keras.ops.convert_to_numpy(tensor)


def _final_norm(stack):
    if stack.output_layer_norm is None:
        return None
    return _numpy(stack.output_layer_norm.gamma), _numpy(stack.output_layer_norm.beta)


def _stacks(normalize_first, source, target, connection="layerwise"):
    encoder = ktl.TransformerEncoder(
        **KWARGS, normalize_first=normalize_first, return_all_outputs=True
    )
    decoder = ktl.TransformerDecoder(
        **KWARGS, normalize_first=normalize_first, encoder_connection=connection
    )
    memories = encoder(source)
    decoder(target, memories if connection == "layerwise" else memories[-1])
    randomize(encoder)
    randomize(decoder)
    return encoder, decoder


def _inputs():
    source = np.random.normal(size=(2, 6, 8)).astype("float32")
    target = np.random.normal(size=(2, 4, 8)).astype("float32")
    source_mask = np.array([[True] * 6, [True, True, True, False, False, False]])
    target_mask = np.array([[True] * 4, [True, True, True, False]])
    return source, target, source_mask, target_mask


@NORMS
@pytest.mark.parametrize("connection", ["last", "layerwise"])
def test_stacks_match_the_numpy_reference(normalize_first, connection):
    source, target, source_mask, target_mask = _inputs()
    encoder, decoder = _stacks(normalize_first, source, target, connection)
    memories = encoder(source, mask=source_mask)
    output = decoder(
        target,
        memories if connection == "layerwise" else memories[-1],
        decoder_inputs_mask=target_mask,
        encoder_outputs_mask=source_mask,
    )
    encoder_blocks = [block_params(block) for block in encoder.blocks]
    decoder_blocks = [block_params(block) for block in decoder.blocks]
    for example in range(2):
        expected_memories = ref.encoder_stack(
            source[example],
            encoder_blocks,
            source_mask[example],
            1e-5,
            normalize_first,
            _final_norm(encoder),
        )
        real = source_mask[example]
        for got, expected in zip(memories, expected_memories, strict=True):
            np.testing.assert_allclose(_numpy(got)[example][real], expected[real], atol=1e-4)
        fed = expected_memories if connection == "layerwise" else [expected_memories[-1]] * 2
        expected = ref.decoder_stack(
            target[example],
            fed,
            decoder_blocks,
            target_mask[example],
            source_mask[example],
            1e-5,
            normalize_first,
            _final_norm(decoder),
        )
        real = target_mask[example]
        np.testing.assert_allclose(_numpy(output)[example][real], expected[real], atol=1e-4)


@NORMS
def test_layerwise_decoder_differs_from_the_paper_connection(normalize_first):
    source, target, _, _ = _inputs()
    encoder, layerwise = _stacks(normalize_first, source, target)
    last = ktl.TransformerDecoder(**KWARGS, normalize_first=normalize_first)
    memories = encoder(source)
    last(target, memories[-1])
    last.set_weights(layerwise.get_weights())
    difference = np.abs(_numpy(layerwise(target, memories)) - _numpy(last(target, memories[-1])))
    assert difference.max() > 1e-3
    # Given the last output N times, the layer-wise decoder is the paper's.
    np.testing.assert_allclose(
        _numpy(layerwise(target, [memories[-1]] * 2)),
        _numpy(last(target, memories[-1])),
        atol=1e-6,
    )


@NORMS
def test_last_of_all_outputs_is_the_stack_output_with_the_same_weights(normalize_first):
    source = np.random.normal(size=(2, 6, 8)).astype("float32")
    every = ktl.TransformerEncoder(
        **KWARGS, normalize_first=normalize_first, return_all_outputs=True
    )
    last = ktl.TransformerEncoder(**KWARGS, normalize_first=normalize_first)
    every(source)
    last(source)
    randomize(every)
    assert len(every.weights) == len(last.weights)
    last.set_weights(every.get_weights())
    outputs = every(source)
    assert isinstance(outputs, list) and len(outputs) == 2
    np.testing.assert_allclose(_numpy(outputs[-1]), _numpy(last(source)), atol=1e-6)


@NORMS
def test_layerwise_cached_steps_match_the_full_decoder(normalize_first):
    source, target, source_mask, _ = _inputs()
    target = np.random.normal(size=(2, 5, 8)).astype("float32")
    encoder, decoder = _stacks(normalize_first, source, target)
    memories = encoder(source, mask=source_mask)
    full = _numpy(decoder(target, memories, encoder_outputs_mask=source_mask))
    cross = decoder.compute_cross_attention_cache(memories)
    assert len(cross) == 2 and all(tuple(block.shape) == (2, 2, 6, 2, 4) for block in cross)
    # Block i's cross-attention cache projects encoder block i's output.
    np.testing.assert_allclose(
        _numpy(cross[0]),
        _numpy(decoder.blocks[0].compute_cross_attention_cache(memories[0])),
        atol=1e-6,
    )
    cache = decoder.initial_self_attention_cache(2, 5)
    steps = []
    for step in range(5):
        output, cache = decoder(
            target[:, step : step + 1],
            None,
            encoder_outputs_mask=source_mask,
            self_attention_cache=cache,
            self_attention_cache_update_index=step,
            cross_attention_cache=cross,
        )
        steps.append(_numpy(output))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)


def test_masks_flow_to_every_output_in_a_functional_model_and_the_file_reloads(tmp_path):
    source_ids = keras.Input((None,), dtype="int32")
    target_ids = keras.Input((None,), dtype="int32")
    memories = ktl.TransformerEncoder(**KWARGS, return_all_outputs=True)(
        ktl.PositionalEmbedding(20, 8)(source_ids)
    )
    output = ktl.TransformerDecoder(**KWARGS, encoder_connection="layerwise")(
        ktl.PositionalEmbedding(20, 8)(target_ids), memories
    )
    masks = [keras.ops.cast(memory._keras_mask, "int32") for memory in memories]
    model = keras.Model([source_ids, target_ids], [output, *masks])
    source, target = np.array([[4, 5, 6, 0]]), np.array([[7, 8, 9]])
    output, *masks = model([source, target])
    for mask in masks:
        np.testing.assert_array_equal(_numpy(mask), [[1, 1, 1, 0]])
    # Padding the source further changes nothing: its mask reached every block.
    longer, *_ = model([np.array([[4, 5, 6, 0, 0, 0]]), target])
    np.testing.assert_allclose(_numpy(output), _numpy(longer), atol=1e-5)
    model.save(tmp_path / "layerwise.keras")
    reloaded = keras.models.load_model(tmp_path / "layerwise.keras")
    np.testing.assert_allclose(_numpy(reloaded([source, target])[0]), _numpy(output), atol=1e-6)


def test_settings_round_trip_through_the_config():
    encoder = ktl.TransformerEncoder(**KWARGS, return_all_outputs=True)
    decoder = ktl.TransformerDecoder(**KWARGS, encoder_connection="layerwise")
    assert encoder.get_config()["return_all_outputs"] is True
    assert decoder.get_config()["encoder_connection"] == "layerwise"
    assert ktl.TransformerEncoder.from_config(encoder.get_config()).return_all_outputs is True
    clone = ktl.TransformerDecoder.from_config(decoder.get_config())
    assert clone.encoder_connection == "layerwise"
    assert ktl.TransformerDecoder(**KWARGS).get_config()["encoder_connection"] == "last"
    assert ktl.TransformerEncoder(**KWARGS).get_config()["return_all_outputs"] is False


def test_bad_settings_are_value_errors():
    match = r"`encoder_connection` must be one of 'last', 'layerwise'. Received: "
    with pytest.raises(ValueError, match=match + "encoder_connection='first'"):
        ktl.TransformerDecoder(**KWARGS, encoder_connection="first")
    with pytest.raises(ValueError, match=match + "encoder_connection=1"):
        ktl.TransformerDecoder(**KWARGS, encoder_connection=1)
    match = r"`return_all_outputs` must be a bool. Received: return_all_outputs='yes'"
    with pytest.raises(ValueError, match=match):
        ktl.TransformerEncoder(**KWARGS, return_all_outputs="yes")


def test_encoder_outputs_that_do_not_match_the_connection_are_value_errors():
    source, target, _, _ = _inputs()
    encoder, decoder = _stacks(False, source, target)
    memories = encoder(source)
    three = [memories[0], memories[1], memories[1]]
    layerwise = r"`encoder_outputs` must be a list or tuple of num_layers=2 items.* Received: "
    with pytest.raises(ValueError, match=layerwise + r"len\(encoder_outputs\)=3"):
        decoder(target, three)
    with pytest.raises(ValueError, match=layerwise + "encoder_outputs=<one tensor>"):
        decoder(target, memories[-1])
    with pytest.raises(ValueError, match=layerwise + r"len\(encoder_outputs\)=1"):
        decoder.compute_cross_attention_cache(memories[:1])
    match = r"`encoder_outputs_mask` must be a list .* Received: len\(encoder_outputs_mask\)=3"
    with pytest.raises(ValueError, match=match):
        decoder(target, memories, encoder_outputs_mask=[np.ones((2, 6), bool)] * 3)
    match = (
        r"`encoder_outputs` must be one tensor with encoder_connection='last'.* "
        "Received: encoder_outputs=<list of length 2>"
    )
    with pytest.raises(ValueError, match=match):
        ktl.TransformerDecoder(**KWARGS)(target, memories)
    # Unbuilt layer-wise stacks reject them when built, too.
    with pytest.raises(ValueError, match=r"Received: len\(encoder_outputs\)=1"):
        ktl.TransformerDecoder(**KWARGS, encoder_connection="layerwise")(target, memories[:1])
    # A functional model is checked while it is wired.
    with pytest.raises(ValueError, match=r"Received: len\(encoder_outputs\)=3"):
        decoder(keras.Input((4, 8)), [keras.Input((6, 8))] * 3)
