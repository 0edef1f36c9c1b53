"""A counter-based random draw that gives the same integers everywhere.

`Sampling` draws each token from a hash of `(seed, step, row, vocabulary
id)`, written in `keras.ops` integer arithmetic that never overflows: the
hash works on 15-bit halves, so every product stays below `2**30` and every
sum below `2**16`, exact in int32 on every backend and in every runtime
(TensorFlow eager, graph and XLA, `jax.jit`, PyTorch, SavedModel and TFLite
builtins `ADD`, `MUL`, `FLOOR_DIV`, `FLOOR_MOD`). No int64 (JAX disables
it), no wrapping multiplication (TFLite's int32 `MUL` overflow is not
specified), no float hash.

The hash is a Feistel network on a 30-bit state `(left, right)` of two
15-bit halves: each input word is added into `left`, then the rounds
`(left, right) -> (right, (left + f(right + key)) mod 2**15)` mix it in,
with `f(y) = floor(y * y / 2**7) mod 2**15` (the middle bits of the
square). Its 30 output bits become a uniform number in `(0, 1)`, then
Gumbel noise; `argmax(logits + noise)` is a draw from `softmax(logits)`
(the Gumbel-max trick).
"""

from keras import ops

# The state's halves and every input word are integers in [0, 2**15).
HALF = 2**15
# Bits 7..21 of the (at most 30-bit) square of a half: the round function.
_SQUARE_SHIFT = 2**7
# Words per input: the seed is an int32 (three words, the last holds its
# top two bits and sign); the step, row and vocabulary id are below 2**30.
_SEED_WORDS = 3
_COUNTER_WORDS = 2
_ROUNDS_PER_WORD = 2
_FINAL_ROUNDS = 3
# The state before the first word, and one key per round (21 rounds:
# 9 words of 2 rounds, then 3); arbitrary 15-bit constants.
_INITIAL_STATE = (0x3504, 0x5DB3)
# fmt: off
_ROUND_KEYS = (
    0x1E37, 0x3C6E, 0x7F4A, 0x2B7E, 0x1516, 0x28AE, 0x5A82, 0x6ED9, 0x0F1B, 0x63A1, 0x4C2F,
    0x1D3B, 0x0B5D, 0x7A39, 0x36C7, 0x5F3E, 0x2A1F, 0x4E6B, 0x11D9, 0x6C05, 0x3B83,
)
# fmt: on
# The uniform number is (2 * (bits // 2**7) + 1) / 2**24: 23 random bits,
# exact in float32, never 0 or 1.
_UNIFORM_DROP = 2**7
_UNIFORM_SCALE = 2.0**-24


def _words(value, count):
    """`value`'s base-2**15 digits, lowest first; the last one floor-mod 2**15."""
    words = []
    for _ in range(count):
        words.append(ops.mod(value, HALF))
        value = ops.floor_divide(value, HALF)
    return words


def random_bits(seed, step, rows, ids):
    """30 random bits per `(seed, step, row, id)`, the same on every backend.

    Args:
        seed: int32 scalar or tensor, any int32.
        step: int32 scalar or tensor in `[0, 2**30)`.
        rows: int32 tensor of row indices in `[0, 2**30)`.
        ids: int32 tensor of vocabulary ids in `[0, 2**30)`.

    Returns:
        int32 tensor in `[0, 2**30)`, the broadcast shape of the four
        arguments.

    Example:

    >>> from keras_transformer_layers.generation import counter_random
    >>> rows, ids = keras.ops.arange(2)[:, None], keras.ops.arange(3)[None]
    >>> keras.ops.shape(counter_random.random_bits(7, 0, rows, ids))
    (2, 3)
    """
    seed = ops.cast(seed, "int32")
    words = (
        _words(seed, _SEED_WORDS)
        + _words(ops.cast(step, "int32"), _COUNTER_WORDS)
        + _words(ops.cast(rows, "int32"), _COUNTER_WORDS)
        + _words(ops.cast(ids, "int32"), _COUNTER_WORDS)
    )
    left, right = _INITIAL_STATE
    keys = iter(_ROUND_KEYS)
    for word in words:
        left = ops.mod(left + word, HALF)
        for _ in range(_ROUNDS_PER_WORD):
            left, right = _round(left, right, next(keys))
    for _ in range(_FINAL_ROUNDS):
        left, right = _round(left, right, next(keys))
    return ops.cast(left * HALF + right, "int32")


def _round(left, right, key):
    """One Feistel round; every intermediate value is below 2**30."""
    mixed = ops.mod(right + key, HALF)
    square = ops.mod(ops.floor_divide(mixed * mixed, _SQUARE_SHIFT), HALF)
    return right, ops.mod(left + square, HALF)


def uniform(bits):
    """`(2 * (bits // 2**7) + 1) / 2**24`: float32 in `(0, 1)`, exact."""
    odd = 2 * ops.floor_divide(bits, _UNIFORM_DROP) + 1  # below 2**24: exact in float32
    return ops.cast(odd, "float32") * _UNIFORM_SCALE


def gumbel_noise(seed, step, batch_size, vocabulary_size):
    """Gumbel noise `(batch_size, vocabulary_size)`, reproducible from `(seed, step)`.

    Row `r`, id `v` gets `-log(-log(u))` of the uniform number `u` of
    `random_bits(seed, step, r, v)`. `argmax(logits + noise)` (ties to the
    smaller id) is then distributed as `softmax(logits)`: the Gumbel-max
    trick (Gumbel, 1954; Maddison et al., 2014). The noise lies in about
    `[-2.8, 16.7]`, so a logit of -1e9 or `-inf` is never drawn while a
    finite one above -1e8 exists.

    Args:
        seed: int32 scalar (tensor).
        step: int32 scalar (tensor) in `[0, 2**30)`.
        batch_size: int or int32 scalar tensor, below `2**30`.
        vocabulary_size: int or int32 scalar tensor, below `2**30`.

    Returns:
        float32 `(batch_size, vocabulary_size)`.
    """
    rows = ops.expand_dims(ops.arange(batch_size, dtype="int32"), 1)  # (batch, 1)
    ids = ops.expand_dims(ops.arange(vocabulary_size, dtype="int32"), 0)  # (1, vocab)
    u = uniform(random_bits(seed, step, rows, ids))  # (batch, vocab)
    return -ops.log(-ops.log(u))
