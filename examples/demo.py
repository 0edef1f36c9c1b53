"""`make demo`: dates to ISO dates, from nothing to a served, inspected model.

Runs offline on a CPU in a few minutes:

1. builds the synthetic `dates` dataset with its TFDS builder ("Thursday,
   August 14, 1941" -> "1941-08-14"; train, validation and test splits share
   no date) and says which date forms it holds: the model reads those 14 forms,
   for dates from 1900 to 2099, and no others;
2. builds character vocabularies from the training split (`TextTokenizer`)
   and trains `build_transformer` with the paper's recipe (Adam with the
   warmup schedule, label-smoothed masked cross-entropy) through `model.fit`;
3. decodes the whole test split greedily with `Generator` and
   reports exact match: the share of dates whose output is right to the last
   character;
4. saves the `.keras` file, a SavedModel with a string-in string-out
   `translate` signature (tokenizer, cached greedy loop and detokenizer in the
   graph), and a TFLite file running the same greedy loop (ids in, ids out;
   the character vocabularies go to a JSON file next to it);
5. reloads the SavedModel with TensorFlow alone and the TFLite file with
   `ai_edge_litert` alone, each in a fresh Python process that cannot import
   this package, translates the same sample dates, and checks that both agree
   with Keras;
6. draws the cross-attention weights of every head of the last decoder
   block for one date, and the positional-encoding matrix.

The log is quiet: one line per epoch and the demo's own lines, without the
notices TensorFlow writes once it has loaded (its import-time lines show);
`--verbose` shows progress bars and every notice.
It exits with a non-zero status when exact match is below `--min-exact-match`
or an export disagrees with Keras.
"""

import argparse
import datetime
import json
import logging
import os
import subprocess
import sys
import time

_PROCESS_START = time.monotonic()  # the summary's total includes importing TensorFlow


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the docstring's layout and shows every option's default."""


def _positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _fraction(text):
    value = float(text)
    if not 0.0 <= value <= 1.0:  # False for NaN too
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}")
    return value


def parse_args(argv=None):
    """The demo's options; `--help` describes each (standard library only)."""
    parser = argparse.ArgumentParser(
        prog="python examples/demo.py", description=__doc__, formatter_class=_HelpFormatter
    )
    option = parser.add_argument
    option(
        "--output-dir",
        default="artifacts",
        help="folder for the TFDS data, the model, its exports and the pictures",
    )
    option("--num-train", type=_positive_int, default=20_000, help="training dates")
    option(
        "--num-validation",
        type=_positive_int,
        default=1000,
        help="validation dates; the weights of the epoch with the lowest validation loss are kept",
    )
    option(
        "--num-test",
        type=_positive_int,
        default=1000,
        help="test dates, all decoded to measure exact match",
    )
    option("--epochs", type=_positive_int, default=10, help="passes over the training dates")
    option(
        "--batch-size",
        type=_positive_int,
        default=64,
        help="dates per batch (a batch holds dates of similar length)",
    )
    option(
        "--warmup-steps",
        type=_positive_int,
        default=250,
        help="steps over which the learning rate rises (the paper's schedule, section 5.3)",
    )
    option("--num-layers", type=_positive_int, default=2, help="encoder blocks, and decoder blocks")
    option(
        "--model-dim",
        type=_positive_int,
        default=64,
        help="d_model, a multiple of the 4 heads; the feed-forward width is twice it",
    )
    option(
        "--min-exact-match",
        type=_fraction,
        default=0.99,
        help="exit with status 1 when the share of test dates translated exactly is lower",
    )
    option("--seed", type=int, default=0, help="seed of the weights and of the shuffling")
    option(
        "--verbose",
        action="store_true",
        help="Keras' and TFDS' progress bars and all of TensorFlow's notices, "
        "instead of one line per epoch",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    ARGS = parse_args()  # `--help` answers before TensorFlow loads

# Read once, when TensorFlow loads.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402
from synthetic_translation import SyntheticTranslationConfig  # noqa: E402
from synthetic_translation import date_forms  # noqa: E402

import keras_transformer_layers as ktl  # noqa: E402
from keras_transformer_layers import _tensorflow_notices  # noqa: E402
from keras_transformer_layers import plotting  # noqa: E402
from keras_transformer_layers.data import END_ID  # noqa: E402
from keras_transformer_layers.data import OOV_ID  # noqa: E402
from keras_transformer_layers.data import PADDING_ID  # noqa: E402
from keras_transformer_layers.data import START_ID  # noqa: E402
from keras_transformer_layers.data import TextTokenizer  # noqa: E402
from keras_transformer_layers.data import build_vocabulary  # noqa: E402
from keras_transformer_layers.data import make_translation_dataset  # noqa: E402
from keras_transformer_layers.export import export_generation_tflite  # noqa: E402
from keras_transformer_layers.export import export_saved_model  # noqa: E402
from keras_transformer_layers.export import text_translation_function  # noqa: E402
from keras_transformer_layers.generation import Generator  # noqa: E402
from keras_transformer_layers.training import MaskedAccuracy  # noqa: E402
from keras_transformer_layers.training import MaskedSparseCategoricalCrossentropy  # noqa: E402
from keras_transformer_layers.training import transformer_adam  # noqa: E402

# Dates written by hand, next to test-split dates, for the sample translations.
HANDWRITTEN_DATES = ("Thursday, August 14, 1941", "the 1st of january, 2000", "31.12.1999")
# A form the dataset never uses (month first, slashes): shown, not checked.
UNTRAINED_DATE = "12/31/1999"

# Each fresh process blocks this package (and the TFLite one TensorFlow too),
# so the artifacts are shown to run with nothing but their runtime.
_SAVED_MODEL_SCRIPT = """
import json, sys
sys.modules["keras_transformer_layers"] = None
import tensorflow as tf
path, texts = sys.argv[1], json.loads(sys.argv[2])
translate = tf.saved_model.load(path).signatures["translate"]
outputs = translate(text=tf.constant(texts))
print(json.dumps([t.decode("utf-8") for t in outputs["translation"].numpy()]))
"""

_TFLITE_SCRIPT = """
import json, sys
sys.modules["keras_transformer_layers"] = None
sys.modules["tensorflow"] = None
import numpy as np
from ai_edge_litert.interpreter import Interpreter
path, vocabulary_path, texts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
with open(vocabulary_path) as file:
    vocabulary = json.load(file)
source_ids = {token: i for i, token in enumerate(vocabulary["source"])}
target = vocabulary["target"]
padding, unknown = vocabulary["padding_id"], vocabulary["oov_id"]
start, end = vocabulary["start_id"], vocabulary["end_id"]
runner = Interpreter(model_path=path).get_signature_runner()
translations = []
for text in texts:  # one date at a time, as on a device
    ids = [start] + [source_ids.get(c, unknown) for c in text] + [end]
    token_ids = runner(source_ids=np.array([ids], np.int32))["token_ids"][0]
    characters = []
    for i in token_ids.tolist():  # as TextTokenizer.detokenize
        if i == end:
            break
        if i not in (padding, start):
            characters.append(target[i] if 0 <= i < len(target) else target[unknown])
    translations.append("".join(characters))
print(json.dumps(translations))
"""


def build_dates(data_dir, num_train, num_validation, num_test, seed=1941):
    """Builds (or reuses) the `dates` TFDS dataset; returns the builder."""
    config = SyntheticTranslationConfig(
        name=f"dates_{num_train}_{num_validation}_{num_test}_{seed}",
        task="dates",
        num_train=num_train,
        num_validation=num_validation,
        num_test=num_test,
        seed=seed,
    )
    builder = tfds.builder("synthetic_translation", config=config, data_dir=data_dir)
    builder.download_and_prepare()
    return builder


def split_pairs(builder, split):
    """A split as a list of `(source, target)` Python strings."""
    dataset = builder.as_dataset(split=split, as_supervised=True)
    return [(s.decode("utf-8"), t.decode("utf-8")) for s, t in dataset.as_numpy_iterator()]


def make_tokenizers(builder):
    """Character vocabularies of both sides, built from the training split."""
    train = builder.as_dataset(split="train", as_supervised=True)
    source = TextTokenizer(build_vocabulary(train.map(lambda s, t: s)), name="source_tokenizer")
    target = TextTokenizer(build_vocabulary(train.map(lambda s, t: t)), name="target_tokenizer")
    return source, target


def translate_ids(generator, source_tokenizer, texts, batch_size=500):
    """Greedy output ids `(len(texts), generator.max_new_tokens)` for a list of strings."""
    outputs = []
    for begin in range(0, len(texts), batch_size):
        source_ids = source_tokenizer(tf.constant(texts[begin : begin + batch_size]))
        outputs.append(generator.generate(source_ids.numpy()))
    return np.concatenate(outputs)


def detokenize(target_tokenizer, ids):
    return [t.decode("utf-8") for t in target_tokenizer.detokenize(ids).numpy()]


def cross_attention_scores(model, source_ids, decoder_ids):
    """Cross-attention weights of the last decoder block for one example.

    Runs the embeddings, the encoder and the decoder blocks of a
    `build_transformer` model (at inference, dropout off) and asks the last
    block for its attention weights with `return_attention_scores=True`.

    Args:
        model: a `build_transformer` model.
        source_ids: int array `(1, source_len)`.
        decoder_ids: int array `(1, target_len)`, the decoder input
            (`[START]` then the output tokens but the last).

    Returns:
        float32 array `(heads, target_len, source_len)`.
    """
    source_ids = tf.constant(source_ids, tf.int32)
    decoder_ids = tf.constant(decoder_ids, tf.int32)
    source_mask = source_ids != PADDING_ID
    target_mask = decoder_ids != PADDING_ID
    encoder_outputs = model.encoder(model.encoder_embedding(source_ids), mask=source_mask)
    x = model.decoder_embedding(decoder_ids)
    masks = {"decoder_inputs_mask": target_mask, "encoder_outputs_mask": source_mask}
    *first_blocks, last_block = model.decoder.blocks
    for block in first_blocks:
        x = block(x, encoder_outputs, **masks)
    _, scores = last_block(x, encoder_outputs, return_attention_scores=True, **masks)
    return keras.ops.convert_to_numpy(scores["cross_attention"])[0]


def draw_cross_attention(model, generator, source_tokenizer, target_tokenizer, text, path):
    """Translates `text` and draws the last decoder block's cross-attention heads."""
    source_ids = source_tokenizer(tf.constant([text])).numpy()  # (1, source_len)
    output_ids = generator.generate(source_ids)[0].tolist()
    length = output_ids.index(END_ID) + 1 if END_ID in output_ids else len(output_ids)
    output_ids = output_ids[:length]  # the generated tokens, [END] included
    decoder_ids = np.array([[START_ID] + output_ids[:-1]])  # what the decoder read
    scores = cross_attention_scores(model, source_ids, decoder_ids)
    source_vocabulary = source_tokenizer.get_vocabulary()
    target_vocabulary = target_tokenizer.get_vocabulary()
    translation = detokenize(target_tokenizer, [output_ids])[0]
    plotting.plot_attention_heads(
        scores,
        query_tokens=[target_vocabulary[i] for i in output_ids],
        key_tokens=[source_vocabulary[i].replace(" ", "\u2423") for i in source_ids[0]],
        path=path,
        columns=2,
        title=f"Cross-attention of the last decoder block\n{text!r} -> {translation!r}",
    )
    return scores


def run_fresh_process(script, *args):
    """Starts `python -I -c script args` (no PYTHONPATH, no current folder)."""
    environment = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH",)}
    environment["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return subprocess.Popen(
        [sys.executable, "-I", "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )


def finish_fresh_process(process, what):
    stdout, stderr = process.communicate(timeout=600)
    if process.returncode != 0:
        raise SystemExit(f"Reloading the {what} in a fresh process failed:\n{stderr[-3000:]}")
    return json.loads(stdout.strip().splitlines()[-1])


def write_vocabularies(path, source_tokenizer, target_tokenizer):
    """The id layout for runtimes without TensorFlow (the TFLite file)."""
    with open(path, "w", encoding="utf-8") as file:
        json.dump(
            {
                "split": "character",
                "source": source_tokenizer.get_vocabulary(),
                "target": target_tokenizer.get_vocabulary(),
                "padding_id": PADDING_ID,
                "oov_id": OOV_ID,
                "start_id": START_ID,
                "end_id": END_ID,
            },
            file,
            ensure_ascii=False,
        )


def export_artifacts(model, generator, source_tokenizer, target_tokenizer, output_dir):
    """Writes the `.keras` file, the SavedModel, the TFLite file and the vocabularies."""
    paths = {
        "keras": os.path.join(output_dir, "dates.keras"),
        "saved_model": os.path.join(output_dir, "dates_savedmodel"),
        "tflite": os.path.join(output_dir, "dates_generate.tflite"),
        "vocabulary": os.path.join(output_dir, "dates_vocabulary.json"),
    }
    model.save(paths["keras"])
    export_saved_model(
        model,
        paths["saved_model"],
        text_translator=text_translation_function(generator, source_tokenizer, target_tokenizer),
        overwrite=True,
    )
    export_generation_tflite(generator, paths["tflite"], batch_size=1, overwrite=True)
    write_vocabularies(paths["vocabulary"], source_tokenizer, target_tokenizer)
    return paths


def translate_everywhere(generator, source_tokenizer, target_tokenizer, paths, texts):
    """Translates `texts` with Keras, and with each export in a fresh process.

    Returns:
        Three lists of strings: Keras, SavedModel, TFLite.
    """
    saved_model_process = run_fresh_process(
        _SAVED_MODEL_SCRIPT, paths["saved_model"], json.dumps(texts)
    )
    tflite_process = run_fresh_process(
        _TFLITE_SCRIPT, paths["tflite"], paths["vocabulary"], json.dumps(texts)
    )
    keras_translations = detokenize(
        target_tokenizer, translate_ids(generator, source_tokenizer, texts)
    )
    return (
        keras_translations,
        finish_fresh_process(saved_model_process, "SavedModel"),
        finish_fresh_process(tflite_process, "TFLite file"),
    )


def quiet_logs(verbose):
    """Keeps the output to the demo's lines (and, with `verbose`, the progress bars)."""
    if not verbose:
        tfds.disable_progress_bar()
    logging.getLogger("absl").setLevel(logging.ERROR)
    tf.get_logger().setLevel(logging.ERROR)


def describe_date_forms(train_pairs):
    """Prints the span of the training dates and the forms they are written in."""
    targets = sorted(target for _, target in train_pairs)
    forms = date_forms(datetime.date(1941, 8, 14))
    print(
        f"  Training dates run from {targets[0]} to {targets[-1]}, each written in one of "
        f"these {len(forms)} forms (here 14 August 1941). The model reads these forms and "
        "no others:"
    )
    for form in forms:
        print(f"    {form}")


def prepare_data(args):
    """Step 1: the `dates` dataset, its date forms and both character vocabularies."""
    print("== Data: the offline `dates` TFDS dataset ==")
    builder = build_dates(
        os.path.join(args.output_dir, "tfds"), args.num_train, args.num_validation, args.num_test
    )
    source_tokenizer, target_tokenizer = make_tokenizers(builder)
    test_pairs = split_pairs(builder, "test")
    for source, target in test_pairs[:3]:
        print(f"  {source!r} -> {target!r}")
    print(
        f"  splits: {builder.info.splits['train'].num_examples} train, "
        f"{builder.info.splits['validation'].num_examples} validation, "
        f"{len(test_pairs)} test; vocabularies: {source_tokenizer.vocabulary_size} "
        f"source and {target_tokenizer.vocabulary_size} target ids"
    )
    describe_date_forms(split_pairs(builder, "train"))
    return builder, source_tokenizer, target_tokenizer, test_pairs


def train(args, builder, source_tokenizer, target_tokenizer):
    """Step 2: `build_transformer` trained with the paper's recipe in `model.fit`.

    Returns:
        The model (the weights of the epoch with the lowest validation loss)
        and the training time in seconds.
    """

    def batches(split, shuffle):
        return make_translation_dataset(
            builder.as_dataset(split=split, as_supervised=True),
            source_tokenizer,
            target_tokenizer,
            batch_size=args.batch_size,
            bucket_boundaries=[16, 24],
            shuffle_buffer_size=args.num_train if shuffle else None,
            seed=args.seed,
        )

    model = ktl.build_transformer(
        source_tokenizer.vocabulary_size,
        target_tokenizer.vocabulary_size,
        num_layers=args.num_layers,
        model_dim=args.model_dim,
        num_heads=4,
        intermediate_dim=2 * args.model_dim,
        dropout=0.0,
    )
    model.compile(
        optimizer=transformer_adam(args.model_dim, warmup_steps=args.warmup_steps),
        loss=MaskedSparseCategoricalCrossentropy(label_smoothing=0.1),
        metrics=[MaskedAccuracy()],
        # Batches differ in length; XLA would recompile for each new shape,
        # which on CPU costs more than it saves on this small model.
        jit_compile=False,
    )
    print(f"\n== Training: {model.count_params():,} parameters ==")
    start = time.monotonic()
    model.fit(
        batches("train", shuffle=True),
        validation_data=batches("validation", shuffle=False),
        epochs=args.epochs,
        shuffle=False,  # the pipeline shuffles
        # The rate is still high at the end of this short run, so keep the
        # epoch with the lowest validation loss (the test split stays unseen).
        callbacks=[
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=args.epochs, restore_best_weights=True, verbose=1
            )
        ],
        verbose=1 if args.verbose else 2,  # progress bars, or one line per epoch
    )
    return model, time.monotonic() - start


def evaluate(model, source_tokenizer, target_tokenizer, test_pairs):
    """Step 3: decodes the test split greedily and prints exact match.

    Returns:
        The `Generator` and the number of test dates translated exactly.
    """
    print("\n== Exact match on the test split (greedy, Generator) ==")
    max_new_tokens = max(len(t) for _, t in test_pairs) + 1  # the longest target, then [END]
    generator = Generator(model, max_new_tokens=max_new_tokens, start_id=START_ID, end_id=END_ID)
    start = time.monotonic()
    predictions = detokenize(
        target_tokenizer, translate_ids(generator, source_tokenizer, [s for s, _ in test_pairs])
    )
    errors = [(s, t, p) for (s, t), p in zip(test_pairs, predictions, strict=True) if p != t]
    correct = len(test_pairs) - len(errors)
    print(
        f"  {correct / len(test_pairs):.2%} ({correct}/{len(test_pairs)}) "
        f"in {time.monotonic() - start:.0f} s"
    )
    for source, target, prediction in errors[:5]:
        print(f"  wrong: {source!r} -> {prediction!r} (expected {target!r})")
    return generator, correct


def save_artifacts(model, generator, source_tokenizer, target_tokenizer, output_dir):
    """Step 4: the `.keras` file, the SavedModel, the TFLite file and the vocabularies."""
    print("\n== Artifacts ==")
    paths = export_artifacts(model, generator, source_tokenizer, target_tokenizer, output_dir)
    for name in ("keras", "saved_model", "tflite", "vocabulary"):
        print(f"  {paths[name]}")
    return paths


def compare_exports(generator, source_tokenizer, target_tokenizer, paths, test_pairs):
    """Step 5: sample dates through Keras and through each export in a fresh process.

    Returns:
        Whether the three agree on every sample, and the number of samples.
    """
    print("\n== The same dates through Keras, the SavedModel and TFLite ==")
    samples = list(HANDWRITTEN_DATES) + [s for s, _ in test_pairs[3:8]]
    translations = translate_everywhere(
        generator, source_tokenizer, target_tokenizer, paths, samples
    )
    agree = translations[0] == translations[1] == translations[2]
    width = max(len(s) for s in samples) + 2
    print(f"  {'source':<{width}} {'Keras':<11} {'SavedModel':<11} {'TFLite':<11}")
    for source, *outputs in zip(samples, *translations, strict=True):
        mark = "" if len(set(outputs)) == 1 else "  <- differ"
        print(f"  {source!r:<{width}} " + " ".join(f"{o:<11}" for o in outputs) + mark)
    untrained = detokenize(
        target_tokenizer, translate_ids(generator, source_tokenizer, [UNTRAINED_DATE])
    )[0]
    print(
        f"  Not one of the trained forms (month first, slashes): {UNTRAINED_DATE!r} -> "
        f"{untrained!r} (Keras; not checked: the model was never shown such a date)"
    )
    return agree, len(samples)


def draw_pictures(model, generator, source_tokenizer, target_tokenizer, output_dir, model_dim):
    """Step 6: the last decoder block's cross-attention heads and the positional encoding."""
    print("\n== Pictures ==")
    attention_path = os.path.join(output_dir, "cross_attention.png")
    draw_cross_attention(
        model, generator, source_tokenizer, target_tokenizer, HANDWRITTEN_DATES[0], attention_path
    )
    encoding_path = os.path.join(output_dir, "positional_encoding.png")
    encoding = ktl.PositionalEncoding()(np.zeros((1, 100, model_dim), "float32"))
    plotting.plot_positional_encoding(
        encoding, encoding_path, title=f"Sinusoidal positional encoding, d_model={model_dim}"
    )
    print(f"  {attention_path}\n  {encoding_path}")
    return attention_path, encoding_path


def print_summary(args, correct, num_test, training_seconds, agree, num_samples, paths, pictures):
    print("\n== Summary ==")
    print(
        f"Exact match on the test split: {correct / num_test:.2%} "
        f"({correct}/{num_test} dates, greedy decoding)"
    )
    print(
        f"Training: {args.epochs} epochs on {args.num_train:,} dates in "
        f"{training_seconds:.0f} s; whole demo: {time.monotonic() - _PROCESS_START:.0f} s"
    )
    print(
        "Keras, SavedModel (TensorFlow only) and TFLite (ai_edge_litert only) "
        f"translations agree: {'yes' if agree else 'NO'} ({num_samples} dates)"
    )
    print(f"Model:      {paths['keras']}")
    print(f"SavedModel: {paths['saved_model']}  (signature 'translate': text -> translation)")
    print(
        f"TFLite:     {paths['tflite']}  (source_ids -> token_ids; "
        f"vocabularies in {paths['vocabulary']})"
    )
    print(f"Pictures:   {', '.join(pictures)}")


def main(args):
    """Runs the six steps; exits with status 1 when a target is missed."""
    quiet_logs(args.verbose)
    os.makedirs(args.output_dir, exist_ok=True)
    keras.utils.set_random_seed(args.seed)
    builder, source_tokenizer, target_tokenizer, test_pairs = prepare_data(args)
    model, training_seconds = train(args, builder, source_tokenizer, target_tokenizer)
    generator, correct = evaluate(model, source_tokenizer, target_tokenizer, test_pairs)
    paths = save_artifacts(model, generator, source_tokenizer, target_tokenizer, args.output_dir)
    agree, num_samples = compare_exports(
        generator, source_tokenizer, target_tokenizer, paths, test_pairs
    )
    pictures = draw_pictures(
        model, generator, source_tokenizer, target_tokenizer, args.output_dir, args.model_dim
    )
    exact_match = correct / len(test_pairs)
    print_summary(
        args, correct, len(test_pairs), training_seconds, agree, num_samples, paths, pictures
    )
    failures = []
    if exact_match < args.min_exact_match:
        failures.append(
            f"exact match {exact_match:.2%} is below the target {args.min_exact_match:.0%}"
        )
    if not agree:
        failures.append("the exported models disagree with Keras")
    if failures:
        raise SystemExit("FAILED: " + "; ".join(failures))


if __name__ == "__main__":
    if not ARGS.verbose:
        # TensorFlow loaded with the package above, and its import-time lines
        # are out; the filter drops the notices it writes while it runs.
        _tensorflow_notices.filter_stderr()
    main(ARGS)
