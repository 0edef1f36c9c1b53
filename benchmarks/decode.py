"""Milliseconds per generated token: our decoding paths vs keras-hub vs full recompute.

Usage:

    KERAS_BACKEND=tensorflow python benchmarks/decode.py [--repeats 10]
        [--batch-sizes 1 8 32] [--no-litert-int8] [--no-jax]
        [--serving-corpus PATH/spa-eng.zip]

All variants share the same weights (2 encoder + 2 decoder layers,
model_dim 256, 8 heads, intermediate 1024, vocabulary 8000), the same
sources of 32 tokens, and generate exactly 64 tokens greedily (the end id is
disabled so no variant stops early); the time of a call (encoder included)
is divided by 64. Every variant's tokens are compared with `TF cached`:

- `TF cached, XLA` / `TF cached`: `Generator.generate` (key/value cache,
  encoder and cross-attention keys/values computed once), with and without
  XLA.
- `TF layers' cache API, XLA` / `JAX layers' cache API, jit`: greedy
  decoding written by a user who composes the package's layers (the same
  embeddings, `TransformerEncoder`, `TransformerDecoder` and logits) and
  drives the decoder's cache API (`initial_self_attention_cache`,
  `compute_cross_attention_cache`, `decoder(..., self_attention_cache=...)`)
  in a `keras.ops.while_loop` of their own, compiled as `Generator` compiles
  its loop.
- `JAX cached, jit`: the same `Generator` under `jax.jit`, in a subprocess
  run with the JAX environment (`JAX_PYTHON`, default `.venv-jax/bin/python`
  of the repository), on this model's weights; timed before the others, not
  round-robin with them.
- `LiteRT float32` / `LiteRT int8`: `export_generation_tflite` (the whole
  loop as a TFLite `WHILE`) run by the `ai-edge-litert` interpreter with
  one thread per core; `int8` exports with
  `quantization="dynamic_int8"` and reports its token agreement.
- `TF full recompute`: the TensorFlow tutorial's way, the full model
  (encoder included) on the whole prefix at every step, in one compiled loop.
- `keras-hub cached`: keras-hub's `TransformerEncoder`/`TransformerDecoder`
  with their self- and cross-attention caches, same weights and embeddings,
  with XLA (without and with padding masks) and without. The ratios are
  against the faster of the two XLA variants.

With `--serving-corpus`, the same run then measures serving 500 spa-eng
sentences one request at a time (`benchmarks/serving.py`, its defaults).

The in-process variants are timed round-robin, so that a busy machine slows
every variant alike; the best of `--repeats` runs is kept. Each timed call
follows an untimed call of the same variant (JAX's too): right after another
variant, a call was up to 40% slower (the other's thread pools still spinning,
the processor caches full of its weights), and which variant paid depended on
the order.
"""

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

if keras.config.backend() == "tensorflow":  # the JAX worker runs without TensorFlow
    import tensorflow as tf

import keras_transformer_layers as ktl  # noqa: E402
from keras_transformer_layers.generation import Generator  # noqa: E402
from keras_transformer_layers.generation._compile import compile_generation  # noqa: E402
from keras_transformer_layers.tokens import START_ID  # noqa: E402

NUM_LAYERS, MODEL_DIM, NUM_HEADS, INTERMEDIATE_DIM, VOCABULARY = 2, 256, 8, 1024, 8000
SOURCE_LEN, NEW_TOKENS = 32, 64
REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The Python of an environment with JAX (and without TensorFlow).
JAX_PYTHON = os.environ.get("JAX_PYTHON", os.path.join(REPOSITORY, ".venv-jax", "bin", "python"))


def greedy_token(logits):
    """Arg-max over the last axis, never padding (0) or the start id, as the generator."""
    excluded = np.isin(np.arange(VOCABULARY), [0, START_ID])
    return tf.argmax(tf.where(excluded, -1e9, logits), axis=-1, output_type=tf.int32)


def recompute_function(model):
    """Greedy decoding that reruns the whole model on the prefix every step."""

    @tf.function(input_signature=[tf.TensorSpec((None, None), tf.int32)])
    def generate(source_ids):
        batch = tf.shape(source_ids)[0]
        tokens = tf.concat(
            [tf.fill((batch, 1), START_ID), tf.zeros((batch, NEW_TOKENS), tf.int32)], axis=1
        )

        def body(step, tokens):
            logits = model({"encoder_inputs": source_ids, "decoder_inputs": tokens[:, : step + 1]})
            next_token = greedy_token(logits[:, -1])
            tokens = tf.tensor_scatter_nd_update(
                tokens,
                tf.stack([tf.range(batch), tf.fill((batch,), step + 1)], axis=1),
                next_token,
            )
            return step + 1, tokens

        _, tokens = tf.while_loop(lambda step, tokens: step < NEW_TOKENS, body, (0, tokens))
        return tokens[:, 1:]

    return generate


def layers_cache_function(model):
    """Greedy decoding through the layers' cache API, in a loop a user writes.

    The layers are the model's own (same weights); the loop is plain
    `keras.ops`, compiled with XLA on TensorFlow and `jax.jit` on JAX.
    """
    source_embedding = model.get_layer("encoder_embedding")
    encoder = model.get_layer("encoder")
    target_embedding = model.get_layer("decoder_embedding")
    decoder = model.get_layer("decoder")
    logits_layer = model.get_layer("logits")
    excluded = np.isin(np.arange(VOCABULARY), [0, START_ID])

    def generate(source_ids, seed):
        batch = keras.ops.shape(source_ids)[0]
        source_mask = source_embedding.compute_mask(source_ids)
        memory = encoder(source_embedding(source_ids), mask=source_mask)
        cross_cache = decoder.compute_cross_attention_cache(memory)
        cache = decoder.initial_self_attention_cache(batch, NEW_TOKENS)
        tokens = keras.ops.zeros((batch, NEW_TOKENS), "int32")

        def body(step, token, cache, tokens):
            y = target_embedding(token, start_index=step)
            y, cache = decoder(
                y,
                None,
                decoder_inputs_mask=target_embedding.compute_mask(token),
                encoder_outputs_mask=source_mask,
                self_attention_cache=cache,
                self_attention_cache_update_index=step,
                cross_attention_cache=cross_cache,
            )
            logits = keras.ops.where(excluded, -1e9, logits_layer(y)[:, 0])
            next_token = keras.ops.cast(keras.ops.argmax(logits, axis=-1), "int32")[:, None]
            tokens = keras.ops.slice_update(tokens, (0, step), next_token)
            return step + 1, next_token, cache, tokens

        start = keras.ops.full((batch, 1), START_ID, "int32")
        step = keras.ops.convert_to_tensor(0, "int32")
        _, _, _, tokens = keras.ops.while_loop(
            lambda step, *_: step < NEW_TOKENS, body, (step, start, cache, tokens)
        )
        return tokens

    compiled = compile_generation(generate, model.variables, jit_compile=True)
    return lambda source: compiled(source, 0)


def keras_hub_function(model, jit_compile, padding_masks):
    """Greedy decoding with keras-hub's cached decoder, on `model`'s weights.

    With `padding_masks=False` no padding mask reaches keras-hub: the
    benchmark's sources have no padding, so the tokens are the same, and
    keras-hub then merges no padding mask into its causal mask at every step.
    The caches are stacked per step as keras-hub's own generation does; one
    loop variable per block was slower under XLA at batch 1.
    """
    import keras_hub

    def copy_stack(ours, theirs_class, input_shapes):
        blocks = []
        for block in ours.blocks:
            theirs = theirs_class(
                intermediate_dim=INTERMEDIATE_DIM,
                num_heads=NUM_HEADS,
                layer_norm_epsilon=block.layer_norm_epsilon,
            )
            theirs.build(*input_shapes)
            _copy_block_weights(block, theirs)
            blocks.append(theirs)
        return blocks

    shape = (None, None, MODEL_DIM)
    encoder_blocks = copy_stack(
        model.get_layer("encoder"), keras_hub.layers.TransformerEncoder, [shape]
    )
    decoder_blocks = copy_stack(
        model.get_layer("decoder"), keras_hub.layers.TransformerDecoder, [shape, shape]
    )
    source_embedding = model.get_layer("encoder_embedding")
    target_embedding = model.get_layer("decoder_embedding")
    logits_layer = model.get_layer("logits")
    key_dim = MODEL_DIM // NUM_HEADS

    def embed(embedding, ids, **kwargs):
        # `tf.identity` drops the Keras mask the embedding attaches (`mask_zero`).
        x = embedding(ids, **kwargs)
        return x if padding_masks else tf.identity(x)

    @tf.function(input_signature=[tf.TensorSpec((None, None), tf.int32)], jit_compile=jit_compile)
    def generate(source_ids):
        batch = tf.shape(source_ids)[0]
        source_mask = tf.not_equal(source_ids, 0) if padding_masks else None
        x = embed(source_embedding, source_ids)
        for block in encoder_blocks:
            x = block(x, padding_mask=source_mask)
        encoder_outputs = x
        self_cache = tf.zeros((NUM_LAYERS, batch, 2, NEW_TOKENS, NUM_HEADS, key_dim))
        cross_cache = tf.zeros((NUM_LAYERS, batch, 2, SOURCE_LEN, NUM_HEADS, key_dim))

        def step_fn(step, token, self_cache, cross_cache, cross_index):
            y = embed(target_embedding, token, start_index=step)
            self_caches, cross_caches = [], []
            for index, block in enumerate(decoder_blocks):
                y, layer_self, layer_cross = block(
                    y,
                    encoder_outputs,
                    encoder_padding_mask=source_mask,
                    self_attention_cache=self_cache[index],
                    self_attention_cache_update_index=step,
                    cross_attention_cache=cross_cache[index],
                    cross_attention_cache_update_index=cross_index,
                )
                self_caches.append(layer_self)
                cross_caches.append(layer_cross)
            next_token = greedy_token(logits_layer(y)[:, 0])
            return next_token[:, None], tf.stack(self_caches), tf.stack(cross_caches)

        # Step 0 fills the cross-attention cache; later steps reuse it.
        token, self_cache, cross_cache = step_fn(
            0, tf.fill((batch, 1), START_ID), self_cache, cross_cache, 0
        )
        tokens = tf.TensorArray(tf.int32, size=NEW_TOKENS)
        tokens = tokens.write(0, token[:, 0])

        def body(step, token, self_cache, tokens):
            token, self_cache, _ = step_fn(step, token, self_cache, cross_cache, None)
            return step + 1, token, self_cache, tokens.write(step, token[:, 0])

        _, _, _, tokens = tf.while_loop(
            lambda step, *_: step < NEW_TOKENS, body, (1, token, self_cache, tokens)
        )
        return tf.transpose(tokens.stack())

    return generate


def _copy_block_weights(block, theirs):
    """Copies our post-norm block's weights into a keras-hub block, by name."""
    ours = {}
    for name in ("self_attention", "cross_attention"):
        layer = getattr(block, name, None)
        if layer is None:
            continue
        hub_name = (
            "self_attention_layer"
            if theirs.name.startswith("transformer_encoder") and name == "self_attention"
            else name
        )
        for dense in ("query", "key", "value", "attention_output"):
            sublayer = getattr(
                layer, f"{dense}_dense" if dense != "attention_output" else "output_dense"
            )
            ours[f"{hub_name}/{dense}/kernel"] = sublayer.kernel
            ours[f"{hub_name}/{dense}/bias"] = sublayer.bias
    for name, hub_name in [
        ("self_attention", "self_attention_layer_norm"),
        ("cross_attention", "cross_attention_layer_norm"),
        ("feed_forward", "feedforward_layer_norm"),
    ]:
        add_norm = getattr(block, f"{name}_add_norm", None)
        if add_norm is not None:
            ours[f"{hub_name}/gamma"] = add_norm.layer_norm.gamma
            ours[f"{hub_name}/beta"] = add_norm.layer_norm.beta
    inner, outer = [w for w in block.feed_forward.weights if len(w.shape) == 2]
    biases = [w for w in block.feed_forward.weights if len(w.shape) == 1]
    ours["feedforward_intermediate_dense/kernel"] = inner
    ours["feedforward_intermediate_dense/bias"] = biases[0]
    ours["feedforward_output_dense/kernel"] = outer
    ours["feedforward_output_dense/bias"] = biases[1]
    for weight in theirs.weights:
        key = weight.path.split("/", 1)[1]
        weight.assign(np.asarray(ours.pop(key)))
    assert not ours, f"unused weights: {list(ours)}"


def _first(output):
    """The tokens of a variant's output (the first item of a tuple), as NumPy."""
    return np.asarray(output[0] if isinstance(output, tuple) else output)


def milliseconds_per_step(variants, source, repeats):
    """Best time per step of each variant, timed round-robin so that a busy
    machine slows every variant alike."""
    outputs, times = {}, {name: [] for name in variants}
    for name, function in variants.items():
        outputs[name] = _first(function(source))  # trace, compile, warm up
    for _ in range(repeats):
        for name, function in variants.items():
            # An untimed call first: the variant before may leave its thread
            # pools spinning or the caches full of its own weights, and that
            # slowed whichever variant came next by up to 40%.
            _first(function(source))
            start = time.perf_counter()
            _first(function(source))
            times[name].append(time.perf_counter() - start)
    return {name: 1000 * min(t) / NEW_TOKENS for name, t in times.items()}, outputs


def jax_worker(directory, batch_sizes, repeats):
    """Times `Generator.generate` with `jax.jit` (run under KERAS_BACKEND=jax).

    Loads the weights the TensorFlow process saved in `directory` and writes
    `jax.json` there: per batch size, ms per token and the tokens.
    """
    model = build_model()
    model.load_weights(os.path.join(directory, "model.weights.h5"))
    generator = Generator(model, max_new_tokens=NEW_TOKENS, end_id=None)
    variants = {
        "JAX cached, jit": lambda source: generator.generate(source, seed=0),
        "JAX layers' cache API, jit": layers_cache_function(model),
    }
    results = {}
    for batch_size in batch_sizes:
        source = source_ids(batch_size)
        milliseconds, outputs = milliseconds_per_step(variants, source, repeats)
        results[batch_size] = {
            name: {"ms": milliseconds[name], "tokens": outputs[name].tolist()} for name in variants
        }
    with open(os.path.join(directory, "jax.json"), "w") as file:
        json.dump(results, file)


def run_jax(model, directory, batch_sizes, repeats):
    """`{batch_size: {variant: (ms per token, tokens)}}` of the JAX paths, from a subprocess.

    The JAX backend needs its own process (and the JAX environment, without
    TensorFlow): it gets this model's weights through a weights file.
    """
    model.save_weights(os.path.join(directory, "model.weights.h5"))
    environment = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=REPOSITORY)
    command = [JAX_PYTHON, os.path.abspath(__file__), "--jax-worker", directory]
    command += ["--repeats", str(repeats), "--batch-sizes", *map(str, batch_sizes)]
    subprocess.run(["nice", "-n", "10", *command], env=environment, check=True)
    with open(os.path.join(directory, "jax.json")) as file:
        results = json.load(file)
    return {
        int(batch): {name: (row["ms"], np.array(row["tokens"])) for name, row in rows.items()}
        for batch, rows in results.items()
    }


def litert_function(generator, directory, batch_size, quantization):
    """The generation WHILE loop exported to LiteRT, run by the standalone interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    from keras_transformer_layers.export import export_generation_tflite

    name = f"generate_b{batch_size}_{quantization or 'float32'}.tflite"
    options = {} if quantization is None else {"quantization": quantization}
    report = export_generation_tflite(
        generator,
        os.path.join(directory, name),
        batch_size=batch_size,
        input_len=SOURCE_LEN,
        **options,
    )
    runner = Interpreter(
        model_path=report["path"], num_threads=os.cpu_count()
    ).get_signature_runner()
    return lambda source: runner(source_ids=np.asarray(source))["token_ids"]


def build_model(source_vocabulary_size=VOCABULARY, seed=0):
    """The benchmark model, random weights from `seed` (also used by serving.py)."""
    keras.utils.set_random_seed(seed)
    return ktl.build_transformer(
        source_vocabulary_size,
        VOCABULARY,
        num_layers=NUM_LAYERS,
        model_dim=MODEL_DIM,
        num_heads=NUM_HEADS,
        intermediate_dim=INTERMEDIATE_DIM,
        dropout=0.0,
    )


def source_ids(batch_size):
    return (
        np.random.default_rng(0).integers(3, VOCABULARY, (batch_size, SOURCE_LEN)).astype("int32")
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument(
        "--no-litert-int8",
        action="store_true",
        help="skip the dynamic-int8 LiteRT loop (export_generation_tflite's "
        "quantization='dynamic_int8')",
    )
    parser.add_argument("--no-jax", action="store_true", help="skip the JAX subprocess")
    parser.add_argument(
        "--serving-corpus",
        metavar="PATH",
        help="then, in the same run, benchmarks/serving.py on this spa-eng.zip: 500 "
        "requests one at a time, XLA compiled per shape vs length buckets",
    )
    parser.add_argument("--jax-worker", metavar="DIRECTORY", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.jax_worker:
        jax_worker(args.jax_worker, args.batch_sizes, args.repeats)
        return

    model = build_model()
    settings = {"max_new_tokens": NEW_TOKENS, "end_id": None}
    cached = Generator(model, **settings)
    cached_jit = Generator(model, jit_compile=True, **settings)
    directory = tempfile.mkdtemp(prefix="decode_benchmark_")
    jax_rows = {} if args.no_jax else run_jax(model, directory, args.batch_sizes, args.repeats)
    common = {
        "TF cached, XLA": lambda source: cached_jit.generate(source, seed=0),
        "TF cached": lambda source: cached.generate(source, seed=0),
        "TF layers' cache API, XLA": layers_cache_function(model),
        "TF full recompute": recompute_function(model),
        "keras-hub cached, XLA": keras_hub_function(model, True, padding_masks=False),
        "keras-hub cached, XLA, masks": keras_hub_function(model, True, padding_masks=True),
        "keras-hub cached": keras_hub_function(model, False, padding_masks=False),
    }
    rows = {}
    for batch_size in args.batch_sizes:
        variants = dict(common)
        variants["LiteRT float32"] = litert_function(cached, directory, batch_size, None)
        if not args.no_litert_int8:
            variants["LiteRT int8"] = litert_function(cached, directory, batch_size, "dynamic_int8")
        source = source_ids(batch_size)
        results, outputs = milliseconds_per_step(variants, tf.constant(source), args.repeats)
        for name, (milliseconds, tokens) in jax_rows.get(batch_size, {}).items():
            results[name], outputs[name] = milliseconds, tokens
        for name, output in outputs.items():  # same weights, same greedy tokens
            agree = np.mean(output == outputs["TF cached"])
            if agree < 1.0 or name == "LiteRT int8":
                print(f"batch {batch_size}: {name} agrees with TF cached on {agree:.2%} of tokens")
        rows[batch_size] = results
    shutil.rmtree(directory)

    names = list(dict.fromkeys(name for results in rows.values() for name in results))
    print(
        f"\nms per generated token ({NEW_TOKENS} tokens, source {SOURCE_LEN}, encoder "
        f"included; best of {args.repeats} runs); x = speed-up over the faster "
        "keras-hub XLA variant of the same batch"
    )
    header = "".join(f" batch {batch} | x |" for batch in rows)
    print("| variant |" + header)
    print("|---" * (1 + 2 * len(rows)) + "|")
    for name in names:
        cells = []
        for results in rows.values():
            baseline = min(
                results["keras-hub cached, XLA"], results["keras-hub cached, XLA, masks"]
            )
            value = results.get(name)
            cells += ["-", "-"] if value is None else [f"{value:.2f}", f"{baseline / value:.2f}x"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.serving_corpus:
        import serving  # this directory's serving.py

        print()
        serving.main(["--corpus", args.serving_corpus])


if __name__ == "__main__":
    main()
