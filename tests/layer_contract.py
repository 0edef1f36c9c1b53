"""The checks every public layer passes, in one helper."""

import json

import keras
import numpy as np


def _symbolic_inputs(inputs):
    return [keras.Input(x.shape[1:], dtype=str(x.dtype)) for x in inputs]


def _structure(outputs):
    if isinstance(outputs, (tuple, list)):
        return [tuple(o.shape[1:]) for o in outputs]
    return tuple(outputs.shape[1:])


def _all_sublayers(layer):
    return list(layer._flatten_layers(include_self=False))


def check_layer(
    tmp_path,
    layer_cls,
    init_kwargs,
    inputs,
    expected_output_shape,
    expected_num_trainable_weights,
    expected_num_non_trainable_variables=0,
    call_kwargs=None,
):
    """Config round trip, build-only weights, symbolic == eager, fit, .keras, mixed precision.

    `inputs` is a list of NumPy arrays passed positionally to the layer.
    `expected_output_shape` is a shape, or a list of shapes when the layer
    returns a tuple.
    """
    call_kwargs = call_kwargs or {}

    # 1. get_config -> from_config -> get_config, and serialize -> JSON -> deserialize.
    layer = layer_cls(**init_kwargs)
    config = layer.get_config()
    revived = layer_cls.from_config(config)
    assert json.dumps(revived.get_config(), sort_keys=True) == json.dumps(config, sort_keys=True)
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    assert serialized["registered_name"] == f"keras_transformer_layers>{layer_cls.__name__}"
    deserialized = keras.saving.deserialize_keras_object(serialized)
    assert type(deserialized) is layer_cls
    assert deserialized.get_config() == config

    # 2. Weights exist after build() alone.
    layer = layer_cls(**init_kwargs)
    shapes = [x.shape for x in inputs]
    layer.build(*shapes)
    assert len(layer.trainable_weights) == expected_num_trainable_weights
    assert len(layer.non_trainable_variables) == expected_num_non_trainable_variables

    # 3. Eager and symbolic calls agree on structure, shapes and dtype.
    eager = layer(*inputs, **call_kwargs)
    symbolic = layer_cls(**init_kwargs)(*_symbolic_inputs(inputs), **call_kwargs)
    assert _structure(eager) == _structure(symbolic)
    flat_eager = eager if isinstance(eager, (tuple, list)) else [eager]
    if isinstance(expected_output_shape, list):
        assert [tuple(o.shape) for o in flat_eager] == [tuple(s) for s in expected_output_shape]
    else:
        assert tuple(eager.shape) == tuple(expected_output_shape)
    for output in flat_eager:
        assert keras.backend.standardize_dtype(output.dtype) == layer.compute_dtype

    # 4. One compiled training step.
    symbolic_inputs = _symbolic_inputs(inputs)
    outputs = layer_cls(**init_kwargs)(*symbolic_inputs, **call_kwargs)
    first_output = outputs[0] if isinstance(outputs, (tuple, list)) else outputs
    model = keras.Model(symbolic_inputs, first_output)
    model.compile(optimizer="sgd", loss="mse", jit_compile="auto")
    target = np.zeros(first_output.shape[1:], "float32")[None].repeat(len(inputs[0]), 0)
    history = model.fit(inputs, target, epochs=1, batch_size=len(inputs[0]), verbose=0)
    assert np.isfinite(history.history["loss"][0])

    # 5. A .keras file reloads as the same class with the same outputs.
    path = str(tmp_path / f"{layer_cls.__name__}.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    assert any(type(sub) is layer_cls for sub in restored.layers)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(inputs)),
        keras.ops.convert_to_numpy(restored(inputs)),
        atol=1e-6,
    )

    # 6. Mixed precision: compute dtype outputs, float32 variables, one policy throughout.
    for policy in ("mixed_float16", "mixed_bfloat16"):
        layer = layer_cls(**init_kwargs, dtype=policy)
        outputs = layer(*inputs, **call_kwargs)
        flat = outputs if isinstance(outputs, (tuple, list)) else [outputs]
        symbolic = layer_cls(**init_kwargs, dtype=policy)(*_symbolic_inputs(inputs), **call_kwargs)
        flat_symbolic = symbolic if isinstance(symbolic, (tuple, list)) else [symbolic]
        compute_dtype = policy.split("_")[1]
        for output in list(flat) + list(flat_symbolic):
            assert keras.backend.standardize_dtype(output.dtype) == compute_dtype
        for output in flat:
            assert np.all(
                np.isfinite(keras.ops.convert_to_numpy(keras.ops.cast(output, "float32")))
            )
        for variable in layer.weights:
            if variable.trainable:
                assert variable.dtype == "float32", variable.path
        for sublayer in _all_sublayers(layer):
            assert sublayer.dtype_policy.name == policy, sublayer.path
    return layer
