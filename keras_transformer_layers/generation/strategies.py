"""Decoding strategies: greedy, beam search and sampling, in `keras.ops` only.

A strategy knows nothing about the model. `Generator` hands it a `next_fn`
that feeds one token per row at a position and returns the float32 logits of
the next position, plus the fixed-shape state the loop carries. Each
strategy runs one `ops.while_loop` over that state, so the same code runs
eagerly, in a `tf.function` (with or without XLA) and under `jax.jit`.

The token buffer starts with the prompt (the start token alone for an
encoder-decoder model); every step feeds the token at position `t` and
chooses the token at `t + 1`, unless the row's prompt still has a token
there: then that token is kept (forced), and its log-probability does not
count in the score.
"""

import keras
import numpy as np
from keras import ops

from keras_transformer_layers import _validation
from keras_transformer_layers.generation import counter_random

# Log-probability of forbidden continuations: finite, so sums never give NaN.
FORBIDDEN = -1e9


def length_penalty(length, alpha):
    """GNMT's length penalty `((5 + length) / 6) ** alpha` (Wu et al., 2016, eq. 14).

    Beam search ranks finished hypotheses by `log_prob / length_penalty`;
    `alpha = 0` ranks by plain log-probability, larger `alpha` favours longer
    sequences.

    Args:
        length: non-negative int or float, or a tensor, the number of
            generated tokens (the end token included).
        alpha: finite non-negative float.

    Returns:
        The penalty, a float or float32 tensor shaped like `length`.

    Raises:
        ValueError: if `alpha`, or a number `length`, is negative, NaN or
            infinite.

    Example:

    >>> keras_transformer_layers.generation.length_penalty(7, 1.0)
    2.0

    Reference:
        Wu et al., "Google's Neural Machine Translation System: Bridging the
        Gap between Human and Machine Translation", 2016, section 7.
    """
    _check_alpha("alpha", alpha)
    if isinstance(length, (int, float)):
        _validation.check_finite_number("length", length)
        if length < 0:
            raise ValueError(f"`length` must be non-negative. Received: length={length!r}")
        return ((5.0 + length) / 6.0) ** alpha
    return ops.power((5.0 + ops.cast(length, "float32")) / 6.0, alpha)


def _check_alpha(name, alpha):
    _validation.check_finite_number(name, alpha)
    if alpha < 0:
        raise ValueError(
            f"`{name}` must be a non-negative number (the GNMT alpha). Received: {name}={alpha!r}"
        )


def check_seed(seed):
    """An int32 seed (`[-2**31, 2**31)`), never wrapped."""
    _validation.check_int_in_range("seed", seed, -(2**31), 2**31, " (an int32)")


def argmax(x):
    """Arg-max over the last axis (the first index on ties), as two reductions.

    The TensorFlow backend's `ops.argmax` adds bitwise ops for signed zeros
    that TFLite has no builtin kernel for, and `top_k(x, 1)` sorts under XLA
    on CPU; a max and a min over the last axis are builtin and cheap.
    """
    size = ops.shape(x)[-1]
    is_max = ops.equal(x, ops.max(x, axis=-1, keepdims=True))
    positions = ops.where(is_max, ops.arange(size, dtype="int32"), size)
    return ops.min(positions, axis=-1)


def filter_logits(logits, top_k=None, top_p=None):
    """Keeps the `top_k` largest logits and the smallest set with mass >= `top_p`.

    The others become -1e9 (Holtzman et al., 2019, section 3.1, for `top_p`).

    Args:
        logits: float32 tensor `(batch, vocabulary_size)`.
        top_k: optional positive int, at most `vocabulary_size`.
        top_p: optional float in `(0, 1]`.

    Returns:
        A float32 tensor like `logits`.
    """
    if top_k is not None:
        kth_largest = ops.top_k(logits, top_k)[0][:, -1:]  # (batch, 1)
        logits = ops.where(logits < kth_largest, FORBIDDEN, logits)
    if top_p is not None:
        vocabulary_size = ops.shape(logits)[-1]
        sorted_logits = ops.top_k(logits, vocabulary_size)[0]  # (batch, vocab), descending
        probabilities = ops.softmax(sorted_logits, axis=-1)
        mass_before = ops.cumsum(probabilities, axis=-1) - probabilities
        # The most likely token is always kept (its mass_before is 0).
        kept = ops.where(mass_before < top_p, sorted_logits, np.inf)
        smallest_kept = ops.min(kept, axis=-1, keepdims=True)  # (batch, 1)
        logits = ops.where(logits < smallest_kept, FORBIDDEN, logits)
    return logits


def _column(tokens, index):
    """`tokens[:, index]` for a scalar tensor `index`."""
    return ops.take(tokens, ops.expand_dims(index, 0), axis=1)[:, 0]  # (batch,)


class Strategy:
    """Base class of the decoding strategies.

    A strategy is a small serializable object: its settings are checked in
    `__init__` and returned by `get_config`. Subclasses implement `search`.
    """

    seed = None  # the sampling seed `generate` uses when given none

    def check_generation_settings(self, max_new_tokens, vocabulary_size, num_emittable):
        """Checks the settings against a generator's (no-op by default).

        Args:
            max_new_tokens: int, the most tokens a row can generate (the
                generator's `max_new_tokens`, `max_length - 1`).
            vocabulary_size: int, the number of logits per step.
            num_emittable: int, the ids decoding can emit (the vocabulary
                without the padding and start ids).

        Raises:
            ValueError: if a setting cannot work with these.
        """

    def search(
        self, next_fn, tokens, prompt_lengths, cache, context, seed, *, end_id, pad_id, exclude
    ):
        """Runs the decoding loop.

        Args:
            next_fn: `next_fn(token_ids, index, cache, context)` -> `(logits,
                cache)`: feeds `token_ids` `(rows, 1)` at position `index`
                and returns the float32 logits `(rows, vocabulary_size)` of
                position `index + 1` and the updated cache.
            tokens: int32 `(batch, length)`, the prompts right-padded with
                `pad_id`.
            prompt_lengths: int32 `(batch,)`, at least 1.
            cache: the initial (zero) cache, a tensor or a nest of tensors,
                batch-major.
            context: a nest of batch-major tensors every step reads (the
                encoder state), not changed by the loop.
            seed: int32 scalar tensor, the sampling seed.
            end_id: int or `None`, the id that ends a row.
            pad_id: int, written after a row's end.
            exclude: function setting the logits of ids never emitted to
                -1e9.

        Returns:
            `(tokens, scores)`: int32 `(batch, length)`, float32 `(batch,)`.
        """
        raise NotImplementedError

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        settings = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({settings})"


class _TokenByToken(Strategy):
    """One token per row per step; subclasses implement `choose`."""

    def choose(self, logits, step, seed, exclude):
        """The next token `(batch,)` from float32 logits `(batch, vocabulary_size)`.

        `exclude(logits)` sets the ids never emitted to -1e9.
        """
        raise NotImplementedError

    def search(
        self, next_fn, tokens, prompt_lengths, cache, context, seed, *, end_id, pad_id, exclude
    ):
        length = tokens.shape[1]
        batch_size = ops.shape(tokens)[0]

        def body(step, tokens, cache, finished, scores):
            logits, cache = next_fn(ops.expand_dims(_column(tokens, step), 1), step, cache, context)
            log_probs = ops.log_softmax(logits, axis=-1)  # (batch, vocab)
            forced = step + 1 < prompt_lengths  # (batch,) the prompt has this token
            chosen = ops.where(finished, pad_id, self.choose(logits, step, seed, exclude))
            next_token = ops.where(forced, _column(tokens, step + 1), chosen)
            counted = ops.logical_not(ops.logical_or(forced, finished))
            token_log_prob = ops.take_along_axis(log_probs, next_token[:, None], axis=1)[:, 0]
            scores = scores + ops.where(counted, token_log_prob, 0.0)
            if end_id is not None:
                finished = ops.logical_or(
                    finished, ops.logical_and(counted, ops.equal(next_token, end_id))
                )
            # int32 like the buffer (PyTorch's `where` and `%` give int64).
            next_token = ops.cast(next_token, "int32")
            tokens = ops.slice_update(tokens, (0, step + 1), next_token[:, None])
            return step + 1, tokens, cache, finished, scores

        _, tokens, _, _, scores = ops.while_loop(
            lambda step, tokens, cache, finished, scores: _not_done(step, length, finished),
            body,
            (
                ops.convert_to_tensor(0, "int32"),
                tokens,
                cache,
                ops.zeros((batch_size,), "bool"),
                ops.zeros((batch_size,), "float32"),
            ),
            maximum_iterations=length - 1,
        )
        return tokens, scores


def _not_done(step, length, finished):
    return ops.logical_and(step < length - 1, ops.logical_not(ops.all(finished)))


@keras.saving.register_keras_serializable(package="keras_transformer_layers")
class Greedy(_TokenByToken):
    """Greedy decoding: the most likely allowed token at every step.

    Ties go to the smallest id. The padding and start ids are never chosen.

    Example:

    >>> keras_transformer_layers.generation.Greedy().get_config()
    {}

    Reference:
        Vaswani et al., "Attention Is All You Need", 2017, section 6.1.
    """

    def choose(self, logits, step, seed, exclude):
        return argmax(exclude(logits))


@keras.saving.register_keras_serializable(package="keras_transformer_layers")
class Sampling(_TokenByToken):
    """Samples each token from `softmax(logits / temperature)`, optionally filtered.

    The distribution can be restricted to the `top_k` most likely tokens
    and/or to the nucleus: the smallest set of tokens whose probability
    reaches `top_p` (Holtzman et al., 2019). The padding and start ids are
    never drawn.

    The draws are stateless and counter-based: row `r` at step `t` adds
    Gumbel noise made from a hash of `(seed, t, r, vocabulary id)` to the
    filtered logits and takes the arg-max, which is a draw from their
    softmax (see `generation.counter_random`). The hash is exact int32
    arithmetic that never overflows, so a given seed gives the same tokens
    on every call, on every backend (TensorFlow eager, graph and XLA,
    `jax.jit`, PyTorch) and in the SavedModel and TFLite exports, while
    every step and row draws differently. Rows are numbered within each
    `generate` batch.

    Args:
        temperature: finite float, at least the smallest normal float32
            (about `1.2e-38`); the logits are divided by it. Defaults to
            `1.0`.
        top_k: optional positive int, at most the vocabulary size. Defaults
            to `None` (no limit).
        top_p: optional float in `(0, 1]`. Defaults to `None` (no limit).
        seed: optional int32 (in `[-2**31, 2**31)`); `None` draws a new
            seed from NumPy's global generator on each `generate` call.
            Defaults to `None`.

    Raises:
        ValueError: for a setting of the wrong type, NaN, infinite or out of
            range.

    Example:

    >>> keras_transformer_layers.generation.Sampling(top_k=5, seed=1).get_config()
    {'temperature': 1.0, 'top_k': 5, 'top_p': None, 'seed': 1}

    Reference:
        Holtzman et al., "The Curious Case of Neural Text Degeneration",
        2019, section 3.1.
    """

    def __init__(self, temperature=1.0, top_k=None, top_p=None, seed=None):
        _validation.check_finite_number("temperature", temperature)
        _validation.check_positive_float("temperature", temperature)
        if temperature < np.finfo("float32").tiny:
            raise ValueError(
                "`temperature` must be at least the smallest normal float32 "
                f"({np.finfo('float32').tiny:.4g}): the logits are divided by it in "
                "float32, where a smaller one is flushed to 0. "
                f"Received: temperature={temperature!r}"
            )
        _validation.check_optional_positive_int("top_k", top_k)
        if top_p is not None and (
            isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1
        ):
            raise ValueError(f"`top_p` must be in the range (0, 1]. Received: top_p={top_p!r}")
        if seed is not None:
            check_seed(seed)
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p
        self.seed = seed

    def check_generation_settings(self, max_new_tokens, vocabulary_size, num_emittable):
        if self.top_k is not None and self.top_k > vocabulary_size:
            raise ValueError(
                f"`top_k` must be at most the vocabulary size ({vocabulary_size}). "
                f"Received: top_k={self.top_k!r}"
            )

    def choose(self, logits, step, seed, exclude):
        logits = exclude(logits)
        # Shifted so the best allowed logit is 0: a small temperature gives
        # -inf (probability 0), never inf - inf = NaN; the forbidden ids are
        # set to -1e9 again after the division, which a large temperature
        # would bring close to the others.
        logits = (logits - ops.max(logits, axis=-1, keepdims=True)) / self.temperature
        logits = filter_logits(exclude(logits), self.top_k, self.top_p)
        return draw(logits, seed, step)

    def get_config(self):
        return {
            "temperature": self.temperature,
            "top_k": self.top_k,
            "top_p": self.top_p,
            "seed": self.seed,
        }


def draw(logits, seed, step):
    """One token per row from `softmax(logits)`, reproducible from `(seed, step)`.

    The Gumbel-max trick with the counter-based noise of
    `counter_random.gumbel_noise`: `argmax(logits + noise)`, the same
    integers on every backend and export.

    Args:
        logits: float32 `(batch, vocabulary_size)`.
        seed: int32 scalar (tensor).
        step: int32 scalar (tensor), non-negative.

    Returns:
        int32 `(batch,)`.
    """
    logits = ops.convert_to_tensor(logits, "float32")
    batch_size, vocabulary_size = ops.shape(logits)[0], ops.shape(logits)[1]
    noise = counter_random.gumbel_noise(seed, step, batch_size, vocabulary_size)
    return argmax(logits + noise)


@keras.saving.register_keras_serializable(package="keras_transformer_layers")
class BeamSearch(Strategy):
    """Beam search with GNMT's length penalty.

    Keeps the `num_beams` most likely prefixes of every row. A finished beam
    (one that emitted the end id) is carried along unchanged, continuing
    with padding at no cost; at the end the best beam is chosen by
    `log_prob / length_penalty(length, length_penalty)` (Wu et al., 2016,
    section 7). Beams only branch after the prompt: the prompt's tokens are
    forced in every beam. The padding and start ids are never chosen.

    Args:
        num_beams: int >= 1, the beam width; at most the number of ids
            decoding can emit. Defaults to `4`.
        length_penalty: finite non-negative float, the GNMT `alpha`, small
            enough that `((5 + max_new_tokens) / 6) ** alpha` is finite in
            float32. Defaults to `0.6`.

    Raises:
        ValueError: for a setting of the wrong type, NaN, infinite or out of
            range.

    Example:

    >>> keras_transformer_layers.generation.BeamSearch(num_beams=3).get_config()
    {'num_beams': 3, 'length_penalty': 0.6}

    Reference:
        Wu et al., "Google's Neural Machine Translation System", 2016,
        section 7; Vaswani et al., "Attention Is All You Need", 2017,
        section 6.1.
    """

    def __init__(self, num_beams=4, length_penalty=0.6):
        if isinstance(num_beams, bool) or not isinstance(num_beams, int) or num_beams < 1:
            raise ValueError(
                f"`num_beams` must be an integer >= 1. Received: num_beams={num_beams!r}"
            )
        _check_alpha("length_penalty", length_penalty)
        self.num_beams = num_beams
        self.length_penalty = length_penalty

    def check_generation_settings(self, max_new_tokens, vocabulary_size, num_emittable):
        try:
            penalty = ((5.0 + max_new_tokens) / 6.0) ** self.length_penalty
        except OverflowError:
            penalty = np.inf
        if penalty > np.finfo("float32").max:
            raise ValueError(
                "`length_penalty` is too large: the penalty ((5 + length) / 6) ** "
                "length_penalty must stay finite in float32 up to `max_new_tokens` "
                "generated tokens, or every score becomes 0. Received: "
                f"length_penalty={self.length_penalty!r}, max_new_tokens={max_new_tokens!r}"
            )
        if self.num_beams > num_emittable:
            raise ValueError(
                f"`num_beams` must be at most the number of ids decoding can emit "
                f"({num_emittable}: the vocabulary without `pad_id` and `start_id`). "
                f"Received: num_beams={self.num_beams!r}"
            )

    def search(
        self, next_fn, tokens, prompt_lengths, cache, context, seed, *, end_id, pad_id, exclude
    ):
        beams = self.num_beams
        length = tokens.shape[1]
        batch_size = ops.shape(tokens)[0]
        rows = batch_size * beams  # row b * beams + k is beam k of example b

        def repeat(x):
            return ops.repeat(x, beams, axis=0)  # (rows, ...)

        tokens = repeat(tokens)
        prompt_lengths = repeat(prompt_lengths)
        cache = keras.tree.map_structure(repeat, cache)
        context = keras.tree.map_structure(repeat, context)
        # Only beam 0 is live at first, so the first branching picks distinct tokens.
        initial_log_probs = ops.tile(
            ops.convert_to_tensor([[0.0] + [FORBIDDEN] * (beams - 1)], "float32"),
            (batch_size, 1),
        )  # (batch, beams)
        own_beam = ops.arange(beams, dtype="int32")[None, :]  # (1, beams)

        def body(step, tokens, cache, finished, lengths, beam_log_probs):
            logits, cache = next_fn(ops.expand_dims(_column(tokens, step), 1), step, cache, context)
            log_probs = ops.log_softmax(logits, axis=-1)  # (rows, vocab)
            vocabulary_size = ops.shape(log_probs)[-1]
            # A finished beam continues with padding at no cost.
            pad_only = ops.where(ops.arange(vocabulary_size) == pad_id, 0.0, FORBIDDEN)  # (vocab,)
            log_probs = ops.where(finished[:, None], pad_only[None, :], exclude(log_probs))
            candidates = ops.reshape(beam_log_probs, (batch_size, beams, 1)) + ops.reshape(
                log_probs, (batch_size, beams, vocabulary_size)
            )  # (batch, beams, vocab)
            best_log_probs, best = ops.top_k(
                ops.reshape(candidates, (batch_size, beams * vocabulary_size)), beams
            )  # (batch, beams)
            # Examples still in their prompt do not branch: each beam keeps
            # itself and takes the prompt token.
            forced_rows = step + 1 < prompt_lengths  # (rows,)
            forced = ops.reshape(forced_rows, (batch_size, beams))[:, :1]  # (batch, 1)
            parent = ops.where(forced, own_beam, best // vocabulary_size)  # (batch, beams)
            beam_log_probs = ops.where(forced, beam_log_probs, best_log_probs)
            parent_rows = ops.reshape(
                parent + ops.arange(batch_size, dtype="int32")[:, None] * beams, (rows,)
            )
            tokens = ops.take(tokens, parent_rows, axis=0)
            cache = keras.tree.map_structure(lambda x: ops.take(x, parent_rows, axis=0), cache)
            finished = ops.take(finished, parent_rows, axis=0)
            counted = ops.logical_not(ops.logical_or(forced_rows, finished))
            lengths = ops.take(lengths, parent_rows, axis=0) + ops.cast(counted, "int32")
            next_token = ops.where(
                forced_rows,
                _column(tokens, step + 1),
                ops.reshape(best % vocabulary_size, (rows,)),
            )
            if end_id is not None:
                finished = ops.logical_or(
                    finished, ops.logical_and(counted, ops.equal(next_token, end_id))
                )
            # int32 like the buffer (PyTorch's `where` and `%` give int64).
            next_token = ops.cast(next_token, "int32")
            tokens = ops.slice_update(tokens, (0, step + 1), next_token[:, None])
            return step + 1, tokens, cache, finished, lengths, beam_log_probs

        _, tokens, _, _, lengths, beam_log_probs = ops.while_loop(
            lambda step, tokens, cache, finished, lengths, log_probs: _not_done(
                step, length, finished
            ),
            body,
            (
                ops.convert_to_tensor(0, "int32"),
                tokens,
                cache,
                ops.zeros((rows,), "bool"),
                ops.zeros((rows,), "int32"),
                initial_log_probs,
            ),
            maximum_iterations=length - 1,
        )
        # Rank the final beams by GNMT's length-normalized score.
        penalty = length_penalty(ops.reshape(lengths, (batch_size, beams)), self.length_penalty)
        normalized = beam_log_probs / penalty  # (batch, beams)
        best_beam = argmax(normalized)  # (batch,)
        best_rows = best_beam + ops.arange(batch_size, dtype="int32") * beams
        token_ids = ops.take(tokens, best_rows, axis=0)  # (batch, length)
        scores = ops.take_along_axis(normalized, best_beam[:, None], axis=1)[:, 0]
        return token_ids, scores

    def get_config(self):
        return {"num_beams": self.num_beams, "length_penalty": self.length_penalty}


STRATEGIES = {"greedy": Greedy, "beam_search": BeamSearch, "sampling": Sampling}


def get(strategy):
    """A strategy object from a strategy object or one of the names in `STRATEGIES`.

    Raises:
        ValueError: for anything else.
    """
    if isinstance(strategy, Strategy):
        return strategy
    if isinstance(strategy, str) and strategy in STRATEGIES:
        return STRATEGIES[strategy]()
    raise ValueError(
        f"`strategy` must be a strategy object (`Greedy()`, `BeamSearch(...)`, "
        f"`Sampling(...)`) or one of {sorted(STRATEGIES)}. Received: strategy={strategy!r}"
    )
