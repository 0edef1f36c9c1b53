"""Train a translation Transformer on a real corpus and score it with SacreBLEU.

Two corpora, one recipe:

    # English to Spanish, Tatoeba pairs (the Keras example's spa-eng.zip,
    # http://storage.googleapis.com/download.tensorflow.org/data/spa-eng.zip)
    python examples/translate.py --dataset spa_eng --corpus /path/to/spa-eng.zip \
        --data-dir /tmp/tfds --output-dir artifacts/spa_eng

    # Portuguese to English, TED talks (TFDS' ted_hrlr_translate/pt_to_en,
    # needs the network once)
    python examples/translate.py --dataset ted --data-dir ~/tensorflow_datasets --download

Steps: read the training split (optionally its first `--max-train-pairs`
pairs with at most `--max-words` words per side); build the tokenizers from
it, `--tokenizer word` (`TextTokenizer`: lowercased words, punctuation marks
as tokens; stock TensorFlow) or `--tokenizer subword` (`SubwordTokenizer`: a
SentencePiece BPE or unigram vocabulary, cased; needs the `subword` extra);
batch pairs by length with `make_translation_dataset`; train
`build_transformer` with the paper's recipe (Adam 0.9/0.98/1e-9, warm-up
schedule, label smoothing 0.1, padding ignored); report the token accuracy
(teacher forcing) and corpus BLEU of greedy translations with SacreBLEU.

BLEU: hypotheses are the detokenized model output; references are the
corpus' own sentences (for spa-eng every Spanish translation of a test
sentence, for TED the one English reference). It is scored lowercased with
SacreBLEU's `intl` tokenizer (Unicode punctuation split off), because the word
tokenizer lowercases and spaces out punctuation; its signature is printed and
saved. The subword model also gets a cased score.

Defaults differ per corpus (see `DEFAULTS`); every one can be overridden.
Needs the `data` extra and `sacrebleu` (in the `dev` extra); `--tokenizer
subword` also needs the `subword` extra. A word vs subword measurement on
spa-eng, with its command, is in docs/subword.md.
"""

import argparse
import json
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import sacrebleu  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402
from ted_hrlr import load_ted_hrlr  # noqa: E402

import keras_transformer_layers as ktl  # noqa: E402
from keras_transformer_layers.data import TextTokenizer  # noqa: E402
from keras_transformer_layers.data import build_vocabulary  # noqa: E402
from keras_transformer_layers.data import make_translation_dataset  # noqa: E402
from keras_transformer_layers.generation import Generator  # noqa: E402
from keras_transformer_layers.training import MaskedAccuracy  # noqa: E402
from keras_transformer_layers.training import MaskedSparseCategoricalCrossentropy  # noqa: E402
from keras_transformer_layers.training import transformer_adam  # noqa: E402

DEFAULTS = {
    "spa_eng": {
        "epochs": 3,
        "vocabulary_size": 10000,
        "sequence_length": 20,
        "bucket_boundaries": [8, 12, 16],
        "num_layers": 2,
        "num_heads": 4,
        "warmup_steps": 2000,
        "bleu_sentences": 1000,
        "output_dir": "artifacts/spa_eng",
    },
    "ted": {
        "epochs": 10,
        "vocabulary_size": 8000,
        "sequence_length": 64,
        "bucket_boundaries": [16, 24, 32, 48],
        "num_layers": 4,
        "num_heads": 8,
        "warmup_steps": 4000,
        "bleu_sentences": 500,
        "output_dir": "artifacts/ted",
    },
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--dataset", choices=sorted(DEFAULTS), required=True)
    parser.add_argument("--corpus", help="spa_eng: path of spa-eng.zip or spa.txt")
    parser.add_argument("--data-dir", default="artifacts/tfds", help="TFDS data_dir")
    parser.add_argument(
        "--download", action="store_true", help="ted: download and prepare it if missing"
    )
    parser.add_argument("--tokenizer", choices=("word", "subword"), default="word")
    parser.add_argument(
        "--subword-model", choices=("bpe", "unigram"), default="bpe", help="SentencePiece model"
    )
    parser.add_argument("--output-dir", help="default: per dataset")
    parser.add_argument("--epochs", type=int)
    parser.add_argument(
        "--max-train-pairs", type=int, help="first N training pairs (after --max-words)"
    )
    parser.add_argument(
        "--max-words", type=int, help="keep pairs with at most N words per side (every split)"
    )
    parser.add_argument("--vocabulary-size", type=int, help="ids per language, reserved included")
    parser.add_argument(
        "--sequence-length",
        type=int,
        help="longest sequence in ids, start/end included (the decoded sequences too)",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-layers", type=int)
    parser.add_argument("--model-dim", type=int, default=128)
    parser.add_argument("--num-heads", type=int)
    parser.add_argument("--intermediate-dim", type=int, default=512)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--warmup-steps", type=int)
    parser.add_argument("--bleu-sentences", type=int, help="distinct source sentences scored")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name, value in DEFAULTS[args.dataset].items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    if args.dataset == "spa_eng" and not args.corpus:
        parser.error("--dataset spa_eng needs --corpus (spa-eng.zip or spa.txt)")
    return args


def load_splits(args):
    """`(train, test)` datasets of `(source, target)` strings, filtered by `--max-words`."""
    data_dir = os.path.expanduser(args.data_dir)
    if args.dataset == "spa_eng":
        builder = tfds.builder("spa_eng", corpus_path=args.corpus, data_dir=data_dir)
        builder.download_and_prepare()
        train = builder.as_dataset(split="train", as_supervised=True)
        test = builder.as_dataset(split="test", as_supervised=True)
    else:
        train = load_ted_hrlr("train", data_dir=data_dir, download=args.download)
        test = load_ted_hrlr("validation", data_dir=data_dir)
    if args.max_words:

        def short(source, target):
            words = [tf.size(tf.strings.split(side)) for side in (source, target)]
            return (words[0] <= args.max_words) & (words[1] <= args.max_words)

        train, test = train.filter(short), test.filter(short)
    if args.max_train_pairs:
        train = train.take(args.max_train_pairs)
    return train, test


def make_tokenizer(texts, args):
    """A word or subword tokenizer built from one side of the training split."""
    if args.tokenizer == "subword":
        from keras_transformer_layers.data.subword import SubwordTokenizer
        from keras_transformer_layers.data.subword import train_sentencepiece

        return SubwordTokenizer(
            train_sentencepiece(texts, args.vocabulary_size, model_type=args.subword_model)
        )
    words = {"split": "word", "lowercase": True}
    return TextTokenizer(build_vocabulary(texts, max_tokens=args.vocabulary_size, **words), **words)


def references_by_source(pairs):
    """Groups `(source, target)` byte pairs: source -> list of targets (as text)."""
    references = {}
    for source, target in pairs:
        references.setdefault(source, []).append(target.decode("utf-8"))
    return references


def score(hypotheses, references, lowercase):
    """SacreBLEU corpus score with any number of references per sentence."""
    bleu = sacrebleu.metrics.BLEU(lowercase=lowercase, tokenize="intl")
    most = max(len(refs) for refs in references)
    # One stream per reference position; None where a sentence has fewer.
    streams = [[refs[i] if i < len(refs) else None for refs in references] for i in range(most)]
    result = bleu.corpus_score(hypotheses, streams)
    return round(result.score, 2), str(bleu.get_signature())


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    os.makedirs(args.output_dir, exist_ok=True)
    train, test = load_splits(args)

    start = time.time()
    source_tokenizer = make_tokenizer(train.map(lambda source, target: source), args)
    target_tokenizer = make_tokenizer(train.map(lambda source, target: target), args)
    tokenizer_seconds = time.time() - start
    print(
        f"{args.tokenizer} tokenizers: {source_tokenizer.vocabulary_size} source, "
        f"{target_tokenizer.vocabulary_size} target ids ({tokenizer_seconds:.1f} s)"
    )

    batching = {
        "batch_size": args.batch_size,
        "sequence_length": args.sequence_length,
        "bucket_boundaries": args.bucket_boundaries,
    }
    train_batches = make_translation_dataset(
        train,
        source_tokenizer,
        target_tokenizer,
        shuffle_buffer_size=20000,
        seed=args.seed,
        **batching,
    )
    test_batches = make_translation_dataset(test, source_tokenizer, target_tokenizer, **batching)
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
    model.fit(train_batches, epochs=args.epochs, verbose=2)
    training_seconds = time.time() - start
    test_results = model.evaluate(test_batches, verbose=0, return_dict=True)

    # Greedy translations of distinct test sentences, in a seeded order.
    references = references_by_source(test.as_numpy_iterator())
    order = np.random.default_rng(args.seed).permutation(len(references))
    sources = [sorted(references)[i] for i in order[: args.bleu_sentences]]
    source_ids = keras.ops.convert_to_numpy(source_tokenizer(tf.constant(sources)))
    start = time.time()
    # The decoded sequence: the start token, then the translation and its end token.
    generator = Generator(model, max_length=args.sequence_length)
    output_ids = generator.generate(source_ids[:, : args.sequence_length])
    decoding_seconds = time.time() - start
    hypotheses = [
        h.decode("utf-8")
        for h in keras.ops.convert_to_numpy(target_tokenizer.detokenize(output_ids))
    ]
    references = [references[s] for s in sources]
    bleu, signature = score(hypotheses, references, lowercase=True)
    print(f"\nBLEU {bleu} ({signature})")
    if args.tokenizer == "subword":
        cased_bleu, cased_signature = score(hypotheses, references, lowercase=False)
        print(f"cased BLEU {cased_bleu} ({cased_signature})")

    model_path = os.path.join(args.output_dir, f"{args.dataset}.keras")
    model.save(model_path)
    tokenizers_path = os.path.join(args.output_dir, "tokenizers.json")
    with open(tokenizers_path, "w", encoding="utf-8") as f:
        json.dump(
            {
                "source": keras.saving.serialize_keras_object(source_tokenizer),
                "target": keras.saving.serialize_keras_object(target_tokenizer),
            },
            f,
            ensure_ascii=False,
        )
    print("\nSamples (greedy):")
    for source, hypothesis in list(zip(sources, hypotheses, strict=True))[:8]:
        print(f"  {source.decode('utf-8')}  ->  {hypothesis}")
    summary = {
        "test_token_accuracy": round(float(test_results["masked_accuracy"]), 4),
        "test_loss": round(float(test_results["loss"]), 4),
        "bleu": bleu,
        "bleu_signature": signature,
        "bleu_sentences": len(sources),
        "source_vocabulary_size": source_tokenizer.vocabulary_size,
        "target_vocabulary_size": target_tokenizer.vocabulary_size,
        "tokenizer_seconds": round(tokenizer_seconds, 1),
        "training_seconds": round(training_seconds),
        "decoding_seconds": round(decoding_seconds),
        "settings": vars(args),
        "model": model_path,
        "tokenizers": tokenizers_path,
    }
    if args.tokenizer == "subword":
        summary["cased_bleu"] = cased_bleu
        summary["cased_bleu_signature"] = cased_signature
    print("\nSummary:", json.dumps(summary, indent=2))
    with open(os.path.join(args.output_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


if __name__ == "__main__":
    main()
