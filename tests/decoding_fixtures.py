"""A small reversal model trained once per session, and independent references.

The references call the Keras model on whole prefixes (no cache), one Python
step at a time, so they share nothing with the decoding loop under test.
"""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

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


def _next_logits(model, source, decoder_inputs, start_id, pad_id):
    """Full-model logits of the next token, padding and start ids excluded (-inf)."""
    logits = logits_of(model, source, decoder_inputs)[:, -1]
    logits[:, [pad_id, start_id]] = -np.inf
    return logits


def _output(decoder_inputs, max_length, pad_id):
    output = np.full((len(decoder_inputs), max_length), pad_id, "int32")
    output[:, : decoder_inputs.shape[1] - 1] = decoder_inputs[:, 1:]
    return output


def _recompute(model, source, max_length, choose, start_id, end_id, pad_id):
    """The full model on the whole prefix per step; `choose(logits, step)` picks the tokens."""
    batch = source.shape[0]
    decoder_inputs = np.full((batch, 1), start_id, "int32")
    finished = np.zeros(batch, bool)
    for step in range(max_length):
        logits = _next_logits(model, source, decoder_inputs, start_id, pad_id)
        next_token = np.where(finished, pad_id, choose(logits, step)).astype("int32")
        finished |= next_token == end_id
        decoder_inputs = np.concatenate([decoder_inputs, next_token[:, None]], axis=1)
        if finished.all():
            break
    return _output(decoder_inputs, max_length, pad_id)


def recompute_greedy(model, source, max_length, start_id=START_ID, end_id=END_ID, pad_id=0):
    """Greedy decoding the slow way: the full model on the whole prefix per step.

    Like the generator it never picks the padding or the start id; `end_id`
    may be `None` (no end token).
    """
    return _recompute(
        model, source, max_length, lambda logits, step: logits.argmax(-1),
        start_id, end_id, pad_id,
    )


def sampling_logits(logits, temperature=1.0, top_k=None, top_p=None):
    """Logits `(..., vocabulary)` divided by `temperature`, -inf outside top-k / top-p."""
    logits = logits / temperature
    if top_k is not None:
        kth_largest = np.sort(logits, axis=-1)[..., -top_k, None]
        logits = np.where(logits < kth_largest, -np.inf, logits)
    if top_p is not None:
        descending = -np.sort(-logits, axis=-1)
        probabilities = np.exp(descending - descending[..., :1])
        probabilities /= probabilities.sum(-1, keepdims=True)
        mass_before = np.cumsum(probabilities, axis=-1) - probabilities
        smallest_kept = np.where(mass_before < top_p, descending, np.inf).min(-1)
        logits = np.where(logits < smallest_kept[..., None], -np.inf, logits)
    return logits


def recompute_sample(
    model, source, max_length, seed, temperature=1.0, top_k=None, top_p=None,
    start_id=START_ID, end_id=END_ID, pad_id=0,
):
    """Sampling the slow way: full-model logits, filtered in NumPy, per step.

    The draw itself is TensorFlow's stateless categorical with the
    generator's documented seed `(seed, step)`, so the same logits give the
    same token; everything before it is computed here, independently.
    """

    def choose(logits, step):
        logits = sampling_logits(logits, temperature, top_k, top_p)
        return tf.random.stateless_categorical(
            logits.astype("float32"), 1, seed=[seed, step], dtype=tf.int32
        ).numpy()[:, 0]

    return _recompute(model, source, max_length, choose, start_id, end_id, pad_id)


def recompute_beam(
    model, source, max_length, num_beams, alpha, start_id=START_ID, end_id=END_ID, pad_id=0
):
    """Beam search the slow way: the full model on every beam's whole prefix per step.

    Finished beams continue with padding at no cost; the final beams are
    ranked by `log_prob / ((5 + length) / 6) ** alpha`. Returns the tokens
    and the normalized scores.
    """
    batch, beams = len(source), num_beams
    beams_source = np.repeat(source, beams, axis=0)  # row b * beams + k
    prefixes = np.full((batch, beams, 1), start_id, "int32")
    beam_log_probs = np.tile([0.0] + [-1e9] * (beams - 1), (batch, 1))
    finished = np.zeros((batch, beams), bool)
    lengths = np.zeros((batch, beams), int)
    for _ in range(max_length):
        if finished.all():
            break
        logits = logits_of(model, beams_source, prefixes.reshape(batch * beams, -1))[:, -1]
        log_probs = log_softmax(logits).reshape(batch, beams, -1)
        vocabulary_size = log_probs.shape[-1]
        log_probs[..., [pad_id, start_id]] = -1e9
        log_probs[finished] = -1e9
        log_probs[finished, pad_id] = 0.0
        candidates = (beam_log_probs[..., None] + log_probs).reshape(batch, -1)
        best = np.argsort(-candidates, axis=-1, kind="stable")[:, :beams]
        parent, token = best // vocabulary_size, best % vocabulary_size
        prefixes = np.concatenate(
            [np.take_along_axis(prefixes, parent[..., None], axis=1), token[..., None]], axis=-1
        )
        was_finished = np.take_along_axis(finished, parent, axis=1)
        lengths = np.take_along_axis(lengths, parent, axis=1) + ~was_finished
        finished = was_finished | (token == end_id)
        beam_log_probs = np.take_along_axis(candidates, best, axis=1)
    normalized = beam_log_probs / ((5.0 + lengths) / 6.0) ** alpha
    best_beam = normalized.argmax(-1)
    best_prefixes = prefixes[np.arange(batch), best_beam]
    return _output(best_prefixes, max_length, pad_id), normalized[np.arange(batch), best_beam]


def cached_step_logits(generator, source, decoder_inputs):
    """The generator's cached logits after each prefix of `decoder_inputs`, step by step."""
    source_mask, cross_cache = generator.encode(np.asarray(source, "int32"))
    cache = generator.initial_cache(len(source))
    steps = []
    for index in range(decoder_inputs.shape[1]):
        logits, cache = generator.decode_step(
            np.asarray(decoder_inputs[:, index : index + 1], "int32"),
            index, cache, cross_cache, source_mask,
        )
        steps.append(np.asarray(logits))
    return np.stack(steps, axis=1)  # (batch, steps, vocabulary)


def small_model(
    vocabulary_size=12, favoured=(0, START_ID), bias=8.0, table=None, mask_zero=True, seed=0
):
    """An untrained one-layer model from the layers, its output bias favouring `favoured`.

    `table`: length of learned position tables in both embeddings (default
    sinusoids). The layer names are `DEFAULT_LAYER_NAMES`.
    """
    keras.utils.set_random_seed(seed)
    source_ids = keras.Input((None,), dtype="int32", name="encoder_inputs")
    target_ids = keras.Input((None,), dtype="int32", name="decoder_inputs")
    embedding = {
        "mask_zero": mask_zero,
        "learned_positions": table is not None,
        "sequence_length": table,
        "embeddings_initializer": "normal",
    }
    x = ktl.PositionalEmbedding(vocabulary_size, 16, name="encoder_embedding", **embedding)(
        source_ids
    )
    x = ktl.TransformerEncoder(1, 2, 32, name="encoder")(x)
    y = ktl.PositionalEmbedding(vocabulary_size, 16, name="decoder_embedding", **embedding)(
        target_ids
    )
    y = ktl.TransformerDecoder(1, 2, 32, name="decoder")(y, x)
    logits = keras.layers.Dense(vocabulary_size, name="logits")(y)
    model = keras.Model({"encoder_inputs": source_ids, "decoder_inputs": target_ids}, logits)
    output_bias = np.zeros(vocabulary_size, "float32")
    output_bias[list(favoured)] = bias
    model.get_layer("logits").bias.assign(output_bias)
    return model


def assert_no_special_ids_before_end(token_ids, pad_id=0, start_id=START_ID, end_id=END_ID):
    """No padding or start id before a row's end token; only padding after it."""
    for row in np.asarray(token_ids):
        ends = np.flatnonzero(row == end_id)
        stop = ends[0] if len(ends) else len(row)
        assert not np.isin(row[:stop], [pad_id, start_id]).any(), row
        assert np.all(row[stop + 1 :] == pad_id), row


def sequence_log_prob(model, source, token_ids, start_id=START_ID, pad_id=0):
    """Teacher-forced total log-probability of each row's non-padding tokens."""
    decoder_inputs = np.concatenate(
        [np.full((len(token_ids), 1), start_id, "int32"), token_ids[:, :-1]], axis=1
    )
    log_probs = log_softmax(logits_of(model, source, decoder_inputs))
    chosen = np.take_along_axis(log_probs, token_ids[..., None], axis=-1)[..., 0]
    return np.where(token_ids != pad_id, chosen, 0.0).sum(-1)
