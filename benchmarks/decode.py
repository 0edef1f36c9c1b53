"""Milliseconds per generated token: cached decoding vs full recompute vs keras-hub.

Usage: `KERAS_BACKEND=tensorflow python benchmarks/decode.py [--repeats 3]`

All variants share the same weights (2 encoder + 2 decoder layers,
model_dim 256, 8 heads, intermediate 1024, vocabulary 8000), a source of 32
tokens and generate exactly 64 tokens (the end id is disabled so no variant
stops early). Each variant is one `tf.function` around a `while_loop`:

- `cached, jit`/`cached`: `Generator.generate` (key/value cache, encoder
  and cross-attention keys/values computed once), with and without XLA.
- `recompute`: the TensorFlow tutorial's way, the full model (encoder
  included) on the whole prefix at every step, in one compiled loop.
- `keras-hub cached`: keras-hub's `TransformerEncoder`/`TransformerDecoder`
  with their self- and cross-attention caches, same weights and embeddings.
"""

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_transformer_layers as ktl  # noqa: E402
from keras_transformer_layers.generation import Generator  # noqa: E402
from keras_transformer_layers.tokens import START_ID  # noqa: E402

NUM_LAYERS, MODEL_DIM, NUM_HEADS, INTERMEDIATE_DIM, VOCABULARY = 2, 256, 8, 1024, 8000
SOURCE_LEN, NEW_TOKENS = 32, 64


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


def keras_hub_function(model, jit_compile):
    """Greedy decoding with keras-hub's cached decoder, on `model`'s weights."""
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

    @tf.function(input_signature=[tf.TensorSpec((None, None), tf.int32)], jit_compile=jit_compile)
    def generate(source_ids):
        batch = tf.shape(source_ids)[0]
        source_mask = tf.not_equal(source_ids, 0)
        x = source_embedding(source_ids)
        for block in encoder_blocks:
            x = block(x, padding_mask=source_mask)
        encoder_outputs = x
        self_cache = tf.zeros((NUM_LAYERS, batch, 2, NEW_TOKENS, NUM_HEADS, key_dim))
        cross_cache = tf.zeros((NUM_LAYERS, batch, 2, SOURCE_LEN, NUM_HEADS, key_dim))

        def step_fn(step, token, self_cache, cross_cache, cross_index):
            y = target_embedding(token, start_index=step)
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


def milliseconds_per_step(variants, source, repeats):
    """Best time per step of each variant, timed round-robin so that a busy
    machine slows every variant alike."""
    outputs, times = {}, {name: [] for name in variants}
    for name, function in variants.items():
        output = function(source)  # trace, compile, warm up
        outputs[name] = np.asarray(output[0] if isinstance(output, tuple) else output)
    for _ in range(repeats):
        for name, function in variants.items():
            start = time.perf_counter()
            output = function(source)
            np.asarray(output[0] if isinstance(output, tuple) else output)
            times[name].append(time.perf_counter() - start)
    return {name: 1000 * min(t) / NEW_TOKENS for name, t in times.items()}, outputs


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    model = ktl.build_transformer(
        VOCABULARY,
        VOCABULARY,
        num_layers=NUM_LAYERS,
        model_dim=MODEL_DIM,
        num_heads=NUM_HEADS,
        intermediate_dim=INTERMEDIATE_DIM,
        dropout=0.0,
    )
    settings = {"max_length": NEW_TOKENS, "end_id": None}
    cached = Generator(model, **settings)
    cached_jit = Generator(model, jit_compile=True, **settings)
    variants = {
        "cached, jit": lambda source: cached_jit.generate(source, seed=0),
        "cached": lambda source: cached.generate(source, seed=0),
        "recompute": recompute_function(model),
    }
    try:
        variants["keras-hub cached, jit"] = keras_hub_function(model, jit_compile=True)
        variants["keras-hub cached"] = keras_hub_function(model, jit_compile=False)
    except ImportError:
        print("keras-hub is not installed; skipping it.")

    rows = []
    for batch_size in args.batch_sizes:
        source = tf.constant(
            np.random.default_rng(0).integers(3, VOCABULARY, (batch_size, SOURCE_LEN)), tf.int32
        )
        results, outputs = milliseconds_per_step(variants, source, args.repeats)
        for name, output in outputs.items():  # same weights, same greedy tokens
            agree = np.mean(output == outputs["cached"])
            if agree < 1.0:
                print(f"note: {name} agrees with cached on {agree:.1%} of tokens")
        rows.append((batch_size, results))

    names = list(variants)
    print(f"\nms per decoding step, one new token per row (best of {args.repeats} runs)")
    print(
        "| batch | " + " | ".join(names) + " | recompute / cached jit | "
        "keras-hub best / cached jit |"
    )
    print("|---" * (len(names) + 3) + "|")
    for batch_size, results in rows:
        best_hub = min(
            (value for name, value in results.items() if name.startswith("keras-hub")),
            default=float("nan"),
        )
        print(
            f"| {batch_size} | "
            + " | ".join(f"{results[name]:.2f}" for name in names)
            + f" | {results['recompute'] / results['cached, jit']:.1f}x"
            + f" | {best_hub / results['cached, jit']:.2f}x |"
        )


if __name__ == "__main__":
    main()
