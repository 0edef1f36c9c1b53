"""Train a Portuguese-to-English Transformer on TED talks (the TF tutorial's data).

Uses TFDS' `ted_hrlr_translate/pt_to_en` (about 52k training pairs), which
needs the network once, to download the archive into `--data-dir`:

    python examples/translate_ted.py --data-dir ~/tensorflow_datasets --download

Without network, or without `--download` on a data_dir that does not hold the
prepared dataset, it stops within seconds with a message that says what to do
(`keras_transformer_layers.data.load_ted_hrlr`). The pipeline, model and
recipe are those of `translate_spa_eng.py`: word vocabularies built from the
training split, length-bucketed batches, `build_transformer`, the paper's
Adam, warm-up schedule and label smoothing, then token accuracy and corpus
BLEU on the validation split.

Not measured here: this machine has no network.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras_transformer_layers as ktl  # noqa: E402
from bleu import corpus_bleu  # noqa: E402
from keras_transformer_layers.data import TextTokenizer  # noqa: E402
from keras_transformer_layers.data import build_vocabulary  # noqa: E402
from keras_transformer_layers.data import load_ted_hrlr  # noqa: E402
from keras_transformer_layers.data import make_translation_dataset  # noqa: E402
from keras_transformer_layers.data.tokenizer import split_text  # noqa: E402
from keras_transformer_layers.generation import Generator  # noqa: E402
from keras_transformer_layers.training import MaskedAccuracy  # noqa: E402
from keras_transformer_layers.training import MaskedSparseCategoricalCrossentropy  # noqa: E402
from keras_transformer_layers.training import transformer_adam  # noqa: E402


def _portuguese(portuguese, english):
    return portuguese


def _english(portuguese, english):
    return english


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="TFDS data_dir")
    parser.add_argument("--download", action="store_true",
                        help="download and prepare the dataset if it is missing")
    parser.add_argument("--output-dir", default="artifacts/ted")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--vocabulary-size", type=int, default=8000)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-layers", type=int, default=4)
    parser.add_argument("--model-dim", type=int, default=128)
    parser.add_argument("--num-heads", type=int, default=8)
    parser.add_argument("--intermediate-dim", type=int, default=512)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--warmup-steps", type=int, default=4000)
    parser.add_argument("--bleu-sentences", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    os.makedirs(args.output_dir, exist_ok=True)
    data_dir = os.path.expanduser(args.data_dir)
    train = load_ted_hrlr("train", data_dir=data_dir, download=args.download)
    validation = load_ted_hrlr("validation", data_dir=data_dir)

    vocabulary = {"split": "word", "lowercase": True}
    source_tokenizer = TextTokenizer(
        build_vocabulary(train.map(_portuguese), max_tokens=args.vocabulary_size, **vocabulary),
        **vocabulary,
    )
    target_tokenizer = TextTokenizer(
        build_vocabulary(train.map(_english), max_tokens=args.vocabulary_size, **vocabulary),
        **vocabulary,
    )
    batching = {
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "bucket_boundaries": [16, 24, 32, 48],
    }
    train_batches = make_translation_dataset(
        train, source_tokenizer, target_tokenizer, shuffle_buffer_size=20000,
        seed=args.seed, **batching,
    )
    validation_batches = make_translation_dataset(
        validation, source_tokenizer, target_tokenizer, **batching
    )
    model = ktl.build_transformer(
        source_tokenizer.vocabulary_size,
        target_tokenizer.vocabulary_size,
        num_layers=args.num_layers,
        model_dim=args.model_dim,
        num_heads=args.num_heads,
        intermediate_dim=args.intermediate_dim,
        dropout=args.dropout,
    )
    model.compile(
        optimizer=transformer_adam(args.model_dim, warmup_steps=args.warmup_steps),
        loss=MaskedSparseCategoricalCrossentropy(label_smoothing=0.1),
        metrics=[MaskedAccuracy()],
    )
    start = time.time()
    model.fit(train_batches, validation_data=validation_batches, epochs=args.epochs, verbose=2)
    training_seconds = time.time() - start
    results = model.evaluate(validation_batches, verbose=0, return_dict=True)

    pairs = list(validation.take(args.bleu_sentences).as_numpy_iterator())
    source_ids = source_tokenizer(tf.constant([p for p, _ in pairs])).numpy()
    generator = Generator(model, max_length=args.max_length - 1)
    output_ids = generator.generate(source_ids[:, : args.max_length])
    hypotheses = target_tokenizer.detokenize(output_ids).numpy()
    references = split_text(
        tf.constant([e for _, e in pairs]), split="word", lowercase=True
    ).to_list()
    bleu = corpus_bleu(
        [h.decode("utf-8").split() for h in hypotheses],
        [[[t.decode("utf-8") for t in reference]] for reference in references],
    )
    model_path = os.path.join(args.output_dir, "ted.keras")
    model.save(model_path)
    summary = {
        "validation_token_accuracy": round(float(results["masked_accuracy"]), 4),
        "bleu": round(bleu, 2),
        "bleu_sentences": len(pairs),
        "training_seconds": round(training_seconds),
        "settings": vars(args),
        "model": model_path,
    }
    print("\nSummary:", json.dumps(summary, indent=2))
    for (source, _), hypothesis in list(zip(pairs, hypotheses))[:5]:
        print(f"  {source.decode('utf-8')}  ->  {hypothesis.decode('utf-8')}")
    return summary


if __name__ == "__main__":
    np.set_printoptions(linewidth=120)
    main()
