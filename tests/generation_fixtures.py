"""Models for the generation tests, and independent full-recompute references.

The references call the full Keras model on whole prefixes (no cache), one
Python step at a time, in NumPy, so they share nothing with the decoding
loop under test but the model. The sampling reference computes everything
in NumPy too: exclusion, temperature, top-k, top-p, and the draw, with
`numpy_random_bits`, an int64 NumPy transcription of the documented
counter hash (`generation.counter_random`), and the Gumbel-max trick.

Backend-neutral: no TensorFlow import.
"""

import functools
import pathlib

import keras
import numpy as np
import pytest
from keras import ops

import keras_transformer_layers as ktl
from keras_transformer_layers.generation import strategies
from keras_transformer_layers.models import CachedDecoding
from keras_transformer_layers.tokens import END_ID
from keras_transformer_layers.tokens import START_ID
from tests import example_modules

VOCABULARY_SIZE = 16
MAX_SOURCE_LENGTH = 8
TRAINED_MODEL_PATH = pathlib.Path(__file__).parent / "fixtures" / "reversal_trained.keras"

reversal_task = example_modules.load("reversal_task")


def interface_of(model):
    """`model` if it has the decoding interface, else `CachedDecoding` over its named layers."""
    if hasattr(model, "decoding_spec"):
        return model
    return CachedDecoding(
        encoder_embedding=model.get_layer("encoder_embedding"),
        encoder=model.get_layer("encoder"),
        decoder_embedding=model.get_layer("decoder_embedding"),
        decoder=model.get_layer("decoder"),
        logits=model.get_layer("logits"),
    )


def reversal_arrays(num_examples, seed):
    """Sources (ids 4-15, 3 to 8 tokens, padded with 0), decoder inputs and targets."""
    inputs, target = reversal_task.reversal_arrays(
        num_examples, VOCABULARY_SIZE, max_length=MAX_SOURCE_LENGTH, seed=seed
    )
    return inputs["encoder_inputs"], inputs["decoder_inputs"], target


def train_reversal_model(num_layers, num_examples, epochs, learning_rate, verbose=0):
    """A `d_model=32` model trained on reversal, returned uncompiled (weights only).

    The trainer of the stored fixtures (`tests/fixtures/make_*_fixture.py`):
    Adam at `learning_rate`, batches of 64, seed 0. The returned model is a
    fresh copy holding the trained weights, so a saved file carries no
    optimizer state (twice the weights again).
    """

    def build():
        return ktl.build_transformer(
            VOCABULARY_SIZE,
            VOCABULARY_SIZE,
            num_layers=num_layers,
            model_dim=32,
            num_heads=2,
            intermediate_dim=64,
            dropout=0.0,
        )

    keras.utils.set_random_seed(0)
    model = build()
    model.compile(
        keras.optimizers.Adam(learning_rate),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    source, decoder_inputs, target = reversal_arrays(num_examples, seed=0)
    model.fit(
        {"encoder_inputs": source, "decoder_inputs": decoder_inputs},
        target,
        batch_size=64,
        epochs=epochs,
        verbose=verbose,
    )
    stored = build()
    stored.set_weights(model.get_weights())
    return stored


@pytest.fixture(scope="session")
def trained_model():
    """Two layers, d=32, trained 200 steps on reversal: right on most rows, not all.

    Loaded from `tests/fixtures/reversal_trained.keras`, which
    `tests/fixtures/make_reversal_fixture.py` trains and writes.
    """
    return _load_trained()


@functools.lru_cache(maxsize=1)
def _load_trained():
    return keras.models.load_model(TRAINED_MODEL_PATH)


def sources(batch_size, seed=123):
    """Padded reversal sources of mixed lengths (3 to 8 tokens)."""
    return reversal_arrays(batch_size, seed)[0]


def small_model(
    vocabulary_size=12,
    favoured=(0, START_ID),
    bias=8.0,
    table=None,
    mask_zero=True,
    seed=0,
    decoder_only=False,
):
    """An untrained one-layer model from the layers, its output bias favouring `favoured`.

    `table`: length of learned position tables in the embeddings (default
    sinusoids). Returns `(model, interface)`: the functional model (inputs
    `{"encoder_inputs", "decoder_inputs"}`, or the token ids alone when
    `decoder_only`) and its `CachedDecoding`.
    """
    keras.utils.set_random_seed(seed)
    embedding = {
        "mask_zero": mask_zero,
        "learned_positions": table is not None,
        "sequence_length": table,
        "embeddings_initializer": "normal",
    }
    target_ids = keras.Input((None,), dtype="int32", name="decoder_inputs")
    decoder_embedding = ktl.PositionalEmbedding(vocabulary_size, 16, **embedding)
    decoder = ktl.TransformerDecoder(1, 2, 32)
    dense = keras.layers.Dense(vocabulary_size)
    if decoder_only:
        logits = dense(decoder(decoder_embedding(target_ids)))
        model = keras.Model(target_ids, logits)
        layers = {}
    else:
        source_ids = keras.Input((None,), dtype="int32", name="encoder_inputs")
        encoder_embedding = ktl.PositionalEmbedding(vocabulary_size, 16, **embedding)
        encoder = ktl.TransformerEncoder(1, 2, 32)
        memory = encoder(encoder_embedding(source_ids))
        logits = dense(decoder(decoder_embedding(target_ids), memory))
        model = keras.Model({"encoder_inputs": source_ids, "decoder_inputs": target_ids}, logits)
        layers = {"encoder_embedding": encoder_embedding, "encoder": encoder}
    output_bias = np.zeros(vocabulary_size, "float32")
    output_bias[list(favoured)] = bias
    dense.bias.assign(output_bias)
    interface = CachedDecoding(
        decoder_embedding=decoder_embedding, decoder=decoder, logits=dense, **layers
    )
    return model, interface


# ---------------------------------------------------------------- full model


def full_logits(model, source, decoder_inputs):
    """The full model's float64 logits; `source=None` for a decoder-only model.

    On JAX the model runs through `predict_on_batch`, compiled once per input
    shape: called eagerly, JAX compiles each of its operations separately for
    every new shape, which took most of the time of the generation tests there.
    """
    decoder_inputs = np.asarray(decoder_inputs, "int32")
    if source is None:
        inputs = decoder_inputs
    else:
        inputs = {"encoder_inputs": np.asarray(source, "int32"), "decoder_inputs": decoder_inputs}
    if keras.config.backend() == "jax":
        return np.asarray(model.predict_on_batch(inputs), "float64")
    return ops.convert_to_numpy(model(inputs)).astype("float64")


def log_softmax(logits):
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def _start(source, prompts, max_length, start_id, pad_id):
    """The initial token buffer of `max_length` positions and the prompt lengths.

    As the generator defines them: the start token (encoder-decoder) or the
    prompt (decoder-only) first, then room for the generated tokens.
    """
    if source is not None:
        tokens = np.full((len(source), max_length), pad_id, "int32")
        tokens[:, 0] = start_id
        return tokens, np.ones(len(source), int)
    prompts = np.asarray(prompts, "int32")
    tokens = np.full((len(prompts), max_length), pad_id, "int32")
    tokens[:, : prompts.shape[1]] = prompts
    return tokens, (prompts != pad_id).sum(1)


def _output(tokens, source):
    return tokens[:, 1:] if source is not None else tokens


def _recompute(model, source, prompts, max_length, choose, start_id, end_id, pad_id):
    """The full model on the whole prefix per step; `choose(logits, step)` picks the tokens.

    Step `t` reads the full model's logits at position `t` and picks
    position `t + 1`, unless a row's prompt has a token there. The model
    runs on the whole fixed-width buffer but its last position every step (the causal mask hides
    the positions after `t`), so JAX compiles its ops for one shape only.
    Returns the tokens and the summed log-probabilities of the chosen (not
    prompt) tokens.
    """
    tokens, prompt_lengths = _start(source, prompts, max_length, start_id, pad_id)
    batch, length = tokens.shape
    finished = np.zeros(batch, bool)
    scores = np.zeros(batch)
    for step in range(length - 1):
        if finished.all():
            break
        logits = full_logits(model, source, tokens[:, :-1])[:, step]  # the last is never fed
        log_probs = log_softmax(logits)
        allowed = logits.copy()
        allowed[:, [pad_id, start_id]] = -np.inf
        forced = step + 1 < prompt_lengths
        chosen = np.where(finished, pad_id, choose(allowed, step))
        next_token = np.where(forced, tokens[:, step + 1], chosen).astype("int32")
        counted = ~forced & ~finished
        scores += np.where(counted, log_probs[np.arange(batch), next_token], 0.0)
        finished |= counted & (next_token == end_id)
        tokens[:, step + 1] = next_token
    return _output(tokens, source), scores


def recompute_greedy(
    model, max_length, source=None, prompts=None, start_id=START_ID, end_id=END_ID, pad_id=0
):
    """Greedy decoding the slow way; never picks the padding or the start id.

    Give `source` (encoder-decoder) or `prompts` (decoder-only). Returns
    `(token_ids, scores)`.
    """
    return _recompute(
        model,
        source,
        prompts,
        max_length,
        lambda logits, step: logits.argmax(-1),
        start_id,
        end_id,
        pad_id,
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
    model,
    max_length,
    seed,
    source=None,
    prompts=None,
    temperature=1.0,
    top_k=None,
    top_p=None,
    start_id=START_ID,
    end_id=END_ID,
    pad_id=0,
):
    """Sampling the slow way: full-model logits, filtered and drawn in NumPy, per step.

    The draw is the Gumbel-max trick with the noise of the documented
    counter hash (`numpy_random_bits`); -inf becomes -1e9 as in the
    generator.
    """

    def choose(logits, step):
        logits = sampling_logits(logits - logits.max(-1, keepdims=True), temperature, top_k, top_p)
        logits = np.maximum(logits, strategies.FORBIDDEN).astype("float32")
        return (logits + numpy_gumbel_noise(seed, step, *logits.shape)).argmax(-1)

    return _recompute(model, source, prompts, max_length, choose, start_id, end_id, pad_id)


# The counter hash of `generation.counter_random`, transcribed from its
# docstring in int64 NumPy: a Feistel network on two 15-bit halves.
HASH_HALF = 2**15
HASH_INITIAL_STATE = (0x3504, 0x5DB3)
# fmt: off
HASH_ROUND_KEYS = (
    0x1E37, 0x3C6E, 0x7F4A, 0x2B7E, 0x1516, 0x28AE, 0x5A82, 0x6ED9, 0x0F1B, 0x63A1, 0x4C2F,
    0x1D3B, 0x0B5D, 0x7A39, 0x36C7, 0x5F3E, 0x2A1F, 0x4E6B, 0x11D9, 0x6C05, 0x3B83,
)
# fmt: on


def numpy_random_bits(seed, step, rows, ids):
    """int64 bits in `[0, 2**30)` of `(seed, step, row, id)`, broadcast over rows and ids."""

    def digits(value, count):  # base 2**15, lowest first; Python's floor division
        value = np.asarray(value, np.int64)
        return [value // HASH_HALF**i % HASH_HALF for i in range(count)]

    words = digits(seed, 3) + digits(step, 2) + digits(rows, 2) + digits(ids, 2)
    keys = iter(HASH_ROUND_KEYS)
    left, right = HASH_INITIAL_STATE

    def feistel(left, right):
        mixed = (right + next(keys)) % HASH_HALF
        return right, (left + mixed * mixed // 2**7 % HASH_HALF) % HASH_HALF

    for word in words:
        left = (left + word) % HASH_HALF
        left, right = feistel(*feistel(left, right))
    for _ in range(3):
        left, right = feistel(left, right)
    return left * HASH_HALF + right


def numpy_gumbel_noise(seed, step, batch_size, vocabulary_size):
    """`-log(-log(u))`, `u = (2 * (bits // 2**7) + 1) / 2**24`, float32 `(batch, vocab)`."""
    bits = numpy_random_bits(
        seed, step, np.arange(batch_size)[:, None], np.arange(vocabulary_size)[None, :]
    )
    u = ((2 * (bits // 2**7) + 1) / 2**24).astype("float32")
    return -np.log(-np.log(u))


def recompute_beam(
    model,
    max_length,
    num_beams,
    alpha,
    source=None,
    prompts=None,
    start_id=START_ID,
    end_id=END_ID,
    pad_id=0,
):
    """Beam search the slow way: the full model on every beam's whole prefix per step.

    Beams branch only after the prompt; finished beams continue with padding
    at no cost; the final beams are ranked by `log_prob / ((5 + length) / 6)
    ** alpha`. Returns the tokens and the normalized scores.
    """
    tokens, prompt_lengths = _start(source, prompts, max_length, start_id, pad_id)
    batch, length = tokens.shape
    beams = num_beams
    beams_source = None if source is None else np.repeat(source, beams, axis=0)
    prefixes = np.repeat(tokens[:, None], beams, axis=1)  # (batch, beams, length)
    beam_log_probs = np.tile([0.0] + [-1e9] * (beams - 1), (batch, 1))
    finished = np.zeros((batch, beams), bool)
    lengths = np.zeros((batch, beams), int)
    for step in range(length - 1):
        if finished.all():
            break
        forced = step + 1 < prompt_lengths  # (batch,)
        fed = prefixes.reshape(batch * beams, -1)[:, :-1]  # the last position is never fed
        logits = full_logits(model, beams_source, fed)[:, step]
        log_probs = log_softmax(logits).reshape(batch, beams, -1)
        vocabulary_size = log_probs.shape[-1]
        log_probs[..., [pad_id, start_id]] = -1e9
        log_probs[finished] = -1e9
        log_probs[finished, pad_id] = 0.0
        candidates = (beam_log_probs[..., None] + log_probs).reshape(batch, -1)
        best = np.argsort(-candidates, axis=-1, kind="stable")[:, :beams]
        parent, token = best // vocabulary_size, best % vocabulary_size
        parent[forced] = np.arange(beams)
        new_log_probs = np.take_along_axis(candidates, best, axis=1)
        new_log_probs[forced] = beam_log_probs[forced]
        prefixes = np.take_along_axis(prefixes, parent[..., None], axis=1)
        token[forced] = prefixes[forced][:, :, step + 1]
        prefixes[:, :, step + 1] = token
        was_finished = np.take_along_axis(finished, parent, axis=1)
        counted = ~was_finished & ~forced[:, None]
        lengths = np.take_along_axis(lengths, parent, axis=1) + counted
        finished = was_finished | (counted & (token == end_id))
        beam_log_probs = new_log_probs
    normalized = beam_log_probs / ((5.0 + lengths) / 6.0) ** alpha
    best_beam = normalized.argmax(-1)
    best_prefixes = prefixes[np.arange(batch), best_beam]
    return _output(best_prefixes, source), normalized[np.arange(batch), best_beam]


def sequence_log_prob(model, token_ids, source=None, prompts=None, start_id=START_ID, pad_id=0):
    """Teacher-forced total log-probability of each row's generated (non-padding) tokens.

    Encoder-decoder: `token_ids` are the generated ids (no start token).
    Decoder-only: the whole sequences; the prompt's tokens do not count.
    """
    token_ids = np.asarray(token_ids, "int32")
    if source is not None:
        sequences = np.concatenate(
            [np.full((len(token_ids), 1), start_id, "int32"), token_ids], axis=1
        )
        counted = np.ones(token_ids.shape, bool)
    else:
        sequences = token_ids
        prompt_lengths = (np.asarray(prompts) != pad_id).sum(1)
        counted = np.arange(1, token_ids.shape[1])[None, :] >= prompt_lengths[:, None]
    log_probs = log_softmax(full_logits(model, source, sequences[:, :-1]))
    targets = sequences[:, 1:]
    chosen = np.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    return np.where(counted & (targets != pad_id), chosen, 0.0).sum(-1)


def cached_step_logits(interface, decoder_inputs, source=None):
    """The interface's cached logits after each prefix of `decoder_inputs`, step by step."""
    decoder_inputs = np.asarray(decoder_inputs, "int32")
    state = {} if source is None else interface.call_encoder(np.asarray(source, "int32"))
    cache = interface.initial_cache(len(decoder_inputs), decoder_inputs.shape[1])
    steps = []
    for index in range(decoder_inputs.shape[1]):
        logits, cache = interface.call_decoder_with_cache(
            decoder_inputs[:, index : index + 1],
            ops.convert_to_tensor(index, "int32"),
            cache,
            state,
        )
        steps.append(ops.convert_to_numpy(logits)[:, 0])
    return np.stack(steps, axis=1)  # (batch, steps, vocabulary)


def assert_no_special_ids_before_end(
    token_ids, pad_id=0, start_id=START_ID, end_id=END_ID, prompt_lengths=None
):
    """No padding or start id generated before a row's end token; only padding after it."""
    for row_index, row in enumerate(np.asarray(token_ids)):
        first = 0 if prompt_lengths is None else prompt_lengths[row_index]
        generated = row[first:]
        ends = np.flatnonzero(generated == end_id)
        stop = ends[0] if len(ends) else len(generated)
        assert not np.isin(generated[:stop], [pad_id, start_id]).any(), row
        assert np.all(generated[stop + 1 :] == pad_id), row


def live_positions(token_ids, end_id=END_ID):
    """True up to and including each row's first end token."""
    ends = token_ids == end_id
    return np.cumsum(ends, axis=1) - ends == 0
