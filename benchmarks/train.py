"""Training throughput of `build_transformer` against two references, in one run.

Models, all post-norm encoder-decoders with identical architecture and the same
embedding front end (token embedding x sqrt(d) + sinusoid) and logits layer:

- `ours`:      `keras_transformer_layers.build_transformer`.
- `reference`: blocks written the tutorial way from `keras.layers.MultiHeadAttention`,
               `LayerNormalization`, `Dense` and `Dropout` (residual dropout only, as
               in the paper and in ours).
- `keras_hub`: `keras_hub.layers.TransformerEncoder` / `TransformerDecoder`, when
               keras-hub is installed. Note that keras-hub also applies dropout to the
               attention weights and inside the feed-forward network, so it does a
               little more elementwise work per step than the other two.

For each model and for `jit_compile` off and on, the script times `train_on_batch`
steps on random full-length batches and reports source+target tokens per second,
model FLOPs utilization (MFU) against the float32 matmul peak measured on this
machine at the start of the run, and the peak resident memory of a fresh process
that builds the model and trains two steps.

The models are timed round-robin (one step of each per round) so that load from
other processes hits them alike. Wall-clock figures use the fastest step; the
same figures per CPU-second (median `time.process_time` per step, against the
matmul peak per CPU-second) are printed too, as they are far less sensitive to a
shared, loaded machine.

Model FLOPs count the matmuls of the forward pass (projections, attention
`QK^T` and `AV`, feed-forward, logits) times 3 for forward + backward, the usual
convention (Kaplan et al. 2020; PaLM appendix B). Elementwise work, softmax,
LayerNorm and the loss are not counted.

Usage:
    python benchmarks/train.py                # the issue's config, both jit modes
    python benchmarks/train.py --rounds 4 --models ours reference --jit on
    python benchmarks/train.py --dtype-policy mixed_float16 --models ours --jit off
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Benchmark the checkout this file lives in, not another installed copy.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_transformer_layers as ktl  # noqa: E402
from keras_transformer_layers.layers.positional import sinusoidal_table  # noqa: E402


def measure_matmul_peak(size=1024, seconds=3.0):
    """Best float32 matmul rate of a square matmul chain, compiled by tf.function.

    Returns `(GFLOP per wall second, GFLOP per CPU second)`, each the best of the
    repetitions run for `seconds`.
    """
    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size)) / size**0.5

    @tf.function
    def chain(x):
        for _ in range(8):
            x = tf.matmul(x, b)
        return x

    chain(a).numpy()  # trace and warm up
    flops = 8 * 2 * size**3
    best_wall, best_cpu, start = 0.0, 0.0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        wall, cpu = time.perf_counter(), time.process_time()
        chain(a).numpy()
        best_wall = max(best_wall, flops / (time.perf_counter() - wall))
        best_cpu = max(best_cpu, flops / max(time.process_time() - cpu, 1e-9))
    return best_wall / 1e9, best_cpu / 1e9


def model_flops_per_step(cfg):
    """Training matmul FLOPs of one step (3x the forward pass)."""
    b, s, t, d, f, v = (
        cfg["batch"],
        cfg["source_len"],
        cfg["target_len"],
        cfg["model_dim"],
        cfg["intermediate_dim"],
        cfg["vocab"],
    )
    n = cfg["num_layers"]
    mm = lambda m, k, n_: 2 * m * k * n_  # noqa: E731
    encoder = n * (4 * mm(s, d, d) + 2 * mm(s, s, d) + mm(s, d, f) + mm(s, f, d))
    decoder = n * (
        4 * mm(t, d, d)
        + 2 * mm(t, t, d)  # causal self-attention, full scores
        + 2 * mm(t, d, d)
        + 2 * mm(s, d, d)
        + 2 * mm(t, s, d)  # cross-attention
        + mm(t, d, f)
        + mm(t, f, d)
    )
    logits = mm(t, d, v)
    return 3 * b * (encoder + decoder + logits)


class SinusoidEmbedding(keras.layers.Layer):
    """The references' front end: `Embedding * sqrt(d) + sinusoid`, float32 table."""

    def __init__(self, vocab, dim, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.embedding = keras.layers.Embedding(vocab, dim, mask_zero=True, dtype=self.dtype_policy)

    def build(self, shape):
        self.embedding.build(shape)

    def call(self, ids):
        x = self.embedding(ids) * ops_cast(self.dim**0.5, self.compute_dtype)
        table = sinusoidal_table(keras.ops.shape(ids)[1], self.dim)
        return x + keras.ops.cast(table[None], x.dtype)

    def compute_mask(self, ids, mask=None):
        return keras.ops.not_equal(ids, 0)


def ops_cast(value, dtype):
    return keras.ops.cast(value, dtype)


def build_reference(cfg):
    """The tutorial post-norm Transformer from stock Keras layers."""
    d, h, f, p, n = (
        cfg["model_dim"],
        cfg["num_heads"],
        cfg["intermediate_dim"],
        cfg["dropout"],
        cfg["num_layers"],
    )
    L = keras.layers

    def add_norm(x, sub):
        return L.LayerNormalization(epsilon=1e-6)(L.Add()([x, L.Dropout(p)(sub)]))

    def ffn(x):
        return L.Dense(d)(L.Dense(f, activation="relu")(x))

    src = keras.Input((None,), dtype="int32", name="encoder_inputs")
    tgt = keras.Input((None,), dtype="int32", name="decoder_inputs")
    x = L.Dropout(p)(SinusoidEmbedding(cfg["vocab"], d)(src))
    for _ in range(n):
        x = add_norm(x, L.MultiHeadAttention(h, d // h)(x, x))
        x = add_norm(x, ffn(x))
    y = L.Dropout(p)(SinusoidEmbedding(cfg["vocab"], d)(tgt))
    for _ in range(n):
        y = add_norm(y, L.MultiHeadAttention(h, d // h)(y, y, use_causal_mask=True))
        y = add_norm(y, L.MultiHeadAttention(h, d // h)(y, x))
        y = add_norm(y, ffn(y))
    logits = L.Dense(cfg["vocab"], dtype="float32")(y)
    return keras.Model({"encoder_inputs": src, "decoder_inputs": tgt}, logits)


def build_keras_hub(cfg):
    import keras_hub

    d, h, f, p, n = (
        cfg["model_dim"],
        cfg["num_heads"],
        cfg["intermediate_dim"],
        cfg["dropout"],
        cfg["num_layers"],
    )
    src = keras.Input((None,), dtype="int32", name="encoder_inputs")
    tgt = keras.Input((None,), dtype="int32", name="decoder_inputs")
    x = keras.layers.Dropout(p)(SinusoidEmbedding(cfg["vocab"], d)(src))
    for _ in range(n):
        x = keras_hub.layers.TransformerEncoder(f, h, dropout=p, layer_norm_epsilon=1e-6)(x)
    y = keras.layers.Dropout(p)(SinusoidEmbedding(cfg["vocab"], d)(tgt))
    for _ in range(n):
        y = keras_hub.layers.TransformerDecoder(f, h, dropout=p, layer_norm_epsilon=1e-6)(y, x)
    logits = keras.layers.Dense(cfg["vocab"], dtype="float32")(y)
    return keras.Model({"encoder_inputs": src, "decoder_inputs": tgt}, logits)


def build_ours(cfg):
    return ktl.build_transformer(
        cfg["vocab"],
        cfg["vocab"],
        num_layers=cfg["num_layers"],
        model_dim=cfg["model_dim"],
        num_heads=cfg["num_heads"],
        intermediate_dim=cfg["intermediate_dim"],
        dropout=cfg["dropout"],
    )


BUILDERS = {"ours": build_ours, "reference": build_reference, "keras_hub": build_keras_hub}


def peak_rss_mb():
    """This process's peak resident memory (VmHWM).

    Not `getrusage().ru_maxrss`: on Linux a child started by `subprocess`
    inherits its parent's high-water mark there, which hid the probes' own peaks.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_batches(cfg, count=2):
    rng = np.random.default_rng(0)
    b, s, t, v = cfg["batch"], cfg["source_len"], cfg["target_len"], cfg["vocab"]
    return [
        (
            {
                "encoder_inputs": tf.constant(rng.integers(3, v, (b, s)), "int32"),
                "decoder_inputs": tf.constant(rng.integers(3, v, (b, t)), "int32"),
            },
            tf.constant(rng.integers(3, v, (b, t)), "int32"),
        )
        for _ in range(count)
    ]


def compiled_model(name, cfg, jit):
    keras.utils.set_random_seed(0)
    model = BUILDERS[name](cfg)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit,
    )
    return model


def timed_step(model, batch):
    wall, cpu = time.perf_counter(), time.process_time()
    loss = model.train_on_batch(*batch)
    return time.perf_counter() - wall, time.process_time() - cpu, float(np.ravel(loss)[0])


def time_models(names, cfg, jit, rounds, warmup):
    """Round-robin timing: every round runs one step of each model in turn, so
    load from other processes on the machine hits all models alike."""
    batches = make_batches(cfg)
    models = {name: compiled_model(name, cfg, jit) for name in names}
    for model in models.values():
        for i in range(warmup):
            model.train_on_batch(*batches[i % 2])
    samples = {name: [] for name in names}
    for i in range(rounds):
        for name in names:
            samples[name].append(timed_step(models[name], batches[i % 2]))
    results = []
    for name in names:
        wall, cpu, loss = zip(*samples[name], strict=True)
        results.append(
            {
                "model": name,
                "jit": jit,
                "params": models[name].count_params(),
                "wall_s": float(np.min(wall)),
                "cpu_s": float(np.median(cpu)),
                "loss": loss[-1],
            }
        )
    return results


def memory_probe(name, cfg, jit, warmup):
    """Peak RSS of a fresh process that builds `name` and trains `warmup` steps."""
    batches = make_batches(cfg)
    model = compiled_model(name, cfg, jit)
    for i in range(warmup):
        model.train_on_batch(*batches[i % 2])
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}))


def probe_in_subprocess(name, jit, args):
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--probe-memory",
        name,
        "--jit",
        "on" if jit else "off",
        "--batch",
        str(args.batch),
        "--length",
        str(args.length),
        "--dtype-policy",
        args.dtype_policy,
    ]
    out = subprocess.run(command, capture_output=True, text=True, timeout=900, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["ours", "reference", "keras_hub"])
    parser.add_argument("--jit", nargs="+", default=["off", "on"], choices=["off", "on"])
    parser.add_argument("--rounds", type=int, default=8, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS probes")
    parser.add_argument("--probe-memory", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument(
        "--dtype-policy",
        default="float32",
        choices=["float32", "mixed_float16", "mixed_bfloat16"],
        help="global Keras dtype policy of the models (the logits stay float32)",
    )
    args = parser.parse_args(argv)
    keras.config.set_dtype_policy(args.dtype_policy)
    cfg = {
        "vocab": 8000,
        "model_dim": 256,
        "num_heads": 8,
        "intermediate_dim": 1024,
        "num_layers": 2,
        "batch": args.batch,
        "source_len": args.length,
        "target_len": args.length,
        "dropout": 0.1,
    }
    if args.probe_memory:
        return memory_probe(args.probe_memory, cfg, args.jit[0] == "on", 2)
    models = list(args.models)
    if "keras_hub" in models:
        try:
            import keras_hub  # noqa: F401
        except ImportError:
            print("keras-hub not installed: skipping the keras_hub model")
            models.remove("keras_hub")
    peak_wall, peak_cpu = measure_matmul_peak()
    flops = model_flops_per_step(cfg)
    print(
        f"float32 matmul peak: {peak_wall:.1f} GFLOP/s wall, {peak_cpu:.1f} GFLOP per "
        f"CPU-second; model FLOPs/step: {flops / 1e9:.1f} GFLOP; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; dtype policy "
        f"{args.dtype_policy}; config: {cfg}",
        flush=True,
    )
    tokens = cfg["batch"] * (cfg["source_len"] + cfg["target_len"])
    results = []
    for jit in args.jit:
        for r in time_models(models, cfg, jit == "on", args.rounds, args.warmup):
            r["tokens_per_s"] = tokens / r["wall_s"]
            r["tokens_per_cpu_s"] = tokens / r["cpu_s"]
            r["mfu"] = flops / r["wall_s"] / 1e9 / peak_wall
            r["mfu_cpu"] = flops / r["cpu_s"] / 1e9 / peak_cpu
            if not args.no_memory:
                r["peak_rss_mb"] = probe_in_subprocess(r["model"], r["jit"], args)
            results.append(r)
            print(json.dumps(r), flush=True)
    print(
        "\n| model | jit | step (ms) | tokens/s | MFU | CPU s/step | tokens/CPU-s | MFU (CPU time) "
        "| vs reference, tokens/s (tokens/CPU-s) | peak RSS (MB) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        ref = [q for q in results if q["model"] == "reference" and q["jit"] == r["jit"]]
        ratio = (
            (
                f"{r['tokens_per_s'] / ref[0]['tokens_per_s']:.2f}x "
                f"({r['tokens_per_cpu_s'] / ref[0]['tokens_per_cpu_s']:.2f}x)"
            )
            if ref
            else "-"
        )
        print(
            f"| {r['model']} | {'on' if r['jit'] else 'off'} | {r['wall_s'] * 1e3:.0f} | "
            f"{r['tokens_per_s']:.0f} | {100 * r['mfu']:.1f}% | {r['cpu_s']:.2f} | "
            f"{r['tokens_per_cpu_s']:.0f} | {100 * r['mfu_cpu']:.1f}% | {ratio} | "
            f"{r.get('peak_rss_mb', float('nan')):.0f} |"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "peak_gflops_wall": peak_wall,
                    "peak_gflops_per_cpu_s": peak_cpu,
                    "dtype_policy": args.dtype_policy,
                    "config": cfg,
                    "results": results,
                },
                fh,
                indent=1,
            )


if __name__ == "__main__":
    main()
