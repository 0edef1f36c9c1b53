"""Command line: export a `.keras` model of this package to SavedModel and TFLite.

Usage:

    python -m keras_transformer_layers.export MODEL.keras OUT_DIR \
        [--tflite] [--quantize float16|dynamic_int8] [--overwrite]

Writes `OUT_DIR/saved_model` (signatures `forward`, `serving_default` and,
for encoder-decoder models, `encoder`) and with `--tflite`
`OUT_DIR/model.tflite` (or `model_<quantize>.tflite`), printing one line per
step and the largest difference from the Keras model on random inputs. Exits
with status 2 and a message on a bad path, an unreadable file or a model that
has no layer of this package.
"""

import argparse
import os
import sys

PACKAGE = "keras_transformer_layers"


def _fail(message):
    print(f"error: {message}", file=sys.stderr)
    return 2


def _sample_inputs(model, batch_size=2, length=7, seed=0):
    """Random inputs for every model input: ids valid in every embedding."""
    import keras
    import numpy as np

    vocabulary_sizes = [
        getattr(layer, "vocabulary_size", None) or getattr(layer, "input_dim", None)
        for layer in model.layers
    ]
    high = min([size for size in vocabulary_sizes if size] or [2])
    rng = np.random.default_rng(seed)
    inputs = {}
    for tensor in keras.tree.flatten(model.input):
        name = tensor.name.split(":")[0]
        shape = [batch_size] + [length if d is None else d for d in tensor.shape[1:]]
        if "int" in str(tensor.dtype):
            inputs[name] = rng.integers(1, max(high, 2), shape).astype(tensor.dtype)
        else:
            inputs[name] = rng.standard_normal(shape).astype(tensor.dtype)
    return inputs


def _package_layers(model):
    import keras

    names = []
    for layer in model.layers:
        registered = keras.saving.get_registered_name(type(layer))
        if registered.startswith(PACKAGE + ">"):
            names.append(registered)
    return names


def main(argv=None):
    """Runs the command line; returns the exit status.

    Args:
        argv: list of arguments without the program name. Defaults to
            `sys.argv[1:]`.

    Returns:
        `0` on success, `2` on a bad argument or model.

    Example:

    ```
    python -m keras_transformer_layers.export model.keras out --tflite --quantize float16
    ```
    """
    parser = argparse.ArgumentParser(
        prog=f"python -m {PACKAGE}.export",
        description="Export a .keras model built with keras_transformer_layers "
        "to a SavedModel (and a TFLite file), verified against the Keras model.",
    )
    parser.add_argument("model", help="path of the .keras file")
    parser.add_argument("out_dir", help="output folder (must be new or empty)")
    parser.add_argument("--tflite", action="store_true", help="also write a .tflite file")
    parser.add_argument(
        "--quantize",
        choices=["float16", "dynamic_int8"],
        default=None,
        help="TFLite weight quantization (implies --tflite)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    args = parser.parse_args(argv)

    if not os.path.isfile(args.model):
        return _fail(f"MODEL must be an existing .keras file. Received: model={args.model!r}")
    if not args.model.endswith(".keras"):
        return _fail(f"MODEL must be a .keras file. Received: model={args.model!r}")
    if os.path.isfile(args.out_dir):
        return _fail(f"OUT_DIR must be a folder, not a file. Received: out_dir={args.out_dir!r}")
    if os.path.isdir(args.out_dir) and os.listdir(args.out_dir) and not args.overwrite:
        return _fail(
            "OUT_DIR exists and is not empty; pass --overwrite to replace its "
            f"exports. Received: out_dir={args.out_dir!r}"
        )

    steps = 3 if (args.tflite or args.quantize) else 2
    print(f"[1/{steps}] Loading {args.model}", flush=True)
    import keras

    import keras_transformer_layers  # noqa: F401  (registers the layers)
    from keras_transformer_layers import export

    try:
        model = keras.models.load_model(args.model)
    except Exception as error:  # noqa: BLE001  (any load failure is reported)
        return _fail(
            f"cannot read MODEL as a Keras model ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}). "
            f"Received: model={args.model!r}"
        )
    if not isinstance(model, keras.Model) or not _package_layers(model):
        return _fail(
            f"MODEL has no layer of {PACKAGE}; this command exports models "
            f"built with the package. Received: model={args.model!r}"
        )
    os.makedirs(args.out_dir, exist_ok=True)
    inputs = _sample_inputs(model)

    saved_model_path = os.path.join(args.out_dir, "saved_model")
    print(f"[2/{steps}] Writing SavedModel {saved_model_path}", flush=True)
    signatures = export.export_saved_model(model, saved_model_path, overwrite=args.overwrite)
    check = export.verify_export(saved_model_path, model, inputs)
    print(
        f"      signatures: {', '.join(signatures)}; "
        f"max |SavedModel - Keras| = {check['max_abs_diff']:.3g}",
        flush=True,
    )

    if steps == 3:
        suffix = f"_{args.quantize}" if args.quantize else ""
        tflite_path = os.path.join(args.out_dir, f"model{suffix}.tflite")
        print(f"[3/{steps}] Writing TFLite {tflite_path}", flush=True)
        report = export.export_tflite(
            model,
            tflite_path,
            quantization=args.quantize,
            sample_inputs=inputs,
            overwrite=args.overwrite,
        )
        print(
            f"      {report['size_bytes']} bytes; "
            f"max |TFLite - Keras| = {report['max_abs_diff']:.3g}; "
            f"token agreement {report['token_agreement']:.3f}",
            flush=True,
        )
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
