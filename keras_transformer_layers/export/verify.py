"""Loads an exported artifact and compares it with the Keras model."""

import os

import keras
import numpy as np

from keras_transformer_layers.export import _checks


def _check_id_inputs(model, inputs):
    """Integer model inputs must be given integers: a float id would be truncated."""
    for tensor in keras.tree.flatten(model.input):
        name = tensor.name.split(":")[0]
        if name not in inputs or not keras.backend.is_int_dtype(tensor.dtype):
            continue
        dtype = np.asarray(inputs[name]).dtype
        if dtype.kind not in "iu":
            raise ValueError(
                f"`{name}` must be an integer array of token ids (a float id would be "
                f"truncated). Received: {name}.dtype={dtype}"
            )


def _reference_outputs(model, inputs, litert_names):
    """The reference outputs by name; with `litert_names`, a Keras model's as LiteRT names them.

    `model.export(format="litert")` names a model's outputs `output_0`,
    `output_1`, ... in the order of `model.outputs`.
    """
    from keras_transformer_layers.export import saved_model

    if isinstance(model, keras.Model):
        forward, specs = saved_model.forward_function(model)
        outputs = forward(*[np.asarray(inputs[spec.name]) for spec in specs])
        if litert_names:
            outputs = {f"output_{i}": value for i, value in enumerate(outputs.values())}
    elif callable(model):
        outputs = model(**inputs)
    else:
        raise ValueError(
            "`model` must be a `keras.Model` or a callable returning a dict of "
            f"outputs. Received: model={model!r}"
        )
    if not isinstance(outputs, dict):
        outputs = {"output_0": outputs}
    return {name: keras.ops.convert_to_numpy(value) for name, value in outputs.items()}


def _saved_model_outputs(path, inputs, signature):
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    if signature is None:
        signature = "forward" if "forward" in loaded.signatures else "serving_default"
    if signature not in loaded.signatures:
        raise ValueError(
            f"`signature` must be one of {sorted(loaded.signatures)}. "
            f"Received: signature={signature!r}"
        )
    function = loaded.signatures[signature]
    specs = function.structured_input_signature[1]
    feed = {
        name: tf.constant(np.asarray(inputs[name]), dtype=spec.dtype)
        for name, spec in specs.items()
    }
    return {name: value.numpy() for name, value in function(**feed).items()}


def _tflite_outputs(path, inputs, signature, num_threads):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=num_threads)
    signatures = interpreter.get_signature_list()
    if signature is None:
        signature = next(iter(signatures))
    if signature not in signatures:
        raise ValueError(
            f"`signature` must be one of {sorted(signatures)}. Received: signature={signature!r}"
        )
    runner = interpreter.get_signature_runner(signature)
    details = runner.get_input_details()
    feed = {
        name: np.asarray(inputs[name]).astype(detail["dtype"]) for name, detail in details.items()
    }
    return {name: np.asarray(value) for name, value in runner(**feed).items()}


def _pair_outputs(reference, exported):
    if set(reference) != set(exported):
        raise ValueError(
            "The exported outputs do not have the model's output names. "
            f"Received: model outputs={sorted(reference)}, exported={sorted(exported)}"
        )
    return [(reference[name], exported[name]) for name in sorted(reference)]


def verify_export(artifact, model, inputs, signature=None, num_threads=None):
    """Runs an exported artifact and the Keras model on the same inputs.

    Args:
        artifact: path of a SavedModel folder or of a `.tflite` file.
        model: the `keras.Model` that was exported, or for signatures other
            than the forward pass (e.g. a generation signature) a callable
            taking the same keyword inputs and returning a dict of outputs.
        inputs: dict from input name to NumPy array (or one array for a
            single-input model). Arrays are cast to the artifact's dtypes;
            the integer inputs of a `keras.Model` (token ids) must be given
            integer arrays.
        signature: optional signature name. Defaults to `"forward"` for a
            SavedModel that has it (else `"serving_default"`), and the first
            signature of a `.tflite` file.
        num_threads: optional int, LiteRT interpreter threads. Defaults to
            `None` (the interpreter's default).

    Outputs are paired by name: the signature's output names must be the
    model's (its `output_names`, or the keys of the callable's dict); a
    `keras.Model`'s outputs are compared with a `.tflite` file's as LiteRT
    names them, `output_0`, `output_1`, ... in the order of `model.outputs`.

    Returns:
        A dict with `"max_abs_diff"`: the largest absolute difference over
        every float output (`0.0` if there are none), and
        `"token_agreement"`: the share of identical tokens, over integer
        outputs compared directly and over float outputs of rank >= 2 after
        `argmax` on the last axis (logits); `None` if there are no such
        outputs.

    Raises:
        ModuleNotFoundError: `artifact` is a `.tflite` file and
            `ai-edge-litert` is not installed.
        ValueError: a bad argument, e.g. float ids for an integer input, or
            exported output names that are not the model's.

    Example:

    ```python
    result = verify_export("/tmp/model.tflite", model,
                           {"encoder_inputs": src, "decoder_inputs": tgt})
    assert result["max_abs_diff"] < 1e-4
    ```
    """
    artifact = os.fspath(artifact)
    if not isinstance(inputs, dict):
        if isinstance(model, keras.Model) and len(model.inputs) == 1:
            inputs = {model.inputs[0].name.split(":")[0]: inputs}
        else:
            raise ValueError(
                "`inputs` must be a dict from input name to array. "
                f"Received: inputs={type(inputs).__name__}"
            )
    if isinstance(model, keras.Model):
        _check_id_inputs(model, inputs)
    is_tflite = artifact.endswith(".tflite") and os.path.isfile(artifact)
    if os.path.isdir(artifact):
        exported = _saved_model_outputs(artifact, inputs, signature)
    elif is_tflite:
        _checks.require_litert("verify_export")
        exported = _tflite_outputs(artifact, inputs, signature, num_threads)
    else:
        raise ValueError(
            "`artifact` must be a SavedModel folder or an existing `.tflite` "
            f"file. Received: artifact={artifact!r}"
        )
    reference = _reference_outputs(model, inputs, litert_names=is_tflite)
    return _compare(_pair_outputs(reference, exported))


def _compare(pairs):
    """`max_abs_diff` and `token_agreement` (see `verify_export`) over `(expected, got)` pairs."""
    max_abs_diff = 0.0
    same_tokens, total_tokens = 0, 0
    for expected, got in pairs:
        if expected.shape != got.shape:
            raise ValueError(
                "An exported output has a different shape from the model's. "
                f"Received: model shape={expected.shape}, exported shape={got.shape}"
            )
        if np.issubdtype(expected.dtype, np.floating):
            diff = np.abs(expected.astype("float64") - got.astype("float64"))
            max_abs_diff = max(max_abs_diff, float(diff.max(initial=0.0)))
            if expected.ndim >= 2:
                equal = np.argmax(expected, -1) == np.argmax(got, -1)
                same_tokens += int(equal.sum())
                total_tokens += equal.size
        elif np.issubdtype(expected.dtype, np.integer):
            equal = expected == got
            same_tokens += int(equal.sum())
            total_tokens += equal.size
    return {
        "max_abs_diff": max_abs_diff,
        "token_agreement": same_tokens / total_tokens if total_tokens else None,
    }
