"""A small reversal model trained once per session, and independent references.

The references call the Keras model on whole prefixes (no cache), one Python
step at a time, so they share nothing with the decoding loop under test.
"""

import functools

import keras
import numpy as np
import pytest

import keras_transformer_layers as ktl
from keras_transformer_layers.data import reversal
from keras_transformer_layers.data.tokenizer import END_ID, START_ID

VOCABULARY_SIZE = 16
MAX_SOURCE_LENGTH = 8


@pytest.fixture(scope="session")
def trained_model():
    """Two layers, d=32, trained 200 steps on reversal: right on most rows, not all."""
    return _train_once()


# Each test module that imports the fixture gets its own copy of it; the
# cache makes them share one training run.
@functools.lru_cache(maxsize=1)
def _train_once():
    keras.utils.set_random_seed(0)
    model = ktl.build_transformer(
        VOCABULARY_SIZE,
        VOCABULARY_SIZE,
        num_layers=2,
        model_dim=32,
        num_heads=2,
        intermediate_dim=64,
        dropout=0.0,
    )
    model.compile(
        keras.optimizers.Adam(3e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    dataset = reversal.reversal_dataset(
        6400, batch_size=64, vocabulary_size=VOCABULARY_SIZE, max_length=MAX_SOURCE_LENGTH
    )
    model.fit(dataset, epochs=2, verbose=0)
    return model


def sources(batch_size, seed=123):
    """Padded reversal sources of mixed lengths (3 to 8 tokens)."""
    inputs, _ = reversal.reversal_arrays(
        batch_size,
        vocabulary_size=VOCABULARY_SIZE,
        min_length=3,
        max_length=MAX_SOURCE_LENGTH,
        seed=seed,
    )
    return inputs["encoder_inputs"]


def logits_of(model, source, decoder_inputs):
    return np.asarray(
        model({"encoder_inputs": source, "decoder_inputs": np.asarray(decoder_inputs, "int32")}),
        "float64",
    )


def log_softmax(logits):
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def recompute_greedy(model, source, max_length, start_id=START_ID, end_id=END_ID, pad_id=0):
    """Greedy decoding the slow way: the full model on the whole prefix per step."""
    batch = source.shape[0]
    decoder_inputs = np.full((batch, 1), start_id, "int32")
    finished = np.zeros(batch, bool)
    for _ in range(max_length):
        next_token = logits_of(model, source, decoder_inputs)[:, -1].argmax(-1)
        next_token = np.where(finished, pad_id, next_token).astype("int32")
        finished |= next_token == end_id
        decoder_inputs = np.concatenate([decoder_inputs, next_token[:, None]], axis=1)
        if finished.all():
            break
    output = np.full((batch, max_length), pad_id, "int32")
    output[:, : decoder_inputs.shape[1] - 1] = decoder_inputs[:, 1:]
    return output


def sequence_log_prob(model, source, token_ids, start_id=START_ID, pad_id=0):
    """Teacher-forced total log-probability of each row's non-padding tokens."""
    decoder_inputs = np.concatenate(
        [np.full((len(token_ids), 1), start_id, "int32"), token_ids[:, :-1]], axis=1
    )
    log_probs = log_softmax(logits_of(model, source, decoder_inputs))
    chosen = np.take_along_axis(log_probs, token_ids[..., None], axis=-1)[..., 0]
    return np.where(token_ids != pad_id, chosen, 0.0).sum(-1)
