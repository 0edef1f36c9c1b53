"""TFLite (LiteRT) conversion with builtin ops only, optional quantization."""

import os
import struct

import keras

from keras_transformer_layers.export import _checks
from keras_transformer_layers.export import _converter
from keras_transformer_layers.export import _io
from keras_transformer_layers.export import verify


def export_tflite(model, path, quantization=None, sample_inputs=None, overwrite=False):
    """Converts a model to a `.tflite` flat buffer with TFLite builtin ops only.

    Uses Keras' own `model.export(path, format="litert")` and restricts the
    converter to `TFLITE_BUILTINS`, so the file runs on the standalone LiteRT
    interpreter (`ai-edge-litert`) with no Flex delegate; a model that would
    need a TensorFlow (Flex) op fails to convert instead of failing on the
    device. Batch size and sequence lengths stay dynamic: resize the inputs
    (the LiteRT signature runner does it for you). The weights are frozen
    into the file.

    TFLite has no builtin assert, so ids are checked by the table lookups
    themselves: `GATHER` raises (`RuntimeError: gather index out of bounds`
    from the interpreter) for an id outside the vocabulary (a negative id
    too: `PositionalEmbedding` sends it past the end of its table instead of
    wrapping it) and for a sequence longer than a learned position table.

    Args:
        model: Keras model with inputs.
        path: output file, ending in `.tflite`. It must not exist unless
            `overwrite=True`.
        quantization: `None` (float32), `"float16"` (float16 weights) or
            `"dynamic_int8"` (dynamic-range int8 weights, float activations).
            Defaults to `None`.
        sample_inputs: optional dict from input name to NumPy array (or one
            array for a single-input model); when given the file is run on
            them and compared with the Keras model. Defaults to `None`.
        overwrite: bool, replace an existing file. Defaults to `False`.
            The model must compute in float32 (a `mixed_float16` model is
            refused with a clear error; use `quantization="float16"`).

    The file is written, read back and (with `sample_inputs`) run in a
    fresh folder next to `path`, then put in place in one step: any
    failure, including an exception from the comparison, leaves `path` as
    it was.

    Returns:
        A dict with `"path"`, `"quantization"`, `"size_bytes"`, `"op_names"`
        (sorted distinct op names in every subgraph) and, with
        `sample_inputs`, `"max_abs_diff"` and `"token_agreement"` (see
        `verify_export`); otherwise those two are `None`.

    Raises:
        ModuleNotFoundError: `ai-edge-litert` is not installed (checked
            before anything is written; `pip install ".[litert]"`).
        ValueError: a bad argument, or a model that does not compute in
            float32.
        FileExistsError: with `overwrite=False`, another writer created
            `path` while this export ran; it is left as that writer left it.
        OSError: the file cannot be written (`path` is left as it was).

    Example:

    ```python
    report = export_tflite(model, "/tmp/model_int8.tflite",
                           quantization="dynamic_int8",
                           sample_inputs={"encoder_inputs": src,
                                          "decoder_inputs": tgt})
    print(report["size_bytes"], report["max_abs_diff"])
    ```
    """
    _checks.require_litert("export_tflite")
    _checks.check_quantization(quantization)
    _checks.check_model(model)
    _checks.check_float32(
        "model",
        [
            layer.dtype_policy.name
            for layer in model.layers
            if not isinstance(layer, keras.layers.InputLayer) and layer.compute_dtype != "float32"
        ],
    )
    path = _checks.check_output_path("path", path, overwrite, kind="file", suffix=".tflite")
    settings = _converter.converter_settings(quantization)
    with _io.written_aside(path, overwrite) as new:
        model.export(new, format="litert", verbose=False, **settings)
        # Read and check the file before it replaces anything at `path`.
        report = {
            "path": path,
            "quantization": quantization,
            "size_bytes": os.path.getsize(new),
            "op_names": tflite_op_names(new),
            "max_abs_diff": None,
            "token_agreement": None,
        }
        if sample_inputs is not None:
            report.update(verify.verify_export(new, model, sample_inputs))
    return report


def tflite_op_names(path):
    """The distinct operator names used anywhere in a `.tflite` file.

    Reads the flat buffer with the schema bundled in `ai_edge_litert` (no
    TensorFlow needed). Builtin ops appear by their builtin name (e.g.
    `"FULLY_CONNECTED"`, `"WHILE"`); custom ops, including Flex ops, appear
    as `"CUSTOM:<code>"` (e.g. `"CUSTOM:FlexEinsum"`).

    Args:
        path: path of a `.tflite` file.

    Returns:
        A sorted list of strings.

    Raises:
        ValueError: `path` is not a readable TFLite flat buffer (missing,
            truncated or another kind of file).
        ModuleNotFoundError: `ai-edge-litert` is not installed.

    Example:

    >>> ops = tflite_op_names("/tmp/model.tflite")
    >>> [op for op in ops if op.startswith("CUSTOM")]
    []
    """
    _checks.require_litert("tflite_op_names")
    from ai_edge_litert import schema_py_generated as schema

    if not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
        raise ValueError(f"`path` must be an existing `.tflite` file. Received: path={path!r}")
    with open(path, "rb") as f:
        buffer = f.read()
    # A flat buffer starts with the root offset and the identifier "TFL3".
    if len(buffer) < 8 or buffer[4:8] != b"TFL3":
        raise ValueError(
            "`path` must be a TFLite flat buffer (identifier 'TFL3' at bytes "
            f"4-8). Received: path={os.fspath(path)!r} ({len(buffer)} bytes "
            f"starting {buffer[:8]!r})"
        )
    builtin_names = {
        value: key for key, value in vars(schema.BuiltinOperator).items() if not key.startswith("_")
    }
    names = set()
    try:
        flat_model = schema.Model.GetRootAs(buffer, 0)
        for i in range(flat_model.OperatorCodesLength()):
            code = flat_model.OperatorCodes(i)
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            if builtin == schema.BuiltinOperator.CUSTOM:
                custom = code.CustomCode()
                names.add("CUSTOM:" + (custom.decode() if custom else "?"))
            else:
                names.add(builtin_names.get(builtin, str(builtin)))
    except (struct.error, IndexError, UnicodeDecodeError) as error:
        raise ValueError(
            "`path` is not a readable TFLite flat buffer (truncated or "
            f"corrupt: {type(error).__name__}: {error}). "
            f"Received: path={os.fspath(path)!r} ({len(buffer)} bytes)"
        ) from error
    return sorted(names)
