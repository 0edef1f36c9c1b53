"""`Generator`: drives any model with the decoding interface with a strategy."""

import keras
import numpy as np
from keras import ops

from keras_transformer_layers import _validation
from keras_transformer_layers.generation import strategies
from keras_transformer_layers.generation._compile import compile_generation
from keras_transformer_layers.models.cached_decoding import CachedDecodingMixin
from keras_transformer_layers.tokens import END_ID
from keras_transformer_layers.tokens import PADDING_ID
from keras_transformer_layers.tokens import START_ID

_INTERFACE = ("decoding_spec", "call_encoder", "initial_cache", "call_decoder_with_cache")


def _length_buckets(value):
    """`length_buckets` checked: `None`, a positive int, or a tuple of increasing ones."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if (
        isinstance(value, (list, tuple))
        and value
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
        and all(a < b for a, b in zip(value[:-1], value[1:], strict=True))
    ):
        return tuple(value)
    raise ValueError(
        "`length_buckets` must be None, a positive int (pad to a multiple of it) or a "
        "non-empty sequence of strictly increasing positive ints (the lengths to pad to). "
        f"Received: length_buckets={value!r}"
    )


def _model_variables(model):
    """The variables a model with the interface reads (for `jax.jit`)."""
    if isinstance(model, keras.Layer):
        return list(model.variables)
    if not isinstance(model, CachedDecodingMixin):
        return []
    layers = (
        model.encoder_embedding,
        model.encoder,
        model.decoder_embedding,
        model.decoder,
        model.logits_layer,
    )
    variables = {}
    for layer in layers:
        for variable in [] if layer is None else layer.variables:
            variables.setdefault(id(variable), variable)
    return list(variables.values())


class Generator:
    """Generates token ids from a model with the decoding interface, over a key/value cache.

    Works for encoder-decoder models (translation: source ids in, target ids
    out) and decoder-only models (continuation of prompts, of different
    lengths in one batch). The model is anything with the decoding interface
    (`decoding_spec`, `call_encoder`, `initial_cache`,
    `call_decoder_with_cache`): a `Seq2SeqTransformer`, a `TransformerLM`, or
    a functional model composed from this package's layers wrapped in
    `keras_transformer_layers.models.CachedDecoding`.

    The encoder (and the cross-attention keys and values) runs once per
    source; each step then feeds one token through the decoder, attending to
    a fixed-size self-attention cache (Vaswani et al., 2017, section 3.2.3
    masking, applied to the cached positions). The whole search is one
    `ops.while_loop` compiled by `tf.function` on TensorFlow (XLA with
    `jit_compile=True`), `jax.jit` on JAX, eager on PyTorch; XLA and JAX
    compile it once per input shape, which `length_buckets` bounds.

    The sequence buffer starts with the prompt (for an encoder-decoder
    model, the start token); every step feeds position `t` and chooses the
    token at `t + 1` unless the row's prompt still has a token there. Prompt
    tokens are kept as given and their log-probabilities do not count in the
    scores; beam search only branches after the prompt.

    Decoding never emits `pad_id` or `start_id`: their logits are excluded
    in every strategy (`exclude_special_ids`): a generated padding id would
    be a hole the model masks, and the start id only begins a sequence.
    Every prefix the generator produces gives the same logits as running
    the full model on it. Scores stay the model's own log-probabilities.
    Each row stops at `end_id`: the end token is written, then `pad_id` up
    to `max_length`.

    Lengths: `max_length` is the number of decoder positions of a decoded
    sequence, the start token (encoder-decoder) or the prompt (decoder-only)
    included; it is also the number of self-attention cache slots
    (`model.initial_cache(batch_size, max_length)`), as in keras-hub's
    `generate(max_length=...)`. An encoder-decoder model generates
    `max_new_tokens = max_length - 1` tokens after its start token (the end
    token included); give either. A decoder-only model's prompts differ in
    length, so it takes `max_length`, the length of the returned sequences.

    Args:
        model: a model with the decoding interface (see above).
        strategy: a strategy object (`Greedy()`, `BeamSearch(...)`,
            `Sampling(...)`) or one of the strings `"greedy"`,
            `"beam_search"`, `"sampling"` (default settings). Defaults to
            `"greedy"`.
        max_length: int at least 2, or `None`: the decoder positions of a
            decoded sequence, the start token or the prompt included (and the
            cache slots). Decoder-only: the length of the returned sequences,
            longer than every prompt. With a learned decoder position table,
            at most its length. Defaults to `None`: `max_new_tokens + 1` when
            that is given, else `32`.
        max_new_tokens: positive int or `None`, encoder-decoder models only:
            the most tokens generated after the start token, the end token
            included; the same as `max_length=max_new_tokens + 1`. Give
            `max_length` or `max_new_tokens`, not both. Defaults to `None`.
        start_id: int, the id fed at the first step of an encoder-decoder
            model, in the decoder's vocabulary and different from `pad_id`;
            never emitted. Defaults to `tokens.START_ID` (2).
        end_id: int or `None`, the id that ends a row, among the logits and
            different from `pad_id` and `start_id`; `None` has no end token
            (every row runs to `max_length`). Defaults to `tokens.END_ID`
            (3).
        pad_id: int, the padding id of inputs and outputs, among the
            logits; must be `0` when the model's embeddings mask id 0
            (`mask_zero=True`). Defaults to `tokens.PADDING_ID` (0).
        jit_compile: bool, compile with XLA on TensorFlow (JAX always
            compiles). Defaults to `False`.
        length_buckets: `None`, a positive int or a sequence of increasing
            positive ints: pads the inputs of each batch before the compiled
            loop, so that any mix of lengths runs a bounded number of input
            shapes (XLA and JAX compile once per shape; see
            `tracing_count`). An int `n` pads sources to the next multiple
            of `n` (and at most to the encoder's learned position table); a
            sequence pads them to the smallest length in it that holds the
            longest source of the batch, and a longer source raises. Lengths
            count up to the last non-padding column. Decoder-only prompts
            are padded to `max_length` columns, the width of the sequence
            buffer the loop writes anyway, whatever the form. With
            `batch_size`, the last (or only) batch is also filled up to
            `batch_size` rows with copies of its first row, whose results
            are dropped. Padding is masked: results are those of the
            unpadded inputs. Needs an encoder embedding that masks padding
            (`mask_zero=True`). Defaults to `None` (no padding: inputs run
            at their own shape).

    Call arguments (`generate`):
        inputs: int array `(batch, length)`. Encoder-decoder: source ids
            padded with `pad_id`. Decoder-only: prompts of at least one
            token, right-padded with `pad_id`.
        batch_size: optional positive int; larger inputs are generated in
            batches of this many rows, with the same results as one batch
            for greedy and beam search. Defaults to `None` (one batch).
        verbose: `"auto"`, 0, 1 or 2, the `keras.utils.Progbar` verbosity;
            `"auto"` shows it when there is more than one batch. Defaults
            to `"auto"`.
        return_scores: bool, also return scores. Defaults to `False`.
        seed: optional int32 overriding the strategy's `seed` for this call.
            Defaults to `None`.

    Returns:
        `generate` returns an int32 NumPy array: encoder-decoder,
        `(batch, max_new_tokens)`, the generated ids (no start token; end
        token, then padding); decoder-only, `(batch, max_length)`, the whole
        sequences (the prompt, the continuation, end token, then padding).
        With `return_scores=True` also float32 `(batch,)`: the summed
        log-probability of the generated tokens under the model (end token
        included, prompt excluded, temperature and filtering not applied),
        divided by the length penalty for beam search.

    Raises:
        ValueError: at construction, for a model without the interface, a
            setting of the wrong type, NaN, infinite or out of range, or an
            id or length the model cannot take, or `length_buckets` for a
            model whose encoder does not mask padding; in `generate`, for
            inputs that are not a rank-2 integer array, hold ids outside the
            vocabulary, are longer than a learned position table or than the
            largest of `length_buckets`, or (decoder-only) hold an empty, not
            right-padded or too long prompt; checked before the compiled loop
            runs.

    Example:

    >>> inputs = keras.Input((None,), dtype="int32")
    >>> embedding = keras_transformer_layers.PositionalEmbedding(16, 16)
    >>> decoder = keras_transformer_layers.TransformerDecoder(1, 2, 32)
    >>> dense = keras.layers.Dense(16)
    >>> lm = keras.Model(inputs, dense(decoder(embedding(inputs))))
    >>> model = keras_transformer_layers.models.CachedDecoding(
    ...     decoder_embedding=embedding, decoder=decoder, logits=dense)
    >>> generator = keras_transformer_layers.generation.Generator(
    ...     model, strategy="greedy", max_length=6)
    >>> generator.generate(np.array([[4, 5, 0], [6, 7, 8]])).shape
    (2, 6)
    >>> generator.max_new_tokens  # what a one-token prompt gets
    5

    Reference:
        Vaswani et al., "Attention Is All You Need", 2017, section 6.1;
        Wu et al., "Google's Neural Machine Translation System", 2016, sec. 7.
    """

    def __init__(
        self,
        model,
        strategy="greedy",
        max_length=None,
        max_new_tokens=None,
        start_id=START_ID,
        end_id=END_ID,
        pad_id=PADDING_ID,
        jit_compile=False,
        length_buckets=None,
    ):
        if isinstance(model, (str, type)) or not all(hasattr(model, name) for name in _INTERFACE):
            raise ValueError(
                "`model` must have the decoding interface (`decoding_spec`, "
                "`call_encoder`, `initial_cache`, `call_decoder_with_cache`): use a "
                "`Seq2SeqTransformer` or a `TransformerLM`, or wrap a functional model "
                "composed from this package's layers in "
                "`keras_transformer_layers.models.CachedDecoding(decoder_embedding=..., "
                f"decoder=..., logits=...)`. Received: model={model!r}"
            )
        self.strategy = strategies.get(strategy)
        _validation.check_bool("jit_compile", jit_compile)
        self.model = model
        self.spec = model.decoding_spec
        self.max_length = self._resolve_max_length(max_length, max_new_tokens)
        self.start_id = start_id
        self.end_id = end_id
        self.pad_id = pad_id
        self.jit_compile = jit_compile
        self.length_buckets = _length_buckets(length_buckets)
        self._check_model_settings()
        self._tracing_count = 0
        self._compiled = compile_generation(self._traced, _model_variables(model), jit_compile)

    @property
    def tracing_count(self):
        """How many times `generate` has traced its loop (one per compilation).

        With `jit_compile=True` on TensorFlow, and on JAX, each new input
        shape `(batch, length)` traces and compiles the loop once more; on
        TensorFlow without XLA one trace serves every shape; eagerly
        (PyTorch) every batch counts. `length_buckets` bounds it.
        """
        return self._tracing_count

    @property
    def max_new_tokens(self):
        """The most tokens a row gets, the end token included: `max_length - 1`.

        Encoder-decoder: the width of `generate`'s result. Decoder-only: what
        a one-token prompt gets; a longer prompt leaves fewer.
        """
        return self.max_length - 1

    def _resolve_max_length(self, max_length, max_new_tokens):
        """`max_length` from the one of `max_length` and `max_new_tokens` given."""
        if max_length is not None and max_new_tokens is not None:
            raise ValueError(
                "Give `max_length` (the decoder positions, the start token included) or "
                "`max_new_tokens` (the generated tokens): for an encoder-decoder model, "
                "`max_length = max_new_tokens + 1`. Received: "
                f"max_length={max_length!r}, max_new_tokens={max_new_tokens!r}"
            )
        if max_new_tokens is not None:
            _validation.check_positive_int("max_new_tokens", max_new_tokens)
            if not self.spec.is_encoder_decoder:
                raise ValueError(
                    "`max_new_tokens` is for encoder-decoder models: a decoder-only model's "
                    "prompts differ in length and share one sequence buffer, so it takes "
                    "`max_length`, the length of the returned sequences, prompt included. "
                    f"Received: max_new_tokens={max_new_tokens!r}"
                )
            return max_new_tokens + 1
        if max_length is None:
            return 32
        _validation.check_positive_int("max_length", max_length)
        if max_length < 2:
            raise ValueError(
                "`max_length` must be at least 2: a decoded sequence holds the start token "
                "or a prompt of at least one token, and at least one generated token. "
                f"Received: max_length={max_length!r}"
            )
        return max_length

    def _traced(self, inputs, seed):
        # Python code of a traced function runs once per trace.
        self._tracing_count += 1
        return self.generate_tensors(inputs, seed)

    def _check_model_settings(self):
        """Checks the ids and lengths against the model's vocabularies and tables."""
        spec = self.spec
        embedded = spec.target_vocabulary_size
        width = spec.logits_size
        if width > embedded:
            raise ValueError(
                f"The `logits` layer must give at most as many logits as the decoder "
                f"embedding has ids ({embedded}), so that every generated id can be fed "
                f"back. Received: logits width={width}"
            )
        vocabulary = f" (the model's {width} target ids)"
        _validation.check_int_in_range("pad_id", self.pad_id, 0, width, vocabulary)
        if spec.masks_padding and self.pad_id != 0:
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
        # Decoding never emits padding (a hole the model masks) nor the start
        # token.
        self._forbidden = np.isin(np.arange(width), [self.pad_id, self.start_id])
        self._check_length_buckets()
        self.strategy.check_generation_settings(
            self.max_new_tokens, width, width - int(self._forbidden.sum())
        )
        # Every position of a decoded sequence has a cache slot and a row of
        # the position table (the last token is never fed back by `generate`,
        # but an exported decoder step may be run on it).
        table = spec.max_target_length
        if table is not None and self.max_length > table:
            included = "the start token" if spec.is_encoder_decoder else "the prompt"
            raise ValueError(
                "`max_length` must be at most the decoder's learned position table "
                f"({table} positions, {included} included; `max_new_tokens` is one less). "
                f"Received: max_length={self.max_length!r}"
            )

    def _check_length_buckets(self):
        buckets = self.length_buckets
        if buckets is None or not self.spec.is_encoder_decoder:
            return
        if not self.spec.masks_source_padding:
            raise ValueError(
                "`length_buckets` needs a model whose encoder embedding masks padding "
                "(`mask_zero=True`): this encoder reads padded source positions, so "
                f"padding would change the results. Received: length_buckets={buckets!r}"
            )
        table = self.spec.max_source_length
        if isinstance(buckets, tuple) and table is not None and buckets[-1] > table:
            raise ValueError(
                "`length_buckets` must be at most the encoder's learned position table "
                f"({table}). Received: length_buckets={buckets!r}"
            )

    def get_config(self):
        """The generation settings (everything but the model); the strategy serialized."""
        return {
            "strategy": keras.saving.serialize_keras_object(self.strategy),
            "max_length": self.max_length,
            "start_id": self.start_id,
            "end_id": self.end_id,
            "pad_id": self.pad_id,
            "jit_compile": self.jit_compile,
            "length_buckets": (
                list(self.length_buckets)
                if isinstance(self.length_buckets, tuple)
                else self.length_buckets
            ),
        }

    @classmethod
    def from_config(cls, config, model):
        """Rebuilds a generator from `get_config()` around `model`."""
        config = dict(config)
        config["strategy"] = keras.saving.deserialize_keras_object(config["strategy"])
        return cls(model, **config)

    # ------------------------------------------------------------------ API

    def generate(self, inputs, batch_size=None, verbose="auto", return_scores=False, seed=None):
        """Generates from `inputs`; see the class docstring for arguments and results."""
        inputs = self.check_inputs(inputs)
        _validation.check_optional_positive_int("batch_size", batch_size)
        if not (verbose == "auto" or (isinstance(verbose, int) and verbose in (0, 1, 2))):
            raise ValueError(f'`verbose` must be "auto", 0, 1 or 2. Received: verbose={verbose!r}')
        _validation.check_bool("return_scores", return_scores)
        if seed is None:
            seed = self.strategy.seed
        if seed is None:
            seed = int(np.random.randint(0, 2**31 - 1))
        strategies.check_seed(seed)
        if self.length_buckets is not None and self.spec.is_encoder_decoder:
            self._bucket_length(self._source_length(inputs))  # raises before any batch runs
        rows = len(inputs)
        batch_size = rows if batch_size is None else batch_size
        starts = range(0, rows, batch_size)
        if verbose == "auto":
            verbose = 1 if len(starts) > 1 else 0
        progbar = keras.utils.Progbar(rows, verbose=verbose, unit_name="row") if verbose else None
        token_ids, scores = [], []
        for start in starts:
            batch = inputs[start : start + batch_size]
            rows_in_batch = len(batch)
            if self.length_buckets is not None:
                batch = self._padded(batch, batch_size)
            batch_ids, batch_scores = self._compiled(batch, np.int32(seed))
            token_ids.append(ops.convert_to_numpy(batch_ids)[:rows_in_batch].astype("int32"))
            scores.append(ops.convert_to_numpy(batch_scores)[:rows_in_batch].astype("float32"))
            if progbar is not None:
                progbar.add(rows_in_batch)
        token_ids, scores = np.concatenate(token_ids), np.concatenate(scores)
        return (token_ids, scores) if return_scores else token_ids

    def check_inputs(self, inputs):
        """`inputs` as an int32 NumPy array, or a `ValueError` saying what is wrong.

        Used by `generate` and by the exports before the compiled loop runs
        (a check inside a compiled graph does not fire under XLA or JAX).

        Args:
            inputs: source ids (encoder-decoder) or prompts (decoder-only),
                see `generate`.

        Returns:
            An int32 array `(batch, length)`; for a decoder-only model,
            columns of padding beyond `max_length` dropped.

        Raises:
            ValueError: if the inputs cannot be generated from (see the
                class docstring).
        """
        array = self._integer_matrix(inputs)
        spec = self.spec
        low, high = array.min(), array.max()
        vocabulary_size, which = (
            (spec.source_vocabulary_size, "encoder")
            if spec.is_encoder_decoder
            else (spec.target_vocabulary_size, "decoder")
        )
        if low < 0 or high >= vocabulary_size:
            raise ValueError(
                f"`inputs` must be ids in [0, {vocabulary_size}) (the {which}'s "
                f"vocabulary). Received: inputs with values in [{low}, {high}]"
            )
        if spec.is_encoder_decoder:
            if spec.max_source_length is not None and array.shape[1] > spec.max_source_length:
                raise ValueError(
                    "`inputs` (source ids) must be at most as long as the encoder's learned "
                    f"position table ({spec.max_source_length}). "
                    f"Received: inputs.shape={array.shape}"
                )
            return array.astype("int32")
        return self._check_prompts(array).astype("int32")

    def _padded(self, batch, batch_size):
        """`batch` padded to its length bucket, and to `batch_size` rows (see `length_buckets`)."""
        if self.spec.is_encoder_decoder:
            length = self._source_length(batch)
            width = self._bucket_length(length)
        else:
            length = width = self.max_length
        columns = min(length, batch.shape[1])
        padded = np.full((batch_size, width), self.pad_id, "int32")
        padded[:, :columns] = batch[0, :columns]  # filler rows: copies of the first
        padded[: len(batch), :columns] = batch[:, :columns]
        return padded

    def _source_length(self, sources):
        """The columns of `sources` up to the last one holding a non-padding id (at least 1)."""
        used = np.flatnonzero(np.any(sources != self.pad_id, axis=0))
        return int(used[-1]) + 1 if len(used) else 1

    def _bucket_length(self, length):
        """The length a source of `length` tokens is padded to."""
        buckets = self.length_buckets
        if isinstance(buckets, int):
            width = -(-length // buckets) * buckets  # the next multiple
            table = self.spec.max_source_length
            return width if table is None else min(width, table)
        fitting = [bucket for bucket in buckets if bucket >= length]
        if not fitting:
            raise ValueError(
                f"`inputs` must hold sources of at most {buckets[-1]} tokens, the largest "
                f"of `length_buckets`. Received: a source of {length} tokens "
                f"with length_buckets={buckets!r}"
            )
        return fitting[0]

    def _integer_matrix(self, inputs):
        """`inputs` as a non-empty rank-2 integer NumPy array."""
        try:
            array = np.asarray(inputs)
        except (ValueError, TypeError):  # rows of different lengths
            array = None
        if array is None or array.dtype == object:
            raise ValueError(
                "`inputs` must be a rectangular integer array (batch, length), rows padded "
                f"with {self.pad_id}. Received: inputs={inputs!r}"
            )
        if array.dtype.kind not in "iu":
            raise ValueError(
                f"`inputs` must hold integer token ids. Received: inputs.dtype={array.dtype}"
            )
        _validation.check_rank("inputs", array.shape, 2, "(batch, length)")
        if array.size == 0:
            raise ValueError(
                "`inputs` must hold at least one row of at least one token. "
                f"Received: inputs.shape={array.shape}"
            )
        return array

    def _check_prompts(self, prompts):
        padding = prompts == self.pad_id
        empty = np.flatnonzero(padding[:, 0])
        if len(empty):
            row = int(empty[0])
            raise ValueError(
                "`inputs` must hold prompts of at least one token (a row may not start "
                f"with the padding id {self.pad_id}). "
                f"Received: inputs[{row}]={prompts[row].tolist()!r}"
            )
        # A token after padding: the prompt is not right-padded.
        inside = np.flatnonzero(np.any(padding[:, :-1] & ~padding[:, 1:], axis=1))
        if len(inside):
            row = int(inside[0])
            raise ValueError(
                f"`inputs` must hold prompts right-padded with the padding id {self.pad_id} "
                f"(no padding inside a prompt). Received: inputs[{row}]={prompts[row].tolist()!r}"
            )
        longest = int((~padding).sum(axis=1).max())
        if longest >= self.max_length:
            raise ValueError(
                f"`inputs` must hold prompts shorter than `max_length` ({self.max_length}), "
                f"leaving room to generate. Received: a prompt of {longest} tokens "
                f"(inputs.shape={prompts.shape})"
            )
        return prompts[:, : self.max_length]

    def generate_tensors(self, inputs, seed):
        """The traceable generation function behind `generate` (and the exports).

        Unlike `generate`, it does not check `inputs`: callers check them
        first with `check_inputs`, as `generate` and the exports do.

        Args:
            inputs: int32 tensor `(batch, length)`, checked source ids or
                prompts (decoder-only: at most `max_length` columns).
            seed: int32 scalar tensor, the sampling seed.

        Returns:
            `(token_ids, scores)`: int32 `(batch, max_new_tokens)`
            (encoder-decoder) or `(batch, max_length)` (decoder-only), float32
            `(batch,)`.
        """
        inputs = ops.convert_to_tensor(inputs, "int32")
        batch_size = ops.shape(inputs)[0]
        if self.spec.is_encoder_decoder:
            context = self.model.call_encoder(inputs)
            tokens = ops.full((batch_size, self.max_length), self.pad_id, "int32")
            start = ops.full((batch_size, 1), self.start_id, "int32")
            tokens = ops.slice_update(tokens, (0, 0), start)  # (batch, max_length)
            prompt_lengths = ops.ones((batch_size,), "int32")
        else:
            context = {}
            tokens = ops.full((batch_size, self.max_length), self.pad_id, "int32")
            tokens = ops.slice_update(tokens, (0, 0), inputs)  # (batch, max_length)
            prompt_lengths = ops.sum(ops.cast(inputs != self.pad_id, "int32"), axis=1)
        # Every position but the last is fed once; each has a cache slot.
        cache = self.model.initial_cache(batch_size, self.max_length)
        tokens, scores = self.strategy.search(
            self._next_logits,
            tokens,
            prompt_lengths,
            cache,
            context,
            seed,
            end_id=self.end_id,
            pad_id=self.pad_id,
            exclude=self.exclude_special_ids,
        )
        if self.spec.is_encoder_decoder:
            tokens = tokens[:, 1:]  # without the start token
        return tokens, scores

    def _next_logits(self, token_ids, index, cache, context):
        logits, cache = self.model.call_decoder_with_cache(token_ids, index, cache, context)
        return logits[:, 0, :], cache  # (batch, vocab)

    def exclude_special_ids(self, logits):
        """Sets the logits of `pad_id` and `start_id` to -1e9: neither is ever chosen.

        A generated padding id would be a hole the model masks; the start id
        only begins a sequence. Every strategy applies this before choosing,
        and so do the exported decoder steps.

        Args:
            logits: float tensor `(..., vocabulary_size)`.

        Returns:
            A tensor like `logits`, -1e9 at `pad_id` and `start_id`.
        """
        return ops.where(self._forbidden, strategies.FORBIDDEN, logits)
