"""Ablation of the paper's recipe on English-to-Spanish (spa-eng), one row per step.

Every row trains (or reuses) a model of the same size for the same number of
epochs on the same pairs, and reports corpus BLEU on held-out test sentences
(SacreBLEU, with its signature), the training time and the parameter count:

    a  the keras.io way: learned positions, no sqrt(d_model) scaling, no
       label smoothing, constant learning rate, greedy decoding
    b  + sinusoidal positions and sqrt(d_model) (`build_transformer`)
    c  + label smoothing 0.1 (section 5.4)
    d  + the warm-up schedule (section 5.3)
    e  + tied embeddings (`tie_embeddings="decoder"`, section 3.4)
    f  + checkpoint averaging of the last 5 checkpoints (section 6.1),
       the run of row e, no new training
    g  + beam search, 4 beams, length penalty alpha 0.6 (section 6.1),
       the averaged model of row f, no new training

Row a is composed from the package's encoder and decoder layers with a small
embedding layer of its own (token plus learned position embedding, unscaled,
as in the keras.io example); it is decoded greedily by recomputing the whole
target prefix at every step. Rows b-g are `build_transformer` models decoded
by `generation.Generator` (cached).

The corpus is the file of the Keras example "English-to-Spanish translation
with a sequence-to-sequence Transformer" (spa-eng.zip); pass its path:

    python examples/ablation_spa_eng.py --corpus /path/to/spa-eng.zip \\
        --data-dir /tmp/tfds --output-dir artifacts/ablation

Tokenization plugs in through `TOKENIZERS`: a name mapped to a function
`(train_pairs, args) -> (source_tokenizer, target_tokenizer)`, both Keras
layers mapping strings to padded int ids (0 padding, 2 start, 3 end) with
`vocabulary_size` and `detokenize(ids) -> strings`. `"word"`: one word
vocabulary per language; `"subword"`: one SentencePiece BPE vocabulary shared
by both languages (row e then ties all three matrices, `tie_embeddings="all"`).
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

import keras_transformer_layers as ktl  # noqa: E402
from keras_transformer_layers.data import TextTokenizer  # noqa: E402
from keras_transformer_layers.data import build_vocabulary  # noqa: E402
from keras_transformer_layers.data import make_translation_dataset  # noqa: E402
from keras_transformer_layers.generation import BeamSearch  # noqa: E402
from keras_transformer_layers.generation import Generator  # noqa: E402
from keras_transformer_layers.training import CheckpointAveraging  # noqa: E402
from keras_transformer_layers.training import MaskedSparseCategoricalCrossentropy  # noqa: E402
from keras_transformer_layers.training import transformer_adam  # noqa: E402

ROWS = {
    "a": "keras.io way (learned positions, no scaling, no smoothing, constant rate, greedy)",
    "b": "+ sinusoidal positions and sqrt(d_model)",
    "c": "+ label smoothing 0.1",
    "d": "+ warm-up schedule",
    "e": "+ tied embeddings",
    "f": "+ checkpoint averaging (last 5)",
    "g": "+ beam 4, alpha 0.6",
}


def word_tokenizers(train_pairs, args):
    """Word-level tokenizers (lowercased, punctuation split) built on the training pairs."""
    tokenizers = []
    for side in (0, 1):
        texts = train_pairs.map(lambda english, spanish, side=side: (english, spanish)[side])
        vocabulary = build_vocabulary(
            texts, split="word", lowercase=True, max_tokens=args.vocabulary_size
        )
        tokenizers.append(TextTokenizer(vocabulary, split="word", lowercase=True))
    return tuple(tokenizers)


def subword_tokenizers(train_pairs, args):
    """One SentencePiece BPE vocabulary trained on both sides, used for both (cased)."""
    # Imported here: the word rows need neither sentencepiece nor tensorflow-text.
    from keras_transformer_layers.data.subword import SubwordTokenizer
    from keras_transformer_layers.data.subword import train_sentencepiece

    texts = train_pairs.flat_map(
        lambda english, spanish: tf.data.Dataset.from_tensor_slices([english, spanish])
    )
    tokenizer = SubwordTokenizer(train_sentencepiece(texts, args.vocabulary_size))
    return tokenizer, tokenizer


# Where a tokenization plugs in: name -> builder.
TOKENIZERS = {"word": word_tokenizers, "subword": subword_tokenizers}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, help="path of spa-eng.zip or spa.txt")
    parser.add_argument("--data-dir", default="artifacts/tfds", help="TFDS data_dir")
    parser.add_argument("--output-dir", default="artifacts/ablation")
    parser.add_argument("--tokenizer", default="word", choices=sorted(TOKENIZERS))
    parser.add_argument("--rows", default="abcde", help="trained rows; f, g come with e")
    parser.add_argument("--max-train-pairs", type=int, default=20000)
    parser.add_argument(
        "--sequence-length",
        type=int,
        default=16,
        help="longest sequence in ids, [START] and [END] included: the padded length of the "
        "training pipeline, the learned position tables of row a and the decoded sequences",
    )
    parser.add_argument("--vocabulary-size", type=int, default=8000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--model-dim", type=int, default=128)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--intermediate-dim", type=int, default=512)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="rows a-c")
    parser.add_argument("--warmup-steps", type=int, default=400, help="rows d-g")
    parser.add_argument("--average-every", type=int, default=30, help="batches (row f)")
    parser.add_argument("--bleu-sentences", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


@keras.saving.register_keras_serializable(package="ablation")
class LearnedPositionEmbedding(keras.layers.Layer):
    """Token plus learned position embedding, unscaled (the keras.io example's layer)."""

    def __init__(self, sequence_length, vocabulary_size, embedding_dim, **kwargs):
        super().__init__(**kwargs)
        self.sequence_length = sequence_length
        self.vocabulary_size = vocabulary_size
        self.embedding_dim = embedding_dim
        self.token_embedding = keras.layers.Embedding(vocabulary_size, embedding_dim)
        self.position_embedding = keras.layers.Embedding(sequence_length, embedding_dim)
        self.supports_masking = True

    def call(self, inputs):
        positions = keras.ops.arange(keras.ops.shape(inputs)[-1])  # (seq,)
        return self.token_embedding(inputs) + self.position_embedding(positions)[None]

    def compute_mask(self, inputs, mask=None):
        return keras.ops.not_equal(inputs, 0)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sequence_length": self.sequence_length,
                "vocabulary_size": self.vocabulary_size,
                "embedding_dim": self.embedding_dim,
            }
        )
        return config


def keras_io_model(source_size, target_size, args):
    """Row a: learned, unscaled position embeddings around the package's stacks."""
    stack = {
        "num_layers": args.num_layers,
        "num_heads": args.num_heads,
        "intermediate_dim": args.intermediate_dim,
        "dropout": args.dropout,
    }
    encoder_inputs = keras.Input((None,), dtype="int32", name="encoder_inputs")
    decoder_inputs = keras.Input((None,), dtype="int32", name="decoder_inputs")
    x = LearnedPositionEmbedding(args.sequence_length, source_size, args.model_dim)(encoder_inputs)
    x = keras.layers.Dropout(args.dropout)(x)
    memory = ktl.TransformerEncoder(**stack)(x)
    y = LearnedPositionEmbedding(args.sequence_length, target_size, args.model_dim)(decoder_inputs)
    y = keras.layers.Dropout(args.dropout)(y)
    y = ktl.TransformerDecoder(**stack)(y, memory)
    logits = keras.layers.Dense(target_size, dtype="float32")(y)
    return keras.Model({"encoder_inputs": encoder_inputs, "decoder_inputs": decoder_inputs}, logits)


def greedy_full_recompute(model, source_ids, max_length):
    """Greedy decoding that reruns the whole model on the prefix at every step (row a).

    `max_length` counts the decoder positions, the start token included, as
    `Generator(max_length=...)` does.
    """
    batch = source_ids.shape[0]
    tokens = np.full((batch, 1), ktl.data.START_ID, dtype="int32")
    finished = np.zeros(batch, dtype=bool)
    for _ in range(max_length - 1):
        logits = keras.ops.convert_to_numpy(
            model.predict_on_batch({"encoder_inputs": source_ids, "decoder_inputs": tokens})
        )[:, -1]  # (batch, vocabulary)
        logits[:, [ktl.data.PADDING_ID, ktl.data.START_ID]] = -1e9
        next_ids = np.where(finished, ktl.data.PADDING_ID, logits.argmax(-1)).astype("int32")
        tokens = np.concatenate([tokens, next_ids[:, None]], axis=1)
        finished |= next_ids == ktl.data.END_ID
        if finished.all():
            break
    return tokens


def row_model(row, source_size, target_size, shared_vocabulary, args):
    """The model of a trained row; row e ties all three matrices on a shared vocabulary."""
    if row == "a":
        return keras_io_model(source_size, target_size, args)
    return ktl.build_transformer(
        source_size,
        target_size,
        num_layers=args.num_layers,
        model_dim=args.model_dim,
        num_heads=args.num_heads,
        intermediate_dim=args.intermediate_dim,
        dropout=args.dropout,
        tie_embeddings=("all" if shared_vocabulary else "decoder") if row == "e" else "none",
    )


def row_optimizer(row, args):
    if row in "abc":
        return keras.optimizers.Adam(args.learning_rate, beta_1=0.9, beta_2=0.98, epsilon=1e-9)
    return transformer_adam(args.model_dim, warmup_steps=args.warmup_steps)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    results_path = os.path.join(args.output_dir, f"results_{args.tokenizer}.jsonl")
    print("sacrebleu", sacrebleu.__version__)

    builder = tfds.builder("spa_eng", corpus_path=args.corpus, data_dir=args.data_dir)
    builder.download_and_prepare()
    train = builder.as_dataset(split="train", as_supervised=True).take(args.max_train_pairs)
    source_tokenizer, target_tokenizer = TOKENIZERS[args.tokenizer](train, args)
    shared_vocabulary = source_tokenizer is target_tokenizer
    source_size = source_tokenizer.vocabulary_size
    target_size = target_tokenizer.vocabulary_size
    print(f"vocabularies: {source_size} source, {target_size} target ids")
    batches = make_translation_dataset(
        train,
        source_tokenizer,
        target_tokenizer,
        batch_size=args.batch_size,
        sequence_length=args.sequence_length,
        bucket_boundaries=[8, 12],
        shuffle_buffer_size=args.max_train_pairs,
        seed=args.seed,
    )

    # Test sentences: distinct English sources, first Spanish reference each.
    references = {}
    for english, spanish in builder.as_dataset(
        split="test", as_supervised=True
    ).as_numpy_iterator():
        references.setdefault(english, spanish)
    sources = sorted(references)
    order = np.random.default_rng(args.seed).permutation(len(sources))[: args.bleu_sentences]
    sources = [sources[i] for i in order]
    refs = [references[s].decode("utf-8") for s in sources]
    source_ids = source_tokenizer(tf.constant(sources)).numpy()[:, : args.sequence_length]
    bleu = sacrebleu.BLEU(lowercase=True, tokenize="intl")

    def score(output_ids):
        hypotheses = [h.decode("utf-8") for h in target_tokenizer.detokenize(output_ids).numpy()]
        return bleu.corpus_score(hypotheses, [refs]).score, hypotheses

    def report(row, value, hypotheses, train_seconds, params, decode_seconds):
        result = {
            "row": row,
            "setting": ROWS[row],
            "tokenizer": args.tokenizer,
            "bleu": round(value, 2),
            "train_seconds": train_seconds,
            "decode_seconds": round(decode_seconds, 1),
            "parameters": params,
            "load_average": [round(load, 1) for load in os.getloadavg()],
            "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "signature": str(bleu.get_signature()),
            "sample": hypotheses[:3],
        }
        print(json.dumps(result, ensure_ascii=False), flush=True)
        with open(results_path, "a", encoding="utf-8") as f:
            f.write(json.dumps({**result, "settings": vars(args)}, ensure_ascii=False) + "\n")

    for row in args.rows:
        keras.utils.set_random_seed(args.seed)
        model = row_model(row, source_size, target_size, shared_vocabulary, args)
        model.compile(
            optimizer=row_optimizer(row, args),
            loss=MaskedSparseCategoricalCrossentropy(label_smoothing=0.0 if row in "ab" else 0.1),
        )
        callbacks = []
        if row == "e":
            averaging = CheckpointAveraging(num_checkpoints=5, save_freq=args.average_every)
            callbacks.append(averaging)
        start = time.time()
        model.fit(batches, epochs=args.epochs, verbose=2, callbacks=callbacks)
        train_seconds = round(time.time() - start)
        params = model.count_params()
        start = time.time()
        if row == "a":
            output_ids = greedy_full_recompute(model, source_ids, args.sequence_length)
        else:
            if row == "e":  # the final weights first; the average is row f
                model.set_weights(averaging.checkpoints[-1])
            output_ids = Generator(model, max_length=args.sequence_length).generate(source_ids)
        value, hypotheses = score(output_ids)
        report(row, value, hypotheses, train_seconds, params, time.time() - start)
        if row == "e":
            model.set_weights(averaging.averaged_weights())
            for extra, strategy in (("f", "greedy"), ("g", BeamSearch(4, length_penalty=0.6))):
                start = time.time()
                generator = Generator(model, strategy=strategy, max_length=args.sequence_length)
                value, hypotheses = score(generator.generate(source_ids))
                report(extra, value, hypotheses, train_seconds, params, time.time() - start)


if __name__ == "__main__":
    main()
