"""Batched greedy decoding for the examples, on `keras_transformer_layers.decoding`.

A thin adapter that keeps the examples' output format (`[START]` first,
trimmed to the longest row) over the cached, compiled `TranslationGenerator`.
"""

import numpy as np

from keras_transformer_layers.data import END_ID
from keras_transformer_layers.data import PADDING_ID
from keras_transformer_layers.data import START_ID
from keras_transformer_layers.decoding import TranslationGenerator


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
    generator = TranslationGenerator(
        model,
        max_length=max_length - 1,
        start_id=START_ID,
        end_id=END_ID,
        pad_id=PADDING_ID,
    )
    source_ids = np.asarray(source_ids, "int32")
    generated = np.concatenate(
        [
            generator.generate(source_ids[begin : begin + batch_size])
            for begin in range(0, len(source_ids), batch_size)
        ],
        axis=0,
    )
    used = np.flatnonzero((generated != PADDING_ID).any(axis=0))
    width = used[-1] + 1 if len(used) else 0
    start = np.full((len(source_ids), 1), START_ID, "int32")
    return np.concatenate([start, generated[:, :width]], axis=1)
