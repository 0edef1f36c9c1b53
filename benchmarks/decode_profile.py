"""Where a cached decoding step spends its time, part by part (TensorFlow).

Usage: `KERAS_BACKEND=tensorflow python benchmarks/decode_profile.py [--batch-size 1]`

The benchmark model of `benchmarks/decode.py` (2 + 2 layers, model_dim 256,
8 heads, intermediate 1024, vocabulary 8000, source 32, 64 new tokens). Each
part of a step runs alone, 64 times in one compiled `while_loop` (with and
without XLA), on the shapes a real step gives it; its output feeds the next
iteration so that nothing is hoisted out of the loop. The parts are timed
round-robin and the best of `--repeats` runs is kept. Parts timed alone lose
the fusion across their borders, so their sum is not exactly the step: the
whole-step rows are the reference. The encoder row is per call (once per
`generate`); divide it by 64 for its share of a generated token.
"""

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

# The model and sizes of benchmarks/decode.py (this script runs from benchmarks/).
from decode import MODEL_DIM  # noqa: E402
from decode import NEW_TOKENS  # noqa: E402
from decode import NUM_HEADS  # noqa: E402
from decode import SOURCE_LEN  # noqa: E402
from decode import VOCABULARY  # noqa: E402
from decode import build_model  # noqa: E402

from keras_transformer_layers.generation import Generator  # noqa: E402
from keras_transformer_layers.layers import masks  # noqa: E402


def _loop(part, carry, jit_compile):
    """`part(step, carry) -> carry`, run NEW_TOKENS times in one compiled loop."""

    @tf.function(jit_compile=jit_compile)
    def run(carry):
        return tf.while_loop(
            lambda step, *_: step < NEW_TOKENS,
            lambda step, *carry: (step + 1, *part(step, *carry)),
            (tf.constant(0), *carry),
        )[1:]

    return lambda: run(carry)


def _feed(x, output):
    """`x` made to depend on `output` (a tiny reduction), so the part is not hoisted."""
    return (x + 1e-9 * tf.reduce_mean(output),)


def parts(model, batch_size):
    """`{name: (part, carry)}` for each part of a cached step."""
    rng = np.random.default_rng(0)
    source = tf.constant(rng.integers(3, VOCABULARY, (batch_size, SOURCE_LEN)), tf.int32)
    state = model.call_encoder(source)
    cache = model.initial_cache(batch_size, NEW_TOKENS)
    token = tf.fill((batch_size, 1), 5)
    x = tf.constant(rng.normal(size=(batch_size, 1, MODEL_DIM)), tf.float32)
    decoder = model.decoder
    block = decoder.blocks[0]
    self_attention, cross_attention = block.self_attention, block.cross_attention
    block_cache = cache[0]  # (batch, 2, max_length, heads, key_dim)
    cross_cache = state["cross_attention_cache"][0]
    source_mask = state["source_mask"]
    token_mask = tf.ones((batch_size, 1), tf.bool)
    embedding = model.decoder_embedding

    def step(step, token, cache):
        logits, cache = model.call_decoder_with_cache(token, step, cache, state)
        return tf.argmax(logits[:, -1], axis=-1, output_type=tf.int32)[:, None] + 0 * token, cache

    def decoder_stack(step, x, cache):
        y, cache = decoder(
            x,
            None,
            decoder_inputs_mask=token_mask,
            encoder_outputs_mask=source_mask,
            self_attention_cache=cache,
            self_attention_cache_update_index=step,
            cross_attention_cache=state["cross_attention_cache"],
        )
        return y, cache

    def self_attention_part(step, x, cache):
        y, cache = self_attention(
            x,
            x,
            query_mask=token_mask,
            value_mask=token_mask,
            use_causal_mask=True,
            cache=cache,
            cache_update_index=step,
        )
        return y, cache

    def projections(step, x):
        q = self_attention.query_dense(x)
        k = self_attention.key_dense(x)
        v = self_attention.value_dense(x)
        return _feed(x, q + k + v)

    def cache_update(step, x, cache):
        new = tf.stack([x, x], axis=1)  # (batch, 2, 1, heads, key_dim)
        return x, keras.ops.slice_update(cache, (0, 0, step, 0, 0), new)

    def fused_projections(step, x):
        dense = (self_attention.query_dense, self_attention.key_dense, self_attention.value_dense)
        kernel = tf.concat([tf.reshape(d.kernel, (MODEL_DIM, -1)) for d in dense], axis=1)
        bias = tf.concat([tf.reshape(d.bias, (-1,)) for d in dense], axis=0)
        return _feed(x, tf.matmul(tf.reshape(x, (-1, MODEL_DIM)), kernel) + bias)

    def core(step, q, cache):
        # Equation (1) on the projected query and the cache, in the layer's
        # matrix-product path (a TensorFlow step uses decode_step's one-query form).
        mask = tf.range(NEW_TOKENS)[None, None, None, :] <= step  # (1, 1, 1, max_length)
        out, _ = self_attention._compute_attention(q, cache[:, 0], cache[:, 1], mask)
        return q + 1e-9 * out, cache

    def mask_work(step, x):
        # What a cached self-attention step builds: the padding mask of the new
        # key placed in the cache, merged with the query's and the causal mask.
        key_mask = keras.ops.slice_update(
            tf.ones((batch_size, NEW_TOKENS), tf.bool), (0, step), token_mask
        )
        mask = masks.merge_masks(
            masks.attention_mask_from_padding(token_mask, key_mask),
            masks.causal_mask(1, NEW_TOKENS, step),
        )
        return (x + 1e-9 * tf.reduce_mean(tf.cast(mask, tf.float32)),)

    def cross_attention_part(step, x):
        return (
            cross_attention(
                x, None, query_mask=token_mask, value_mask=source_mask, cache=cross_cache
            )[0],
        )

    def feed_forward(step, x):
        return (block.feed_forward(x),)

    def add_norm(step, x):
        return (block.self_attention_add_norm(x, x),)

    def logits(step, x):
        return _feed(x, model.logits_layer(x))

    def embed(step, token):
        return (
            token + tf.cast(1e-9 * tf.reduce_mean(embedding(token, start_index=step)), tf.int32),
        )

    def encoder(step, source):
        encoded = model.call_encoder(source)["cross_attention_cache"]
        return (source + tf.cast(1e-9 * tf.reduce_mean(encoded), tf.int32),)

    keys = tf.reshape(x, (batch_size, 1, NUM_HEADS, MODEL_DIM // NUM_HEADS))
    return {
        "embedding": (embed, (token,)),
        "q/k/v as 3 EinsumDense calls (1 block)": (projections, (x,)),
        "q/k/v as 1 matrix product (1 block)": (fused_projections, (x,)),
        "cache write (1 block)": (cache_update, (keys, block_cache)),
        "attention core over cache (1 block)": (core, (keys, block_cache)),
        "mask work (1 block)": (mask_work, (x,)),
        "self-attention layer (1 block)": (self_attention_part, (x, block_cache)),
        "cross-attention layer (1 block)": (cross_attention_part, (x,)),
        "feed-forward (1 block)": (feed_forward, (x,)),
        "Add & Norm (1 of 3 per block)": (add_norm, (x,)),
        "logits": (logits, (x,)),
        "decoder stack (2 blocks)": (decoder_stack, (x, cache)),
        "whole step (call_decoder_with_cache + arg-max)": (step, (token, cache)),
        "encoder + cross-attention keys/values (once per call)": (encoder, (source,)),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=1)
    args = parser.parse_args()
    model = build_model()
    source = tf.constant(
        np.random.default_rng(0).integers(3, VOCABULARY, (args.batch_size, SOURCE_LEN)), tf.int32
    )
    runs = {}
    for jit_compile in (True, False):
        for name, (part, carry) in parts(model, args.batch_size).items():
            runs[name, jit_compile] = _loop(part, carry, jit_compile)
        generator = Generator(
            model, max_new_tokens=NEW_TOKENS, end_id=None, jit_compile=jit_compile
        )
        runs["Generator.generate per token (encoder and loop included)", jit_compile] = (
            lambda generator=generator: generator.generate(source, seed=0)
        )
    times = {key: [] for key in runs}
    for run in runs.values():
        run()  # trace, compile, warm up
    for _ in range(args.repeats):
        for key, run in runs.items():
            start = time.perf_counter()
            np.asarray(tf.nest.flatten(run())[0])
            times[key].append(time.perf_counter() - start)
    print(f"\nus per step, batch {args.batch_size}, best of {args.repeats} runs of 64 steps")
    print("| part | XLA | no XLA |")
    print("|---|---|---|")
    names = dict.fromkeys(name for name, _ in runs)
    for name in names:
        xla, plain = (1e6 * min(times[name, jit]) / NEW_TOKENS for jit in (True, False))
        print(f"| {name} | {xla:.0f} | {plain:.0f} |")


if __name__ == "__main__":
    main()
