"""Batch-1 forward latency: LiteRT interpreter (1 and 2 threads) vs SavedModel in TF.

Also reports the sizes of the float32, float16 and dynamic-range int8 `.tflite`
files and their largest difference from the Keras model. Everything runs in
one process on the same inputs; latencies are medians over `--runs` calls after
`--warmup` calls.

Usage:

    KERAS_BACKEND=tensorflow python benchmarks/export.py [--num-layers 2] \
        [--model-dim 128] [--source-length 32] [--target-length 32]
"""

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

import keras_transformer_layers as ktl  # noqa: E402
from keras_transformer_layers import export  # noqa: E402


def median_ms(fn, warmup, runs):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def litert_runner(path, inputs, num_threads):
    """A zero-argument function running one forward pass on LiteRT."""
    interpreter = Interpreter(model_path=path, num_threads=num_threads)
    details = {
        d["name"].split("serving_default_")[-1].split(":")[0]: d
        for d in interpreter.get_input_details()
    }
    for name, value in inputs.items():
        interpreter.resize_tensor_input(details[name]["index"], value.shape)
    interpreter.allocate_tensors()
    (output,) = interpreter.get_output_details()

    def run():
        for name, value in inputs.items():
            interpreter.set_tensor(details[name]["index"], value)
        interpreter.invoke()
        return interpreter.get_tensor(output["index"])

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocabulary-size", type=int, default=8000)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--model-dim", type=int, default=128)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--intermediate-dim", type=int, default=512)
    parser.add_argument("--source-length", type=int, default=32)
    parser.add_argument("--target-length", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    model = ktl.build_transformer(
        args.vocabulary_size,
        args.vocabulary_size,
        num_layers=args.num_layers,
        model_dim=args.model_dim,
        num_heads=args.num_heads,
        intermediate_dim=args.intermediate_dim,
        dropout=0.0,
    )
    rng = np.random.default_rng(0)
    inputs = {
        "encoder_inputs": rng.integers(1, args.vocabulary_size, (1, args.source_length)).astype(
            "int32"
        ),
        "decoder_inputs": rng.integers(1, args.vocabulary_size, (1, args.target_length)).astype(
            "int32"
        ),
    }
    print(
        f"model: {model.count_params():,} parameters, N={args.num_layers}, "
        f"d_model={args.model_dim}, h={args.num_heads}, d_ff={args.intermediate_dim}, "
        f"vocab={args.vocabulary_size}; batch 1, source {args.source_length}, "
        f"target {args.target_length} tokens; TF {tf.__version__}, "
        f"{os.cpu_count()} CPU cores"
    )

    with tempfile.TemporaryDirectory() as folder:
        saved_model_path = os.path.join(folder, "saved_model")
        export.export_saved_model(model, saved_model_path)
        loaded = tf.saved_model.load(saved_model_path)
        forward = loaded.signatures["forward"]
        feed = {name: tf.constant(value) for name, value in inputs.items()}
        reports = {}
        for quantization in (None, "float16", "dynamic_int8"):
            reports[quantization] = export.export_tflite(
                model,
                os.path.join(folder, f"model_{quantization or 'float32'}.tflite"),
                quantization=quantization,
                sample_inputs=inputs,
            )

        reference = np.asarray(model(inputs))
        rows = []
        saved_ms = median_ms(lambda: forward(**feed), args.warmup, args.runs)
        saved_diff = np.abs(forward(**feed)["logits"].numpy() - reference).max()
        rows.append(("SavedModel (TF)", "float32", "-", saved_ms, saved_diff))
        for quantization, report in reports.items():
            for threads in (1, 2):
                run = litert_runner(report["path"], inputs, threads)
                ms = median_ms(run, args.warmup, args.runs)
                diff = np.abs(run() - reference).max()
                rows.append(("LiteRT", quantization or "float32", threads, ms, diff))

    print()
    print("| runtime | weights | threads | median ms | speed-up vs SavedModel | max abs diff |")
    print("|---|---|---|---|---|---|")
    for runtime, weights, threads, ms, diff in rows:
        print(
            f"| {runtime} | {weights} | {threads} | {ms:.2f} | {saved_ms / ms:.2f}x | {diff:.1e} |"
        )
    print()
    print("| file | bytes | vs float32 | max abs diff | argmax agreement |")
    print("|---|---|---|---|---|")
    float_size = reports[None]["size_bytes"]
    for quantization, report in reports.items():
        print(
            f"| {quantization or 'float32'} | {report['size_bytes']:,} | "
            f"{float_size / report['size_bytes']:.2f}x smaller | "
            f"{report['max_abs_diff']:.1e} | {report['token_agreement']:.3f} |"
        )


if __name__ == "__main__":
    main()
