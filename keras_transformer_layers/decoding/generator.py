"""`TranslationGenerator`: greedy, beam and sampled decoding over a key/value cache.

The whole decoding loop is one `ops.while_loop` with fixed-shape state (the
self-attention cache of `max_length` positions and an output buffer, both
written with `ops.slice_update`) inside one `tf.function`. The encoder and the
cross-attention keys and values run once per source, before the loop.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_transformer_layers import _validation
from keras_transformer_layers.tokens import END_ID
from keras_transformer_layers.tokens import PADDING_ID
from keras_transformer_layers.tokens import START_ID
from keras_transformer_layers.layers.decoder import TransformerDecoder
from keras_transformer_layers.layers.encoder import TransformerEncoder
from keras_transformer_layers.layers.positional import PositionalEmbedding

# Log-probability of forbidden continuations: finite, so sums never give NaN.
_FORBIDDEN = -1e9

# The layers of a `build_transformer` model that decoding calls.
DEFAULT_LAYER_NAMES = {
    "encoder_embedding": "encoder_embedding",
    "encoder": "encoder",
    "decoder_embedding": "decoder_embedding",
    "decoder": "decoder",
    "logits": "logits",
}
_LAYER_TYPES = {
    "encoder_embedding": PositionalEmbedding,
    "encoder": TransformerEncoder,
    "decoder_embedding": PositionalEmbedding,
    "decoder": TransformerDecoder,
}


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

    >>> keras_transformer_layers.decoding.length_penalty(7, 1.0)
    2.0
    """
    _check_alpha("alpha", alpha)
    if isinstance(length, (int, float)):
        _validation.check_finite_number("length", length)
        if length < 0:
            raise ValueError(f"`length` must be non-negative. Received: length={length!r}")
        return ((5.0 + length) / 6.0) ** alpha
    return ops.power((5.0 + ops.cast(length, "float32")) / 6.0, alpha)


def _check_settings(
    max_length, num_beams, alpha, sample, top_k, top_p, temperature, seed, jit_compile
):
    """Checks the settings that do not depend on the model."""
    _validation.check_positive_int("max_length", max_length)
    if isinstance(num_beams, bool) or not isinstance(num_beams, int) or num_beams < 1:
        raise ValueError(
            f"`num_beams` must be an integer >= 1. Received: num_beams={num_beams!r}"
        )
    _check_alpha("length_penalty", alpha)
    try:
        penalty = ((5.0 + max_length) / 6.0) ** alpha
    except OverflowError:
        penalty = np.inf
    if penalty > np.finfo("float32").max:
        raise ValueError(
            "`length_penalty` is too large: the penalty ((5 + length) / 6) ** "
            "length_penalty must stay finite in float32 up to `max_length`, or every "
            f"score becomes 0. Received: length_penalty={alpha!r}, max_length={max_length!r}"
        )
    _validation.check_bool("sample", sample)
    _validation.check_bool("jit_compile", jit_compile)
    _validation.check_optional_positive_int("top_k", top_k)
    if top_p is not None and (
        isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1
    ):
        raise ValueError(f"`top_p` must be in the range (0, 1]. Received: top_p={top_p!r}")
    _validation.check_finite_number("temperature", temperature)
    _validation.check_positive_float("temperature", temperature)
    if temperature < np.finfo("float32").tiny:
        raise ValueError(
            "`temperature` must be at least the smallest normal float32 "
            f"({np.finfo('float32').tiny:.4g}): the logits are divided by it in float32, "
            f"where a smaller one is flushed to 0. Received: temperature={temperature!r}"
        )
    if seed is not None:
        _check_seed(seed)
    if sample and num_beams > 1:
        raise ValueError(
            "Sampling and beam search cannot be combined: set `num_beams` to 1 or "
            f"`sample` to False. Received: sample={sample!r}, num_beams={num_beams!r}"
        )
    if not sample and (top_k is not None or top_p is not None):
        raise ValueError(
            "`top_k` and `top_p` apply to sampling only; pass `sample=True`. "
            f"Received: sample={sample!r}, top_k={top_k!r}, top_p={top_p!r}"
        )


def _check_alpha(name, alpha):
    _validation.check_finite_number(name, alpha)
    if alpha < 0:
        raise ValueError(
            f"`{name}` must be a non-negative number (the GNMT alpha). "
            f"Received: {name}={alpha!r}"
        )


def _check_seed(seed):
    _validation.check_int_in_range("seed", seed, -(2**31), 2**31, " (an int32)")


def _logits_width(layer):
    """The number of logits the `logits` layer gives (its output's last dimension)."""
    try:
        return layer.output.shape[-1]
    except (AttributeError, ValueError):
        return None


def _argmax(x):
    """Arg-max over the last axis (the first index on ties), as two reductions.

    The TensorFlow backend's `ops.argmax` adds bitwise ops for signed zeros
    that TFLite has no builtin kernel for, and `top_k(x, 1)` sorts under XLA
    on CPU; a max and a min over the last axis are builtin and cheap.
    """
    size = ops.shape(x)[-1]
    is_max = ops.equal(x, ops.max(x, axis=-1, keepdims=True))
    positions = ops.where(is_max, ops.arange(size, dtype="int32"), size)
    return ops.min(positions, axis=-1)


def _filter_logits(logits, top_k, top_p):
    """Keeps the `top_k` largest logits and the smallest set with mass >= `top_p`."""
    if top_k is not None:
        kth_largest = ops.top_k(logits, top_k)[0][:, -1:]  # (batch, 1)
        logits = ops.where(logits < kth_largest, _FORBIDDEN, logits)
    if top_p is not None:
        vocabulary_size = ops.shape(logits)[-1]
        sorted_logits = ops.top_k(logits, vocabulary_size)[0]  # (batch, vocab), descending
        probabilities = ops.softmax(sorted_logits, axis=-1)
        mass_before = ops.cumsum(probabilities, axis=-1) - probabilities
        # The most likely token is always kept (its mass_before is 0).
        kept = ops.where(mass_before < top_p, sorted_logits, np.inf)
        smallest_kept = ops.min(kept, axis=-1, keepdims=True)  # (batch, 1)
        logits = ops.where(logits < smallest_kept, _FORBIDDEN, logits)
    return logits


class TranslationGenerator:
    """Generates target ids from an encoder-decoder model, with a key/value cache.

    Wraps a trained `build_transformer` model (or any functional model made of
    this package's `PositionalEmbedding`, `TransformerEncoder`,
    `TransformerDecoder` and a final `Dense` producing logits) and decodes
    autoregressively without the caller writing a loop. The encoder and the
    cross-attention keys and values run once per source; each step then feeds
    one token through the decoder, attending to a fixed-size self-attention
    cache (Vaswani et al., 2017, section 3.2.3 masking, applied to the cached
    positions). The loop is a single `ops.while_loop` compiled by
    `tf.function` (optionally with XLA), so it also exports (see
    `export_generation_saved_model`, `generation_tflite`).

    Decoding strategies:
    - greedy (default): the arg-max token at every step;
    - beam search (`num_beams > 1`): keeps the `num_beams` most likely
      prefixes; finished beams are carried along unchanged and the best beam
      is chosen at the end by `log_prob / length_penalty(length, alpha)`
      (GNMT, Wu et al., 2016);
    - sampling (`sample=True`): from `softmax(logits / temperature)`,
      restricted to the `top_k` most likely tokens and/or the nucleus of
      probability mass `top_p` (Holtzman et al., 2019). A given `seed` gives
      the same samples on every call.

    Each row stops at `end_id`: the end token is written, then `pad_id` up
    to `max_length`. Source rows may have different lengths, padded with
    `pad_id` (the model's padding id, masked by `mask_zero=True`).

    Decoding never emits `pad_id` or `start_id`: their logits are excluded
    in greedy, beam search and sampling alike (and in the exports). The full
    model masks a padding id inside the target as padding, which a key/value
    cache cannot do once the position is written, and the start id only
    begins a sequence; so every prefix the generator produces gives the same
    logits as running the full model on it. Scores stay the model's own
    log-probabilities.

    Args:
        model: a `keras.Model` holding the layers named in `layer_names`.
        max_length: positive int, the maximum number of generated tokens
            (end token included); also the length of the cache. With a
            learned decoder position table, at most its length (the start
            token takes position 0, the last token is never fed back).
            Defaults to `32`.
        num_beams: int >= 1, beam width; 1 is greedy or sampling. At most
            the number of ids decoding can emit. Defaults to `1`.
        length_penalty: finite non-negative float, the GNMT `alpha` used to
            rank beams, small enough that `((5 + max_length) / 6) ** alpha`
            is finite in float32; ignored with one beam. Defaults to `0.6`.
        sample: bool, sample instead of taking the arg-max. Defaults to
            `False`.
        top_k: optional positive int, at most the vocabulary size; sample
            among the `top_k` most likely tokens. Defaults to `None` (no
            limit).
        top_p: optional float in `(0, 1]`, sample from the smallest set of
            tokens whose probability reaches `top_p`. Defaults to `None`.
        temperature: finite float, at least the smallest normal float32
            (about `1.2e-38`), dividing the logits when sampling. Defaults
            to `1.0`.
        seed: optional int32 (in `[-2**31, 2**31)`), sampling seed; `None`
            draws a new seed from NumPy's global generator on each call.
            Defaults to `None`.
        start_id: int, the id fed at the first step, in the decoder's
            vocabulary and different from `pad_id`. Defaults to `2`, the
            package's `[START]` id (`keras_transformer_layers.data.START_ID`).
        end_id: int or `None`, the id that ends a row, in the vocabulary and
            different from `pad_id` and `start_id`; `None` has no end token
            (every row runs to `max_length`). Defaults to `3`, the package's
            `[END]` id.
        pad_id: int, the padding id of outputs; must be `0` when the model's
            embeddings mask id 0 (`mask_zero=True`, as in
            `build_transformer`). Defaults to `0`.
        jit_compile: bool, compile the loop with XLA. Defaults to `False`.
        layer_names: optional dict overriding `DEFAULT_LAYER_NAMES` (keys
            `encoder_embedding`, `encoder`, `decoder_embedding`, `decoder`,
            `logits`). Defaults to `None`.

    Call arguments (`generate`):
        source_ids: int array of shape `(batch, source_len)`, padded with
            `pad_id`: ids in the encoder's vocabulary, and with a learned
            encoder position table at most that long.
        return_scores: bool, also return scores. Defaults to `False`.
        seed: optional int32 overriding the constructor's `seed` for this
            call (no retracing). Defaults to `None`.

    Returns:
        `generate` returns an int32 NumPy array `(batch, max_length)` of
        generated ids (no start token; end token, then padding), and with
        `return_scores=True` also a float32 array `(batch,)`: the total
        log-probability of the generated tokens under the model (end token
        included, temperature and filtering not applied), divided by the
        length penalty for beam search.

    Raises:
        ValueError: at construction, for a setting of the wrong type, NaN,
            infinite or out of range, or an id or length the model cannot
            take; in `generate`, for `source_ids` that are not a rank-2
            integer array, hold ids outside the encoder's vocabulary or are
            longer than its learned position table (checked before the
            compiled loop runs, so in eager and with XLA alike).

    Example:

    >>> model = keras_transformer_layers.build_transformer(
    ...     16, 16, num_layers=1, model_dim=16, num_heads=2, intermediate_dim=32)
    >>> generator = keras_transformer_layers.decoding.TranslationGenerator(
    ...     model, max_length=5)
    >>> generator.generate(np.array([[4, 5, 6, 0]])).shape
    (1, 5)

    Reference:
        Vaswani et al., "Attention Is All You Need", 2017, section 6.1;
        Wu et al., "Google's Neural Machine Translation System", 2016, sec. 7.
    """

    def __init__(
        self,
        model,
        max_length=32,
        num_beams=1,
        length_penalty=0.6,
        sample=False,
        top_k=None,
        top_p=None,
        temperature=1.0,
        seed=None,
        start_id=START_ID,
        end_id=END_ID,
        pad_id=PADDING_ID,
        jit_compile=False,
        layer_names=None,
    ):
        _check_settings(
            max_length, num_beams, length_penalty, sample, top_k, top_p, temperature, seed,
            jit_compile,
        )
        self.model = model
        self.max_length = max_length
        self.num_beams = num_beams
        self.length_penalty = length_penalty
        self.sample = sample
        self.top_k = top_k
        self.top_p = top_p
        self.temperature = temperature
        self.seed = seed
        self.start_id = start_id
        self.end_id = end_id
        self.pad_id = pad_id
        self.jit_compile = jit_compile
        self.layer_names = layer_names
        if not isinstance(model, keras.Model):
            raise ValueError(
                f"`model` must be a `keras.Model`. Received: model={model!r}"
            )
        if layer_names is not None and not isinstance(layer_names, dict):
            raise ValueError(
                f"`layer_names` must be a dict or None. Received: layer_names={layer_names!r}"
            )
        self._layers = self._find_layers(model, {**DEFAULT_LAYER_NAMES, **(layer_names or {})})
        self._check_model_settings()
        self._function = tf.function(
            self.generate_tensors,
            input_signature=[
                tf.TensorSpec((None, None), tf.int32, name="source_ids"),
                tf.TensorSpec((), tf.int32, name="seed"),
            ],
            jit_compile=jit_compile,
        )

    @staticmethod
    def _find_layers(model, names):
        unknown = set(names) - set(DEFAULT_LAYER_NAMES)
        if unknown:
            raise ValueError(
                f"`layer_names` keys must be among {sorted(DEFAULT_LAYER_NAMES)}. "
                f"Received: layer_names keys {sorted(unknown)}"
            )
        found = {}
        for role, name in names.items():
            try:
                layer = model.get_layer(name)
            except ValueError:
                raise ValueError(
                    f"The model has no layer named '{name}' to use as `{role}`; pass "
                    f"`layer_names={{'{role}': ...}}`. Received: layer_names={names!r}"
                ) from None
            expected = _LAYER_TYPES.get(role)
            if expected is not None and not isinstance(layer, expected):
                raise ValueError(
                    f"The `{role}` layer must be a `{expected.__name__}`. Received: "
                    f"layer '{name}' of type {type(layer).__name__}"
                )
            found[role] = layer
        return found

    def _check_model_settings(self):
        """Checks the ids and lengths against the model's vocabularies and tables."""
        encoder_embedding = self._layers["encoder_embedding"]
        decoder_embedding = self._layers["decoder_embedding"]
        self.source_vocabulary_size = encoder_embedding.vocabulary_size
        # Positions the encoder's learned table covers (`None`: any length).
        self.max_source_length = (
            encoder_embedding.sequence_length if encoder_embedding.learned_positions else None
        )
        embedded = decoder_embedding.vocabulary_size
        width = _logits_width(self._layers["logits"])
        if width is None or width > embedded:
            raise ValueError(
                f"The `logits` layer must give at most as many logits as the decoder "
                f"embedding has ids ({embedded}), so that every generated id can be fed "
                f"back. Received: logits width={width}"
            )
        self.vocabulary_size = width
        vocabulary = f" (the model's {width} target ids)"
        _validation.check_int_in_range("pad_id", self.pad_id, 0, width, vocabulary)
        if (encoder_embedding.mask_zero or decoder_embedding.mask_zero) and self.pad_id != 0:
            raise ValueError(
                "`pad_id` must be 0: the model's embeddings mask id 0 as padding "
                f"(`mask_zero=True`). Received: pad_id={self.pad_id!r}"
            )
        _validation.check_int_in_range(
            "start_id", self.start_id, 0, embedded, f" (the decoder embedding's {embedded} ids)"
        )
        if self.start_id == self.pad_id:
            raise ValueError(
                "`start_id` must differ from `pad_id`: the model would mask the start "
                f"token as padding. Received: start_id={self.start_id!r}, pad_id={self.pad_id!r}"
            )
        if self.end_id is not None:
            _validation.check_int_in_range("end_id", self.end_id, 0, width, vocabulary)
            if self.end_id in (self.pad_id, self.start_id):
                raise ValueError(
                    "`end_id` must differ from `pad_id` and `start_id`, which decoding "
                    f"never emits. Received: end_id={self.end_id!r}, "
                    f"pad_id={self.pad_id!r}, start_id={self.start_id!r}"
                )
        # Decoding never emits padding (the cache cannot mask a position once
        # written, the full model would) nor the start token.
        self._forbidden = np.isin(np.arange(width), [self.pad_id, self.start_id])
        emittable = width - int(self._forbidden.sum())
        if self.num_beams > emittable:
            raise ValueError(
                f"`num_beams` must be at most the number of ids decoding can emit "
                f"({emittable}: the vocabulary without `pad_id` and `start_id`). "
                f"Received: num_beams={self.num_beams!r}"
            )
        if self.top_k is not None and self.top_k > width:
            raise ValueError(
                f"`top_k` must be at most the vocabulary size ({width}). "
                f"Received: top_k={self.top_k!r}"
            )
        # The last generated token is never fed back: the decoder sees
        # positions 0 (the start token) to max_length - 1.
        table = decoder_embedding.sequence_length if decoder_embedding.learned_positions else None
        if table is not None and self.max_length > table:
            raise ValueError(
                "`max_length` must be at most the decoder's learned position table "
                f"({table} positions, the start token "
                f"included). Received: max_length={self.max_length!r}"
            )

    def get_config(self):
        """The generation settings (everything but the model)."""
        return {
            "max_length": self.max_length,
            "num_beams": self.num_beams,
            "length_penalty": self.length_penalty,
            "sample": self.sample,
            "top_k": self.top_k,
            "top_p": self.top_p,
            "temperature": self.temperature,
            "seed": self.seed,
            "start_id": self.start_id,
            "end_id": self.end_id,
            "pad_id": self.pad_id,
            "jit_compile": self.jit_compile,
            "layer_names": self.layer_names,
        }

    @classmethod
    def from_config(cls, config, model):
        """Rebuilds a generator from `get_config()` around `model`."""
        return cls(model, **config)

    # ------------------------------------------------------------------ API

    def generate(self, source_ids, return_scores=False, seed=None):
        source_ids = self._check_source_ids(source_ids)
        _validation.check_bool("return_scores", return_scores)
        if seed is None:
            seed = self.seed
        if seed is None:
            seed = int(np.random.randint(0, 2**31 - 1))
        _check_seed(seed)
        token_ids, scores = self._function(source_ids, tf.constant(seed, tf.int32))
        token_ids, scores = token_ids.numpy(), scores.numpy()
        return (token_ids, scores) if return_scores else token_ids

    def _check_source_ids(self, source_ids):
        """`source_ids` as an int32 tensor, or a `ValueError` saying what is wrong."""
        if isinstance(source_ids, (tf.RaggedTensor, tf.SparseTensor)):
            raise ValueError(
                "`source_ids` must be a dense integer array (batch, source_len), padded "
                f"with {self.pad_id}. Received: source_ids={source_ids!r}"
            )
        try:
            array = np.asarray(source_ids)
        except ValueError:  # rows of different lengths
            array = None
        if array is None or array.dtype == object:
            raise ValueError(
                "`source_ids` must be a rectangular integer array (batch, source_len), "
                f"rows padded with {self.pad_id}. Received: source_ids={source_ids!r}"
            )
        if array.dtype.kind not in "iu":
            raise ValueError(
                "`source_ids` must hold integer token ids. Received: "
                f"source_ids.dtype={array.dtype}"
            )
        _validation.check_rank("source_ids", array.shape, 2, "(batch, source_len)")
        if array.size == 0:
            raise ValueError(
                "`source_ids` must hold at least one row of at least one token. "
                f"Received: source_ids.shape={array.shape}"
            )
        low, high = array.min(), array.max()
        if low < 0 or high >= self.source_vocabulary_size:
            raise ValueError(
                f"`source_ids` must be ids in [0, {self.source_vocabulary_size}) (the "
                f"encoder's vocabulary). Received: source_ids with values in [{low}, {high}]"
            )
        if self.max_source_length is not None and array.shape[1] > self.max_source_length:
            raise ValueError(
                "`source_ids` must be at most as long as the encoder's learned position "
                f"table ({self.max_source_length}). Received: source_ids.shape={array.shape}"
            )
        return tf.convert_to_tensor(array, tf.int32)

    def generate_tensors(self, source_ids, seed=0):
        """The traceable decoding function behind `generate` (and the exports).

        Unlike `generate`, it does not check `source_ids` (a check inside a
        compiled graph does not fire under XLA): callers check them first, as
        `generate` and the exported signatures do.

        Args:
            source_ids: int32 tensor `(batch, source_len)`.
            seed: int32 scalar, the sampling seed.

        Returns:
            `(token_ids, scores)`: int32 `(batch, max_length)`, float32 `(batch,)`.
        """
        source_mask, cross_cache = self.encode(source_ids)
        if self.num_beams > 1:
            return self._beam_search(source_mask, cross_cache)
        return self._greedy_or_sample(source_mask, cross_cache, seed)

    def encode(self, source_ids):
        """Runs the encoder once; returns the source padding mask and cross cache.

        Returns:
            `(source_mask, cross_attention_cache)`: boolean `(batch, source_len)`
            and `(batch, num_layers, 2, source_len, num_heads, key_dim)`.
        """
        # The padding the model itself masks: id 0 when `mask_zero=True`.
        source_mask = self._layers["encoder_embedding"].compute_mask(source_ids)
        if source_mask is None:
            source_mask = ops.ones_like(source_ids, dtype="bool")
        x = self._layers["encoder_embedding"](source_ids)
        encoder_outputs = self._layers["encoder"](x, mask=source_mask)
        cross_cache = self._layers["decoder"].compute_cross_attention_cache(encoder_outputs)
        return source_mask, cross_cache

    def initial_cache(self, batch_size):
        """The zero self-attention cache of `max_length` positions."""
        return self._layers["decoder"].initial_self_attention_cache(batch_size, self.max_length)

    def decode_step(self, token_ids, index, self_cache, cross_cache, source_mask):
        """One decoder step over the caches.

        Args:
            token_ids: int32 `(batch, 1)`, the tokens at position `index`.
            index: int32 scalar, their position.
            self_cache: the self-attention cache (see `initial_cache`).
            cross_cache: the cross-attention cache from `encode`.
            source_mask: boolean `(batch, source_len)` from `encode`.

        Returns:
            `(logits, self_cache)`: float32 `(batch, vocabulary)` logits of the
            next token, and the updated cache.
        """
        x = self._layers["decoder_embedding"](token_ids, start_index=index)
        x, self_cache = self._layers["decoder"](
            x,
            None,
            decoder_inputs_mask=self._layers["decoder_embedding"].compute_mask(token_ids),
            encoder_outputs_mask=source_mask,
            self_attention_cache=self_cache,
            self_attention_cache_update_index=index,
            cross_attention_cache=cross_cache,
        )
        logits = self._layers["logits"](x)[:, 0, :]  # (batch, vocab)
        return ops.cast(logits, "float32"), self_cache

    # ------------------------------------------------------------ the loops

    def _start_tokens(self, batch_size):
        tokens = ops.full((batch_size, self.max_length + 1), self.pad_id, "int32")
        start = ops.full((batch_size, 1), self.start_id, "int32")
        return ops.slice_update(tokens, (0, 0), start)  # (batch, max_length + 1)

    def _not_done(self, step, finished):
        return ops.logical_and(step < self.max_length, ops.logical_not(ops.all(finished)))

    def exclude_special_ids(self, logits):
        """Sets the logits of `pad_id` and `start_id` to -1e9: neither is ever chosen.

        A generated padding id would be masked by the full model but kept as a
        real token by the cache; the start id only begins a sequence. Every
        strategy applies this before choosing, and so do the exported
        `decode_step` signatures.

        Args:
            logits: float tensor `(..., vocabulary_size)`.

        Returns:
            A tensor like `logits`, -1e9 at `pad_id` and `start_id`.
        """
        return ops.where(self._forbidden, _FORBIDDEN, logits)

    def _choose(self, logits, step, seed):
        logits = self.exclude_special_ids(logits)
        if not self.sample:
            return _argmax(logits)
        # Shifted so the best allowed logit is 0: a small temperature gives
        # -inf (probability 0), never inf - inf = NaN; excluded again after
        # the division, which a large temperature would bring close to 0.
        logits = (logits - ops.max(logits, axis=-1, keepdims=True)) / self.temperature
        logits = _filter_logits(self.exclude_special_ids(logits), self.top_k, self.top_p)
        # Stateless sampling: the same (seed, step) gives the same token.
        step_seed = ops.stack([ops.cast(seed, "int32"), ops.cast(step, "int32")])
        samples = tf.random.stateless_categorical(logits, 1, seed=step_seed, dtype=tf.int32)
        return samples[:, 0]

    def _greedy_or_sample(self, source_mask, cross_cache, seed):
        batch_size = ops.shape(source_mask)[0]

        def body(step, tokens, cache, finished, scores):
            current = ops.take(tokens, ops.expand_dims(step, 0), axis=1)  # (batch, 1)
            logits, cache = self.decode_step(current, step, cache, cross_cache, source_mask)
            log_probs = ops.log_softmax(logits, axis=-1)  # (batch, vocab)
            next_token = ops.where(finished, self.pad_id, self._choose(logits, step, seed))
            token_log_prob = ops.take_along_axis(log_probs, next_token[:, None], axis=1)[:, 0]
            scores = scores + ops.where(finished, 0.0, token_log_prob)
            if self.end_id is not None:
                finished = ops.logical_or(finished, ops.equal(next_token, self.end_id))
            tokens = ops.slice_update(tokens, (0, step + 1), next_token[:, None])
            return step + 1, tokens, cache, finished, scores

        _, tokens, _, _, scores = ops.while_loop(
            lambda step, tokens, cache, finished, scores: self._not_done(step, finished),
            body,
            (
                ops.convert_to_tensor(0, "int32"),
                self._start_tokens(batch_size),
                self.initial_cache(batch_size),
                ops.zeros((batch_size,), "bool"),
                ops.zeros((batch_size,), "float32"),
            ),
            maximum_iterations=self.max_length,
        )
        return tokens[:, 1:], scores

    def _beam_search(self, source_mask, cross_cache):
        beams = self.num_beams
        batch_size = ops.shape(source_mask)[0]
        rows = batch_size * beams  # row b * beams + k is beam k of example b
        # Every beam of an example shares its source.
        source_mask = ops.repeat(source_mask, beams, axis=0)  # (rows, source_len)
        cross_cache = ops.repeat(cross_cache, beams, axis=0)
        # Only beam 0 is live at first, so the first step picks distinct tokens.
        initial_log_probs = ops.tile(
            ops.convert_to_tensor([[0.0] + [_FORBIDDEN] * (beams - 1)], "float32"),
            (batch_size, 1),
        )  # (batch, beams)

        def body(step, tokens, cache, finished, lengths, beam_log_probs):
            current = ops.take(tokens, ops.expand_dims(step, 0), axis=1)  # (rows, 1)
            logits, cache = self.decode_step(current, step, cache, cross_cache, source_mask)
            log_probs = ops.log_softmax(logits, axis=-1)  # (rows, vocab)
            vocabulary_size = ops.shape(log_probs)[-1]
            # A finished beam continues with padding at no cost.
            pad_only = ops.where(
                ops.arange(vocabulary_size) == self.pad_id, 0.0, _FORBIDDEN
            )  # (vocab,)
            log_probs = ops.where(
                finished[:, None], pad_only[None, :], self.exclude_special_ids(log_probs)
            )
            candidates = ops.reshape(beam_log_probs, (batch_size, beams, 1)) + ops.reshape(
                log_probs, (batch_size, beams, vocabulary_size)
            )  # (batch, beams, vocab)
            beam_log_probs, best = ops.top_k(
                ops.reshape(candidates, (batch_size, beams * vocabulary_size)), beams
            )  # (batch, beams)
            parent = best // vocabulary_size  # (batch, beams)
            next_token = ops.reshape(best % vocabulary_size, (rows,))
            parent_rows = ops.reshape(parent + ops.arange(batch_size)[:, None] * beams, (rows,))
            tokens = ops.take(tokens, parent_rows, axis=0)
            cache = ops.take(cache, parent_rows, axis=0)
            finished = ops.take(finished, parent_rows, axis=0)
            lengths = ops.take(lengths, parent_rows, axis=0) + ops.where(finished, 0, 1)
            if self.end_id is not None:
                finished = ops.logical_or(finished, ops.equal(next_token, self.end_id))
            tokens = ops.slice_update(tokens, (0, step + 1), next_token[:, None])
            return step + 1, tokens, cache, finished, lengths, beam_log_probs

        _, tokens, _, _, lengths, beam_log_probs = ops.while_loop(
            lambda step, tokens, cache, finished, lengths, log_probs: self._not_done(
                step, finished
            ),
            body,
            (
                ops.convert_to_tensor(0, "int32"),
                self._start_tokens(rows),
                self.initial_cache(rows),
                ops.zeros((rows,), "bool"),
                ops.zeros((rows,), "int32"),
                initial_log_probs,
            ),
            maximum_iterations=self.max_length,
        )
        # Rank the final beams by GNMT's length-normalized score.
        penalty = length_penalty(ops.reshape(lengths, (batch_size, beams)), self.length_penalty)
        normalized = beam_log_probs / penalty  # (batch, beams)
        best_beam = _argmax(normalized)  # (batch,)
        best_rows = best_beam + ops.arange(batch_size) * beams
        token_ids = ops.take(tokens, best_rows, axis=0)[:, 1:]  # (batch, max_length)
        scores = ops.take_along_axis(normalized, best_beam[:, None], axis=1)[:, 0]
        return token_ids, scores
