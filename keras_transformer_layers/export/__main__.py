"""Command line: export a `.keras` model of this package to SavedModel and TFLite.

Usage:

    python -m keras_transformer_layers.export MODEL.keras OUT_DIR \
        [--tflite] [--quantize float16|dynamic_int8] [--overwrite]

Writes `OUT_DIR/saved_model` (signatures `forward`, `serving_default` and,
for encoder-decoder models, `encoder`) and with `--tflite`
`OUT_DIR/model.tflite` (or `model_<quantize>.tflite`), printing one line per
step and the largest difference from the Keras model on random inputs.

The artifacts are written to a staging folder and moved into place together
once all are written and checked: on any failure (a bad or unreadable file,
a model with no layer of this package, `--tflite` without `ai-edge-litert`,
a read-only or full disk, a failed conversion) the command exits with status
2 and one line saying what to do, and OUT_DIR is left exactly as it was.
"""

import argparse
import os
import sys
import zipfile

from keras_transformer_layers import _tensorflow_notices as tensorflow_notices

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
        `0` on success, `2` on any failure (OUT_DIR is then left as it was).

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
    if not zipfile.is_zipfile(args.model):
        return _fail(
            "MODEL is not a Keras archive: a .keras file is a zip archive "
            "written by `model.save`, and this file is not a zip archive "
            f"(corrupt, truncated or another format). Received: model={args.model!r}"
        )
    out_dir = os.path.abspath(args.out_dir)
    if os.path.isfile(out_dir):
        return _fail(f"OUT_DIR must be a folder, not a file. Received: out_dir={args.out_dir!r}")
    with_tflite = bool(args.tflite or args.quantize)

    import keras
    import tensorflow as tf

    import keras_transformer_layers  # noqa: F401  (registers the layers)
    from keras_transformer_layers.export import _io

    if with_tflite:
        try:
            _io.require_litert("--tflite")
        except ModuleNotFoundError:
            return _fail(
                "--tflite and --quantize need the optional package ai-edge-litert; "
                "nothing was written. Install it from the repository root "
                f"with `{_io.LITERT_INSTALL}`, "
                "or run without --tflite/--quantize."
            )
    try:
        if os.path.isdir(out_dir):
            _io.recover_staging(out_dir)
    except OSError as error:
        return _write_failure(error, args.out_dir)
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not args.overwrite:
        return _fail(
            "OUT_DIR exists and is not empty; pass --overwrite to replace its "
            f"exports. Received: out_dir={args.out_dir!r}"
        )

    steps = 3 if with_tflite else 2
    print(f"[1/{steps}] Loading {args.model}", flush=True)
    try:
        model = keras.models.load_model(args.model)
    except Exception as error:  # noqa: BLE001  (any load failure is reported)
        return _fail(
            f"cannot read MODEL as a Keras model ({_one_line(error)}). "
            f"Received: model={args.model!r}"
        )
    if not isinstance(model, keras.Model) or not _package_layers(model):
        return _fail(
            f"MODEL has no layer of {PACKAGE}; this command exports models "
            f"built with the package. Received: model={args.model!r}"
        )
    inputs = _sample_inputs(model)
    suffix = f"_{args.quantize}" if args.quantize else ""
    names = ["saved_model"] + ([f"model{suffix}.tflite"] if with_tflite else [])
    try:
        _write(model, inputs, out_dir, names, args, steps)
    except (OSError, tf.errors.OpError) as error:
        return _write_failure(error, args.out_dir)
    except Exception as error:  # noqa: BLE001  (one line, OUT_DIR unchanged)
        return _fail(
            f"the export failed ({_one_line(error)}); OUT_DIR was left as it "
            "was. Fix that cause, or run "
            "`keras_transformer_layers.export.export_saved_model` / "
            f"`export_tflite` in Python for the full traceback. "
            f"Received: out_dir={args.out_dir!r}"
        )
    print("done", flush=True)
    return 0


def _one_line(error):
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _write_failure(error, out_dir):
    return _fail(
        f"cannot write to OUT_DIR ({_one_line(error)}); it was left as it was. "
        "Check that it is writable and that the disk has free space, then run "
        f"again. Received: out_dir={out_dir!r}"
    )


def _write(model, inputs, out_dir, names, args, steps):
    """Writes every artifact in staging, then moves them all into place at once.

    An OUT_DIR that does not exist yet appears only when every artifact is
    written and checked; in an existing OUT_DIR the artifacts replace the
    previous ones together (the previous ones are kept on any failure).
    """
    from keras_transformer_layers import export
    from keras_transformer_layers.export import _io

    created = not os.path.isdir(out_dir)
    if created:
        os.makedirs(os.path.dirname(out_dir), exist_ok=True)
        _io.recover_staging(os.path.dirname(out_dir))
    targets = [out_dir] if created else [os.path.join(out_dir, name) for name in names]
    with _io.atomic_outputs(targets) as staged:
        if created:
            os.mkdir(staged[0])
            paths = [os.path.join(staged[0], name) for name in names]
        else:
            paths = staged
        print(f"[2/{steps}] Writing SavedModel {os.path.join(args.out_dir, names[0])}", flush=True)
        signatures = export.export_saved_model(model, paths[0])
        check = export.verify_export(paths[0], model, inputs)
        print(
            f"      signatures: {', '.join(signatures)}; "
            f"max |SavedModel - Keras| = {check['max_abs_diff']:.3g}",
            flush=True,
        )
        if steps == 3:
            print(f"[3/{steps}] Writing TFLite {os.path.join(args.out_dir, names[1])}", flush=True)
            report = export.export_tflite(
                model, paths[1], quantization=args.quantize, sample_inputs=inputs
            )
            print(
                f"      {report['size_bytes']} bytes; "
                f"max |TFLite - Keras| = {report['max_abs_diff']:.3g}; "
                f"token agreement {report['token_agreement']:.3f}",
                flush=True,
            )


if __name__ == "__main__":
    # TensorFlow is loaded by now (the package imports Keras); its notices at
    # import come before any line here can run. The filter drops the ones
    # that follow: the cuInit and oneDNN `E0000` lines, LiteRT's XNNPACK line.
    tensorflow_notices.filter_stderr()
    sys.exit(main())
