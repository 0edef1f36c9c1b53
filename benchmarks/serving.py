"""Serving one request at a time: XLA compiled per source length vs length buckets.

Usage:
`KERAS_BACKEND=tensorflow python benchmarks/serving.py --corpus PATH/spa-eng.zip [--sentences 500]`

Translates `--sentences` English sentences of the spa-eng test split (the
`spa_eng.split_of` hash split), one request (one sentence, batch 1) at a
time in a random order, with greedy decoding on the benchmark model of
`benchmarks/decode.py` (2 + 2 layers, `model_dim` 256, 8 heads,
`intermediate_dim` 1024, target vocabulary 8000). The sources are real: a
word-level `TextTokenizer` of at most 8000 ids built from the English side
of the train split, so the source lengths (with the start and end ids) are
those a translation service sees. The weights are random: the model never
emits the end id early, so every request decodes all `--max-new-tokens`
tokens (the script prints the mean length of the Spanish references to
compare).

Variants, in this order, each on its own `Generator` over the same model:

- `XLA, buckets`: `Generator(jit_compile=True, length_buckets=...)`, one
  compilation per bucket the requests fall into.
- `no XLA`: `Generator(jit_compile=False)`, one graph for every length.
- `XLA, per shape`: the loop as the package compiled it before length
  buckets, one `tf.function(jit_compile=True)` over
  `Generator.generate_tensors` with a `(None, None)` input signature: XLA
  compiles again for every new source length.

The wall time (and the CPU time of the process, steadier on a shared
machine) covers every request, compilations included: the first pass
over the requests. A second pass, every shape compiled, gives the cost of a
request alone (and so the cost of the padding). Every variant must give the
same tokens as the first (reported), and its second pass the same as its
first (checked). Ratios (of wall times, and of CPU times) are against
`XLA, per shape` and against the best of it and `no XLA`, the two ways to
serve before buckets.
"""

import argparse
import os
import platform
import subprocess
import time
import zipfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

# The model and sizes of benchmarks/decode.py (this script runs from benchmarks/).
from decode import VOCABULARY  # noqa: E402
from decode import build_model  # noqa: E402

from keras_transformer_layers.data import TextTokenizer  # noqa: E402
from keras_transformer_layers.data import build_vocabulary  # noqa: E402
from keras_transformer_layers.data.spa_eng import split_of  # noqa: E402
from keras_transformer_layers.data.tokenizer import split_text  # noqa: E402
from keras_transformer_layers.generation import Generator  # noqa: E402


def read_pairs(path):
    """`(english, spanish)` pairs of `spa.txt`, read from the zip archive or the text file."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if n.endswith("spa.txt"))
            text = archive.read(name).decode("utf-8")
    else:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    return [tuple(line.split("\t")[:2]) for line in text.splitlines() if "\t" in line]


def requests(path, count, seed):
    """The tokenized test sources (one int32 `(1, length)` array each), in a random order."""
    pairs = read_pairs(path)
    train = [english for english, _ in pairs if split_of(english) == "train"]
    test = [pair for pair in pairs if split_of(pair[0]) == "test"]
    tokenizer = TextTokenizer(
        build_vocabulary(train, split="word", lowercase=True, max_tokens=VOCABULARY),
        split="word",
        lowercase=True,
    )
    order = np.random.default_rng(seed).permutation(len(test))[:count]
    chosen = [test[i] for i in order]
    sources = [tokenizer(tf.constant([english])).numpy() for english, _ in chosen]
    spanish = split_text(tf.constant([spanish for _, spanish in chosen]), split="word")
    return sources, spanish.row_lengths().numpy(), tokenizer.vocabulary_size


def timed(generate, sources):
    """Wall and CPU seconds of `generate` over every request, and the tokens, one row each."""
    start, start_cpu = time.perf_counter(), time.process_time()
    tokens = [generate(source) for source in sources]
    return time.perf_counter() - start, time.process_time() - start_cpu, np.concatenate(tokens)


def commit():
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def parse_buckets(text):
    """`"16"` -> 16 (a multiple); `"16,32,64"` -> (16, 32, 64)."""
    values = tuple(int(value) for value in text.split(","))
    return values[0] if len(values) == 1 else values


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, help="spa-eng.zip or its spa.txt")
    parser.add_argument("--sentences", type=int, default=500)
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=8,
        help="generated tokens per request (8: the mean Spanish test reference, 7.3, + end)",
    )
    parser.add_argument(
        "--length-buckets",
        type=parse_buckets,
        default=32,
        help="one int (a multiple) or increasing ints separated by commas; default 32: "
        "fewer than 32 padding ids per request, and one compilation for every source "
        "of at most 32 ids (all of this test split)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    sources, spanish, source_vocabulary = requests(args.corpus, args.sentences, args.seed)
    lengths = [source.shape[1] for source in sources]
    print(
        f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit()}, "
        f"{platform.machine()} {os.cpu_count()} vCPU, TensorFlow {tf.__version__}, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(
        f"{len(sources)} requests, source lengths {min(lengths)}-{max(lengths)} "
        f"({len(set(lengths))} distinct, mean {np.mean(lengths):.1f}); Spanish references "
        f"{np.mean(spanish):.1f} words and punctuation marks on average; {args.max_new_tokens} tokens generated each"
    )

    model = build_model(source_vocabulary, seed=args.seed)
    settings = {"max_new_tokens": args.max_new_tokens, "end_id": None}
    bucketed = Generator(model, jit_compile=True, length_buckets=args.length_buckets, **settings)
    no_xla = Generator(model, **settings)
    per_shape = Generator(model, **settings)
    # The package's XLA loop before length buckets: one trace, XLA compiling per shape inside.
    per_shape_loop = tf.function(
        per_shape.generate_tensors,
        input_signature=[tf.TensorSpec((None, None), tf.int32), tf.TensorSpec((), tf.int32)],
        jit_compile=True,
    )
    variants = {
        f"XLA, buckets {args.length_buckets}": lambda s: bucketed.generate(s, verbose=0),
        "no XLA": lambda s: no_xla.generate(s, verbose=0),
        "XLA, per shape": lambda s: per_shape_loop(s, np.int32(0))[0].numpy(),
    }
    # Untimed: the first trace of the model's layers in a process converts
    # their code once (about 0.6 s here), which would otherwise fall on
    # whichever variant runs first. A generator of its own, so that no
    # variant's program is traced or compiled by it.
    Generator(model, **settings).generate(sources[0], verbose=0)
    results = {}
    for name, generate in variants.items():
        seconds, cpu_seconds, tokens = timed(generate, sources)
        # Every shape is compiled now: the second pass times the requests alone.
        warm_seconds, warm_cpu, warm_tokens = timed(generate, sources)
        assert (warm_tokens == tokens).all(), name
        results[name] = seconds, cpu_seconds, tokens, warm_seconds, warm_cpu
        print(
            f"  {name}: {seconds:.1f} s ({cpu_seconds:.1f} CPU-s), "
            f"then {warm_seconds:.1f} s ({warm_cpu:.1f} CPU-s)"
        )

    reference = next(iter(results.values()))[2]
    before, before_cpu = results["XLA, per shape"][:2]
    best_today = min(before, results["no XLA"][0])
    best_today_cpu = min(before_cpu, results["no XLA"][1])
    print()
    print(
        "| variant | wall time (s) | per shape / this | best today / this | CPU-s | "
        "per shape / this, CPU | best today / this, CPU | compilations | "
        "ms per request, compiled (CPU ms) | tokens equal |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    compilations = {
        "no XLA": "1 trace",
        "XLA, per shape": f"{len(set(lengths))} (one per length)",
    }
    for name, (seconds, cpu, tokens, warm_seconds, warm_cpu) in results.items():
        equal = int((tokens == reference).all(axis=1).sum())
        count = compilations.get(name, f"{bucketed.tracing_count} (one per bucket)")
        print(
            f"| {name} | {seconds:.1f} | {before / seconds:.2f}x | {best_today / seconds:.2f}x | "
            f"{cpu:.1f} | {before_cpu / cpu:.2f}x | {best_today_cpu / cpu:.2f}x | {count} | "
            f"{1000 * warm_seconds / len(sources):.1f} ({1000 * warm_cpu / len(sources):.1f}) | "
            f"{equal}/{len(tokens)} |"
        )
    print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
