"""Translation quality of int8 weights against float32, on the same trained weights.

Decodes a test split greedily four ways and scores each:

- Keras float32 (`Generator` on the trained model);
- Keras int8: the same weights after `model.quantize("int8")` (int8 kernels
  and embedding tables, one float scale per output channel);
- LiteRT float32 and LiteRT dynamic int8: the whole greedy loop as a
  `.tflite` file from `export_generation_tflite(..., quantization=None or
  "dynamic_int8")` of the float32 generator, run by `ai_edge_litert`.

`dates` (the model of `examples/demo.py`) is scored by exact match over its
test split, `spa_eng` (the model of `examples/translate.py --dataset
spa_eng`) by SacreBLEU over the distinct English sentences of its test split
(all of their Spanish translations as references, lowercase, `intl`
tokenization, as `examples/translate.py`). Every row also gives the token
agreement with Keras float32: the share of output positions holding the same
id, over the positions where either output holds a token (padding in both
is not counted), the share of sentences with exactly the float32 ids, and
the bytes of the weights (Keras variables; file size for LiteRT).

Usage (after training the models):

    python benchmarks/quantization.py dates --model artifacts/dates.keras \
        --data-dir artifacts/tfds
    python benchmarks/quantization.py spa_eng --model artifacts/spa_eng/spa_eng.keras \
        --tokenizers artifacts/spa_eng/tokenizers.json --corpus PATH/spa-eng.zip \
        --data-dir artifacts/tfds

A measurement, not a test: it prints a table and asserts nothing.
"""

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The `dates` TFDS builder is the demo's, in examples/.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import sacrebleu  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402
from synthetic_translation import SyntheticTranslationConfig  # noqa: E402

from keras_transformer_layers.data import END_ID  # noqa: E402
from keras_transformer_layers.data import PADDING_ID  # noqa: E402
from keras_transformer_layers.data import START_ID  # noqa: E402
from keras_transformer_layers.data import TextTokenizer  # noqa: E402
from keras_transformer_layers.data import build_vocabulary  # noqa: E402
from keras_transformer_layers.export import export_generation_tflite  # noqa: E402
from keras_transformer_layers.generation import Generator  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("task", choices=("dates", "spa_eng"))
    parser.add_argument("--model", required=True, help="the trained float32 `.keras` file")
    parser.add_argument("--data-dir", default="artifacts/tfds", help="TFDS data_dir")
    parser.add_argument("--corpus", help="spa_eng: path of spa-eng.zip or spa.txt")
    parser.add_argument("--tokenizers", help="spa_eng: tokenizers.json of examples/translate.py")
    parser.add_argument(
        "--sequence-length",
        type=int,
        default=20,
        help="spa_eng: longest sequence in ids, start and end included",
    )
    parser.add_argument("--num-train", type=int, default=20000, help="dates: as the demo")
    parser.add_argument("--num-validation", type=int, default=1000, help="dates: as the demo")
    parser.add_argument("--num-test", type=int, default=1000, help="dates: as the demo")
    parser.add_argument("--batch-size", type=int, default=100, help="sentences per batch")
    parser.add_argument("--sentences", type=int, help="first N test sentences (default: all)")
    args = parser.parse_args(argv)
    if args.task == "spa_eng" and not (args.corpus and args.tokenizers):
        parser.error("spa_eng needs --corpus and --tokenizers")
    return args


def dates_task(args):
    """Source ids, the scorer and the detokenizer of the demo's `dates` test split."""
    config = SyntheticTranslationConfig(
        name=f"dates_{args.num_train}_{args.num_validation}_{args.num_test}_1941",
        task="dates",
        num_train=args.num_train,
        num_validation=args.num_validation,
        num_test=args.num_test,
        seed=1941,
    )
    builder = tfds.builder("synthetic_translation", config=config, data_dir=args.data_dir)
    builder.download_and_prepare()
    train = builder.as_dataset(split="train", as_supervised=True)
    # The demo's vocabularies: characters of the training split.
    source_tokenizer = TextTokenizer(build_vocabulary(train.map(lambda s, t: s)))
    target_tokenizer = TextTokenizer(build_vocabulary(train.map(lambda s, t: t)))
    pairs = list(builder.as_dataset(split="test", as_supervised=True).as_numpy_iterator())
    pairs = pairs[: args.sentences]
    targets = [t.decode("utf-8") for _, t in pairs]
    source_ids = source_tokenizer(tf.constant([s for s, _ in pairs])).numpy()
    max_new_tokens = max(len(t) for t in targets) + 1  # the longest target, then [END]

    def score(hypotheses):
        return 100.0 * np.mean([h == t for h, t in zip(hypotheses, targets, strict=True)])

    return source_ids, max_new_tokens, target_tokenizer, score, "exact match (%)"


def spa_eng_task(args):
    """Source ids, the scorer and the detokenizer of the spa-eng test split."""
    with open(args.tokenizers, encoding="utf-8") as f:
        saved = json.load(f)
    source_tokenizer = keras.saving.deserialize_keras_object(saved["source"])
    target_tokenizer = keras.saving.deserialize_keras_object(saved["target"])
    builder = tfds.builder("spa_eng", corpus_path=args.corpus, data_dir=args.data_dir)
    builder.download_and_prepare()
    references = {}
    for source, target in builder.as_dataset(split="test", as_supervised=True).as_numpy_iterator():
        references.setdefault(source, []).append(target.decode("utf-8"))
    sources = sorted(references)[: args.sentences]
    source_ids = source_tokenizer(tf.constant(sources)).numpy()[:, : args.sequence_length]
    most = max(len(references[s]) for s in sources)
    streams = [
        [references[s][i] if i < len(references[s]) else None for s in sources] for i in range(most)
    ]
    bleu = sacrebleu.metrics.BLEU(lowercase=True, tokenize="intl")

    def score(hypotheses):
        return bleu.corpus_score(hypotheses, streams).score

    # The translation and its end token: the sequence without its start token.
    return source_ids, args.sequence_length - 1, target_tokenizer, score, "SacreBLEU"


def batches(source_ids, batch_size):
    """`(begin, rows)` of full batches; the last one repeats its first row to fill up."""
    for begin in range(0, len(source_ids), batch_size):
        rows = source_ids[begin : begin + batch_size]
        filler = np.repeat(rows[:1], batch_size - len(rows), axis=0)
        yield begin, np.concatenate([rows, filler])


def keras_ids(model, source_ids, max_new_tokens, batch_size):
    generator = Generator(model, max_new_tokens=max_new_tokens, start_id=START_ID, end_id=END_ID)
    outputs = [generator.generate(rows) for _, rows in batches(source_ids, batch_size)]
    return np.concatenate(outputs)[: len(source_ids)]


def litert_ids(model, source_ids, max_new_tokens, batch_size, quantization, folder):
    """Greedy ids from the exported WHILE loop; also returns the file size."""
    generator = Generator(model, max_new_tokens=max_new_tokens, start_id=START_ID, end_id=END_ID)
    path = os.path.join(folder, f"generate_{quantization or 'float32'}.tflite")
    report = export_generation_tflite(
        generator, path, batch_size=batch_size, quantization=quantization
    )
    runner = Interpreter(model_path=path).get_signature_runner()
    outputs = []
    for _, rows in batches(source_ids, batch_size):
        outputs.append(runner(source_ids=rows.astype("int32"))["token_ids"])
    return np.concatenate(outputs)[: len(source_ids)], report["size_bytes"]


def token_agreement(reference, ids):
    """Share of equal ids over the positions where either holds a token (not padding)."""
    counted = (reference != PADDING_ID) | (ids != PADDING_ID)
    return float(((reference == ids) & counted).sum() / counted.sum())


def weight_bytes(model):
    return sum(keras.ops.convert_to_numpy(w).nbytes for w in model.weights)


def main(argv=None):
    args = parse_args(argv)
    task = dates_task if args.task == "dates" else spa_eng_task
    source_ids, max_new_tokens, target_tokenizer, score, metric = task(args)
    model = keras.models.load_model(args.model)
    quantized = keras.models.load_model(args.model)
    gc.freeze()  # Keras collects once per quantized layer: skip the existing objects
    quantized.quantize("int8")
    gc.unfreeze()

    def detokenize(ids):
        return [t.decode("utf-8") for t in target_tokenizer.detokenize(ids).numpy()]

    common = (source_ids, max_new_tokens, args.batch_size)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, run in (
            ("Keras float32", lambda: (keras_ids(model, *common), weight_bytes(model))),
            ("Keras int8", lambda: (keras_ids(quantized, *common), weight_bytes(quantized))),
            ("LiteRT float32", lambda: litert_ids(model, *common, None, folder)),
            ("LiteRT dynamic_int8", lambda: litert_ids(model, *common, "dynamic_int8", folder)),
        ):
            start = time.monotonic()
            ids, size = run()
            seconds = time.monotonic() - start
            rows.append((name, score(detokenize(ids)), ids, size, seconds))
            print(f"{name}: {rows[-1][1]:.2f} ({seconds:.0f} s)", flush=True)
    reference = rows[0][2]
    load = os.getloadavg()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    print(
        f"\n{args.task}: {len(source_ids)} test sentences, greedy, max_new_tokens {max_new_tokens}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit or '?'}, "
        f"{platform.machine()} {os.cpu_count()} CPUs, load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(
        f"| model | {metric} | vs float32 | token agreement | same output | weights (MB) "
        "| seconds |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, value, ids, size, seconds in rows:
        same = 100 * np.mean((ids == reference).all(axis=1))
        print(
            f"| {name} | {value:.2f} | {value - rows[0][1]:+.2f} | "
            f"{100 * token_agreement(reference, ids):.2f}% | {same:.1f}% | "
            f"{size / 2**20:.2f} | {seconds:.0f} |"
        )


if __name__ == "__main__":
    main()
