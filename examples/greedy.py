"""Batched greedy decoding for the examples.

A plain stand-in that re-runs the whole model once per output token (no KV
cache). Use `keras_transformer_layers.decoding` instead once it is available;
this file only keeps the examples independent of it.
"""

import numpy as np

from keras_transformer_layers.data import END_ID
from keras_transformer_layers.data import PADDING_ID
from keras_transformer_layers.data import START_ID


def greedy_translate(model, source_ids, max_length, batch_size=256):
    """Greedy decoding with a model from `build_transformer`.

    Args:
        model: the functional model (inputs `encoder_inputs`, `decoder_inputs`).
        source_ids: int array `(num_sentences, source_len)`, padded with 0.
        max_length: int, the longest output, `[START]` and `[END]` included.
        batch_size: int, sentences decoded together.

    Returns:
        int array `(num_sentences, <= max_length)`: `[START]`, the tokens,
        `[END]`, then padding.
    """
    source_ids = np.asarray(source_ids, "int32")
    outputs = []
    for begin in range(0, len(source_ids), batch_size):
        source = source_ids[begin : begin + batch_size]
        target = np.full((len(source), 1), START_ID, "int32")
        done = np.zeros(len(source), bool)
        for _ in range(max_length - 1):
            logits = model(
                {"encoder_inputs": source, "decoder_inputs": target}, training=False
            )
            next_ids = np.asarray(logits[:, -1, :]).argmax(-1).astype("int32")
            next_ids[done] = PADDING_ID
            target = np.concatenate([target, next_ids[:, None]], axis=1)
            done |= next_ids == END_ID
            if done.all():
                break
        outputs.append(target)
    width = max(o.shape[1] for o in outputs)
    return np.concatenate(
        [np.pad(o, ((0, 0), (0, width - o.shape[1]))) for o in outputs], axis=0
    )
