"""Command line: export a `.keras` model of this package to SavedModel and TFLite.

Usage:

    python -m keras_transformer_layers.export MODEL.keras OUT_DIR \
        [--tflite] [--quantize float16|dynamic_int8] [--overwrite]

Writes `OUT_DIR/saved_model` (signatures `forward`, `serving_default` and,
for encoder-decoder models, `encoder`) and with `--tflite`
`OUT_DIR/model.tflite` (or `model_<quantize>.tflite`), printing one line per
step and the largest difference from the Keras model on random inputs.

The artifacts are written into a fresh folder inside OUT_DIR; once all are
written and checked, each replaces its previous version in one step. On any
failure (a bad or unreadable file, a model with no layer of this package,
`--tflite` without `ai-edge-litert`, a read-only or full disk, a failed
conversion) the command exits with status 2 and one line saying what to do;
a failure before the artifacts are put in place leaves OUT_DIR as it was, and
the folders the command created are deleted.
"""

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import zipfile

from keras_transformer_layers import _tensorflow_notices as tensorflow_notices
from keras_transformer_layers.export import _checks

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


def _parser():
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
        choices=[q for q in _checks.QUANTIZATIONS if q is not None],
        default=None,
        help="TFLite weight quantization (implies --tflite)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    return parser


def _argument_error(args):
    """The message for a bad MODEL or OUT_DIR, or `None`."""
    if not os.path.isfile(args.model):
        return f"MODEL must be an existing .keras file. Received: model={args.model!r}"
    if not args.model.endswith(".keras"):
        return f"MODEL must be a .keras file. Received: model={args.model!r}"
    if not zipfile.is_zipfile(args.model):
        return (
            "MODEL is not a Keras archive: a .keras file is a zip archive "
            "written by `model.save`, and this file is not a zip archive "
            f"(corrupt, truncated or another format). Received: model={args.model!r}"
        )
    out_dir = os.path.abspath(args.out_dir)
    if os.path.isfile(out_dir):
        return f"OUT_DIR must be a folder, not a file. Received: out_dir={args.out_dir!r}"
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not args.overwrite:
        return (
            "OUT_DIR exists and is not empty; pass --overwrite to replace its "
            f"exports. Received: out_dir={args.out_dir!r}"
        )
    return None


def _load(path):
    """`(model, None)` or `(None, message)`."""
    import keras

    import keras_transformer_layers  # noqa: F401  (registers the layers)

    try:
        model = keras.models.load_model(path)
    except Exception as error:  # noqa: BLE001  (any load failure is reported)
        return None, (
            f"cannot read MODEL as a Keras model ({_one_line(error)}). Received: model={path!r}"
        )
    if not isinstance(model, keras.Model) or not _package_layers(model):
        return None, (
            f"MODEL has no layer of {PACKAGE}; this command exports models "
            f"built with the package. Received: model={path!r}"
        )
    return model, None


def main(argv=None):
    """Runs the command line; returns the exit status.

    Args:
        argv: list of arguments without the program name. Defaults to
            `sys.argv[1:]`.

    Returns:
        `0` on success, `2` on any failure.

    Example:

    ```
    python -m keras_transformer_layers.export model.keras out --tflite --quantize float16
    ```
    """
    args = _parser().parse_args(argv)
    message = _argument_error(args)
    if message is not None:
        return _fail(message)
    with_tflite = bool(args.tflite or args.quantize)
    import tensorflow as tf

    if with_tflite:
        try:
            _checks.require_litert("--tflite")
        except ModuleNotFoundError:
            return _fail(
                "--tflite and --quantize need the optional package ai-edge-litert; "
                "nothing was written. Install it from the repository root "
                f"with `{_checks.LITERT_INSTALL}`, or run without --tflite/--quantize."
            )
    steps = 3 if with_tflite else 2
    print(f"[1/{steps}] Loading {args.model}", flush=True)
    model, message = _load(args.model)
    if message is not None:
        return _fail(message)
    suffix = f"_{args.quantize}" if args.quantize else ""
    names = ["saved_model"] + ([f"model{suffix}.tflite"] if with_tflite else [])
    try:
        _write(model, os.path.abspath(args.out_dir), names, args, steps)
    except FileExistsError as error:
        return _fail(
            f"{error.filename} was created by another writer while this export ran; it "
            "was left as it is. Pass --overwrite to replace it. "
            f"Received: out_dir={args.out_dir!r}"
        )
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


def _make_folders(folder):
    """Creates `folder` and its missing parents; returns those this call created."""
    missing = []
    while not os.path.isdir(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    created = []
    for folder in reversed(missing):
        try:
            os.mkdir(folder)
        except FileExistsError:
            continue
        created.append(folder)
    return created


def _write(model, out_dir, names, args, steps):
    """Writes every artifact into a fresh folder in OUT_DIR, then puts each in place.

    Nothing in OUT_DIR changes before every artifact is written and checked;
    then each replaces its previous version in one step. On failure the
    folders this call created are deleted (OUT_DIR and its parents included,
    when it created them and they hold nothing else).
    """
    from keras_transformer_layers.export import _io

    created = _make_folders(out_dir)
    try:
        scratch = tempfile.mkdtemp(prefix=_io.STAGING_PREFIX, dir=out_dir)
        try:
            paths = [os.path.join(scratch, name) for name in names]
            _export(model, paths, args, steps)
            for path, name in zip(paths, names, strict=True):
                _io.put_in_place(path, os.path.join(out_dir, name), args.overwrite)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    except BaseException:
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # only if empty: nothing another writer put there
        raise


def _export(model, paths, args, steps):
    """Writes the SavedModel (and the TFLite file) at `paths`, printing one line each."""
    from keras_transformer_layers import export

    inputs = _sample_inputs(model)
    print(f"[2/{steps}] Writing SavedModel {os.path.join(args.out_dir, 'saved_model')}", flush=True)
    report = export.export_saved_model(model, paths[0])
    check = export.verify_export(paths[0], model, inputs)
    print(
        f"      signatures: {', '.join(report['signatures'])}; "
        f"max |SavedModel - Keras| = {check['max_abs_diff']:.3g}",
        flush=True,
    )
    if steps == 3:
        name = os.path.basename(paths[1])
        print(f"[3/{steps}] Writing TFLite {os.path.join(args.out_dir, name)}", flush=True)
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
