"""Generation exports of a `Generator`: SavedModel signatures and TFLite files.

- `export_generation_saved_model`: a SavedModel whose `serving_default`
  signature runs the whole generation loop (ids in, generated ids and scores
  out), plus `decode_step` (and, for an encoder-decoder model, `encode`) for
  callers that drive the loop themselves. It loads with
  `tf.saved_model.load` alone, without this package.
- `export_generation_tflite`: the same loop as a `.tflite` file (a `WHILE`
  op, builtin ops only).
- `export_decode_step_tflite`: one decoder step (and, for an encoder-decoder
  model, `encode`) as `.tflite` files without control flow, for delegates
  that cannot run `WHILE`.
- `generation_signatures`: the same functions, to add to the forward
  SavedModel of `export_saved_model(extra_signatures=...)`.

Everything is built on `Generator` and the model's decoding interface
(`decoding_spec`, `call_encoder`, `initial_cache`, `call_decoder_with_cache`),
so encoder-decoder and decoder-only models export alike: an encoder-decoder
model takes `source_ids` (batch, source_len), a decoder-only model takes
`prompt_ids` (batch, prompt_len), right-padded prompts of any lengths (see
`Generator.generate`). The exporters write like the others of
`keras_transformer_layers.export`: a path that exists is refused unless
`overwrite=True`, the artifact is written into a fresh folder beside the
target and put in place in one step (a failure leaves the previous one and
no leftovers), and with `sample_inputs` the written artifact is run and
compared with `Generator.generate` before it replaces anything.

Inputs are checked in every runtime: ids outside the vocabulary, a source
longer than a learned position table, a prompt with an empty row or as long
as `max_length`, a step `index` outside the cache and a padding id fed to a
step raise `InvalidArgumentError` in the SavedModel (graph asserts) and make
a TFLite `invoke` raise `RuntimeError` (TFLite drops asserts, but its
`GATHER` refuses out-of-range indices), never a silent clamp.

The model's caches are tuples of one tensor per decoder block; the step
signatures take and return each as one tensor stacked on axis 1
(`self_attention_cache` `(batch, num_layers, 2, max_length, heads,
key_dim)`, `cross_attention_cache` likewise over the source), and split
them again before calling the model.
"""

import os

import keras
import numpy as np
import tensorflow as tf

from keras_transformer_layers import _validation
from keras_transformer_layers.export import _checks
from keras_transformer_layers.export import _converter
from keras_transformer_layers.export import _decoding
from keras_transformer_layers.export import _io
from keras_transformer_layers.export import saved_model
from keras_transformer_layers.export import tflite
from keras_transformer_layers.export import verify
from keras_transformer_layers.generation import Generator
from keras_transformer_layers.layers import decode_step

GENERATE_SIGNATURE = "generate"
ENCODE_SIGNATURE = "encode"
DECODE_STEP_SIGNATURE = "decode_step"
ENCODE_FILE = "encode.tflite"
DECODE_STEP_FILE = "decode_step.tflite"


def _check_generator(generator):
    if not isinstance(generator, Generator):
        raise ValueError(
            "`generator` must be a `keras_transformer_layers.generation.Generator`. "
            f"Received: generator={generator!r}"
        )


def check_encoder_decoder(generator):
    """Raises unless `generator` is a `Generator` of an encoder-decoder model."""
    _check_generator(generator)
    if not generator.spec.is_encoder_decoder:
        raise ValueError(
            "`generator` must drive an encoder-decoder model (source ids in); this "
            "one drives a decoder-only model. Received: generator with "
            f"model={generator.model!r}"
        )


def _input_name(generator):
    return "source_ids" if generator.spec.is_encoder_decoder else "prompt_ids"


def _check_input_len(name, length, generator):
    """A positive int or `None`; a source at most the encoder's learned table.

    A prompt may be any width: the graph checks its rows (see `_checked_inputs`).
    """
    _validation.check_optional_positive_int(name, length)
    limit = generator.spec.max_source_length if generator.spec.is_encoder_decoder else None
    if length is not None and limit is not None and length > limit:
        raise ValueError(
            f"`{name}` must be at most the encoder's learned position table ({limit}). "
            f"Received: {name}={length!r}"
        )


def _check_source_len(name, source_len, generator, required):
    """An encode/decode_step source length: only for encoder-decoder models."""
    if not generator.spec.is_encoder_decoder:
        if source_len is not None:
            raise ValueError(
                f"`{name}` must be None for a decoder-only model (it has no source). "
                f"Received: {name}={source_len!r}"
            )
        return
    if required:
        _validation.check_positive_int(name, source_len)
    _check_input_len(name, source_len, generator)


def export_seed(generator):
    """The sampling seed baked into the exported graphs: the strategy's, else 0."""
    seed = generator.strategy.seed
    return 0 if seed is None else seed


def _fail_closed(ids, ok, message, *data):
    """`ids`, after a check of `ok` that fails in every runtime.

    The SavedModel runs the assert, with `message`. TFLite drops asserts, so
    `ids` also goes through the decoder's guard (`decode_step.fail_closed`),
    whose failing lookup makes `invoke` raise instead of running on.
    """
    check = tf.debugging.Assert(ok, [message, *data])
    with tf.control_dependencies([check]):
        return decode_step.fail_closed(ids, ok)


def _checked_inputs(generator, ids):
    """The generator's input ids, checked in the graph (see the module docstring)."""
    spec = generator.spec
    name = _input_name(generator)
    if spec.is_encoder_decoder:
        # The encoder's embedding GATHER refuses bad ids and lengths in TFLite.
        return saved_model.check_token_ids(
            name, ids, spec.source_vocabulary_size, table_length=spec.max_source_length
        )
    # As `Generator.check_inputs`: rows of at least one token, right-padded,
    # shorter than `max_length`; the decoder embedding refuses bad ids.
    ids = saved_model.check_token_ids(name, ids, spec.target_vocabulary_size)
    padding = ids == generator.pad_id  # (batch, length)
    lengths = tf.reduce_sum(tf.cast(tf.logical_not(padding), tf.int32), axis=1)  # (batch,)
    ids = _fail_closed(
        ids,
        tf.logical_not(tf.reduce_any(padding[:, :1])),
        f"`{name}` must hold prompts of at least one token (a row may not start "
        f"with the padding id {generator.pad_id}). Received: {name} with row lengths",
        lengths,
    )
    ids = _fail_closed(
        ids,
        tf.logical_not(tf.reduce_any(padding[:, :-1] & tf.logical_not(padding[:, 1:]))),
        f"`{name}` must hold prompts right-padded with the padding id "
        f"{generator.pad_id} (no padding inside a prompt). Received: {name}",
        ids,
    )
    longest = tf.reduce_max(lengths)
    ids = _fail_closed(
        ids,
        longest < generator.max_length,
        f"`{name}` must hold prompts shorter than `max_length` ({generator.max_length}), "
        "leaving room to generate. Received: a prompt of length",
        longest,
    )
    return ids[:, : generator.max_length]  # only padding beyond


def _checked_index(index, max_length):
    """The cache position `index`, checked to lie in `[0, max_length)`.

    The SavedModel runs the assert (with this message); the decoder's own
    guard makes the step fail in TFLite too.
    """
    return _fail_closed(
        index,
        tf.logical_and(index >= 0, index < max_length),
        f"`index` must be in [0, {max_length}). Received: index=",
        index,
    )


def _generate_function(generator, shape):
    seed = export_seed(generator)

    def generate(ids):
        token_ids, scores = generator.generate_tensors(
            _checked_inputs(generator, ids), tf.constant(seed, tf.int32)
        )
        return {"token_ids": token_ids, "scores": scores}

    return tf.function(
        generate,
        input_signature=[tf.TensorSpec(shape, tf.int32, name=_input_name(generator))],
    )


def _decode_step_function(generator, batch_size, state_specs, to_state):
    """One cached decoder step as a `tf.function` of named tensors (no control flow)."""
    model = generator.model
    max_length = generator.max_length
    cache_template = model.initial_cache(1, max_length)
    cache = _decoding.stacked(cache_template)  # (1, layers, 2, max_length, h, d)
    cache_spec = tf.TensorSpec(
        (batch_size,) + tuple(cache.shape[1:]), cache.dtype, name="self_attention_cache"
    )
    token_spec = tf.TensorSpec((batch_size, 1), tf.int32, name="token_ids")
    index_spec = tf.TensorSpec((), tf.int32, name="index")
    vocabulary_size = generator.spec.target_vocabulary_size

    @tf.function(input_signature=[token_spec, index_spec, cache_spec, *state_specs])
    def decode_step(token_ids, index, self_attention_cache, *state_values):
        token_ids = saved_model.check_token_ids("token_ids", token_ids, vocabulary_size)
        named = {spec.name: value for spec, value in zip(state_specs, state_values, strict=True)}
        logits, self_attention_cache = model.call_decoder_with_cache(
            token_ids,
            _checked_index(index, max_length),
            _decoding.per_block(self_attention_cache, cache_template),
            to_state(named),
        )
        # As in `generate`: padding and start ids are never the next token.
        logits = generator.exclude_special_ids(logits[:, -1, :])  # (batch, logits_size)
        return {"logits": logits, "self_attention_cache": _decoding.stacked(self_attention_cache)}

    return decode_step


def _step_functions(generator, batch_size, source_len):
    """`{"encode": ..., "decode_step": ...}` (`encode` for encoder-decoder models).

    Both are built on the model's decoding interface: `call_encoder`,
    `initial_cache` and `call_decoder_with_cache`.
    """
    if not generator.spec.is_encoder_decoder:
        return {DECODE_STEP_SIGNATURE: _decode_step_function(generator, batch_size, [], dict)}
    ids_spec = tf.TensorSpec((batch_size, source_len), tf.int32, name="source_ids")
    encode, to_state = _decoding.encode_function(
        generator.model,
        ids_spec,
        lambda ids: _checked_inputs(generator, ids),
        max_length=generator.max_length,
    )
    traced = encode.get_concrete_function().structured_outputs
    state_specs = [
        tf.TensorSpec(value.shape, value.dtype, name=name)
        for name, value in sorted(traced.items())
        if name != "self_attention_cache"
    ]
    return {
        ENCODE_SIGNATURE: encode,
        DECODE_STEP_SIGNATURE: _decode_step_function(generator, batch_size, state_specs, to_state),
    }


def _module(functions):
    """A `tf.Module` tracking every variable the traced functions read."""
    module = tf.Module()
    variables = {}
    for function in functions:
        for variable in function.get_concrete_function().variables:
            variables[id(variable)] = variable
    module.generation_variables = list(variables.values())
    return module


def generation_signatures(generator, step_batch_size=1, step_source_len=None):
    """The generation signatures of `generator`, as `tf.function`s by name.

    `"generate"` runs the whole loop (`source_ids` or `prompt_ids` in,
    `token_ids` and `scores` out); `"decode_step"` and, for an
    encoder-decoder model, `"encode"` are the single-step functions
    described in `export_generation_saved_model`. Pass the dict to
    `keras_transformer_layers.export.export_saved_model(extra_signatures=...)`
    to put them in the same SavedModel as the forward pass.

    Args:
        generator: a `keras_transformer_layers.generation.Generator`.
        step_batch_size: positive int or `None`, the batch size of the
            `encode`/`decode_step` signatures. Defaults to `1`.
        step_source_len: positive int or `None`, their source length, at
            most the encoder's learned position table if it has one; `None`
            for a decoder-only model. Defaults to `None` (any).

    Returns:
        A dict from signature name to `tf.function`.

    Raises:
        ValueError: for an argument of the wrong type or out of range.

    Example:

    ```python
    export.export_saved_model(
        model, "/tmp/sm", extra_signatures=generation_signatures(generator))
    ```
    """
    _check_generator(generator)
    _validation.check_optional_positive_int("step_batch_size", step_batch_size)
    _check_source_len("step_source_len", step_source_len, generator, required=False)
    return {
        GENERATE_SIGNATURE: _generate_function(generator, (None, None)),
        **_step_functions(generator, step_batch_size, step_source_len),
    }


def _generation_reference(generator):
    """`Generator.generate` as a callable of the signature's keyword input."""
    name = _input_name(generator)
    seed = export_seed(generator)

    def generate(**inputs):
        token_ids, scores = generator.generate(
            inputs[name], return_scores=True, seed=seed, verbose=0
        )
        return {"token_ids": token_ids, "scores": scores}

    return generate


def _verified(report, artifact, generator, sample_inputs, signature=None):
    """Adds the comparison of `artifact` with `generator.generate` to `report`."""
    report["max_abs_diff"] = None
    report["token_agreement"] = None
    if sample_inputs is not None:
        sample_inputs = np.asarray(generator.check_inputs(sample_inputs))
        result = verify.verify_export(
            artifact,
            _generation_reference(generator),
            {_input_name(generator): sample_inputs},
            signature=signature,
        )
        report.update(result)
    return report


def export_generation_saved_model(
    generator, path, step_batch_size=1, step_source_len=None, sample_inputs=None, overwrite=False
):
    """Saves `generator`'s generation loop as a TensorFlow SavedModel.

    The SavedModel needs only TensorFlow to run. Its signatures:

    - `serving_default`: `source_ids` (encoder-decoder) or `prompt_ids`
      (decoder-only), int32 `(batch, length)` with any batch and length, to
      `token_ids` int32 (encoder-decoder `(batch, max_new_tokens)`,
      decoder-only `(batch, max_length)`) and `scores` float32 `(batch,)`,
      exactly as `Generator.generate` returns them, the whole
      loop in one `WHILE`. A sampling generator uses its strategy's seed
      (or 0).
    - `encode` (encoder-decoder only): `source_ids` to the encoder state
      (`source_mask` as int32 and `cross_attention_cache`) and a zero
      `self_attention_cache`.
    - `decode_step`: `token_ids` `(batch, 1)`, `index` in
      `[0, max_length)` (the generator's `max_length`, the cache slots),
      `self_attention_cache` (a decoder-only model
      starts from zeros of the input's shape) and the encoder state, to the
      next-token `logits` `(batch, logits_size)` and the updated
      `self_attention_cache`, with no control flow. A decoder-only caller
      feeds the prompt one token per step (`index` = 0, 1, ...), then its
      own choices. The step's logits of `pad_id` and `start_id` are -1e9,
      as in `generate`, so an arg-max or sampling loop never picks them.

    Bad ids, lengths and indices raise `InvalidArgumentError` when a
    signature runs. The SavedModel is written into a fresh folder next to
    `path`, checked against the generator with `sample_inputs`, and put in
    place in one step; any failure leaves `path` as it was.

    Args:
        generator: a `keras_transformer_layers.generation.Generator`.
        path: string or path, the SavedModel folder. It must not exist or be
            empty unless `overwrite=True`.
        step_batch_size: positive int or `None`, the batch size of the
            `encode`/`decode_step` signatures. Defaults to `1`.
        step_source_len: positive int or `None`, their source length, at
            most the encoder's learned position table if it has one; `None`
            for a decoder-only model. Defaults to `None` (any).
        sample_inputs: optional int array `(batch, length)` of source ids or
            prompts; when given, `serving_default` is run on it and compared
            with `generator.generate`. Defaults to `None`.
        overwrite: bool, replace an existing artifact at `path`. Defaults to
            `False`.

    Returns:
        A dict with `"path"` (absolute), `"signatures"` (sorted names) and,
        with `sample_inputs`, `"max_abs_diff"` (of the scores) and
        `"token_agreement"` (see `verify_export`); otherwise those two are
        `None`.

    Raises:
        ValueError: for an argument of the wrong type or out of range, or
            an existing `path` without `overwrite=True`.
        OSError: the SavedModel cannot be written (`path` is left as it was).

    Example:

    ```python
    export_generation_saved_model(generator, "/tmp/generator")
    serve = tf.saved_model.load("/tmp/generator").signatures["serving_default"]
    serve(source_ids=tf.constant([[5, 6, 7]]))["token_ids"]
    ```
    """
    _check_generator(generator)
    path = _checks.check_output_path("path", path, overwrite, kind="folder")
    functions = generation_signatures(generator, step_batch_size, step_source_len)
    signatures = {
        saved_model.DEFAULT_SIGNATURE if name == GENERATE_SIGNATURE else name: function
        for name, function in functions.items()
    }
    module = _module(functions.values())
    with _io.written_aside(path, overwrite) as new:
        tf.saved_model.save(module, new, signatures=signatures)
        report = {"path": path, "signatures": sorted(signatures)}
        _verified(report, new, generator, sample_inputs, saved_model.DEFAULT_SIGNATURE)
    return report


def _check_tflite(caller, generator, batch_size, quantization):
    _checks.require_litert(caller)
    _check_generator(generator)
    _validation.check_positive_int("batch_size", batch_size)
    _checks.check_quantization(quantization)
    cache = generator.model.initial_cache(1, 1)
    _checks.check_float32(
        "generator", [keras.backend.standardize_dtype(t.dtype) for t in keras.tree.flatten(cache)]
    )


def _check_sample_shape(sample_inputs, generator, batch_size, input_len):
    """Raises unless `sample_inputs` fits the file's fixed batch size and input length."""
    if sample_inputs is None:
        return
    shape = np.shape(generator.check_inputs(sample_inputs))
    if shape[0] != batch_size:
        raise ValueError(
            "`sample_inputs` must have `batch_size` rows: the file's batch size is "
            f"fixed. Received: batch_size={batch_size}, sample_inputs.shape={shape}"
        )
    if input_len is not None and shape[1] != input_len:
        raise ValueError(
            "`sample_inputs` must have `input_len` columns: the file's input length "
            f"is fixed. Received: input_len={input_len}, sample_inputs.shape={shape}"
        )


def _write_tflite(function, module, path, quantization):
    """Writes `function` as a `.tflite` file of builtin ops; returns its sizes and ops."""
    with open(path, "wb") as f:
        f.write(_converter.convert(function, module, quantization))
    return {"size_bytes": os.path.getsize(path), "op_names": tflite.tflite_op_names(path)}


def export_generation_tflite(
    generator,
    path,
    batch_size=1,
    input_len=None,
    sample_inputs=None,
    overwrite=False,
    quantization=None,
):
    """Writes `generator`'s whole generation loop as a `.tflite` file.

    The loop becomes a TFLite `WHILE` op; only builtin ops are used, so the
    standalone LiteRT interpreter (`ai-edge-litert`) runs it. The model
    takes `source_ids` (encoder-decoder) or `prompt_ids` (decoder-only),
    int32 `(batch_size, input_len)`, and returns `token_ids` int32
    (encoder-decoder `(batch_size, max_new_tokens)`, decoder-only
    `(batch_size, max_length)`) and `scores` float32 `(batch_size,)`, as
    `Generator.generate` does. With `input_len=None` resize the input (the
    signature runner does it for you). A sampling generator uses its
    strategy's seed (or 0). The weights are frozen into the file.

    The file is written, read back and (with `sample_inputs`) run in a
    fresh folder next to `path`, then put in place in one step: any failure
    leaves `path` as it was.

    Args:
        generator: a `keras_transformer_layers.generation.Generator` whose
            model computes in float32.
        path: output file ending in `.tflite`. It must not exist unless
            `overwrite=True`.
        batch_size: positive int, the fixed batch size. Defaults to `1`.
        input_len: positive int or `None`, the source length (at most the
            encoder's learned position table if it has one) or the prompt
            length (at most `max_length - 1`). Defaults to `None` (any).
        sample_inputs: optional int array of `batch_size` rows (and
            `input_len` columns when it is set); when given, the file is run
            on it and compared with `generator.generate`. Defaults to `None`.
        overwrite: bool, replace an existing file. Defaults to `False`.
        quantization: `None` (float32 weights), `"float16"` (float16
            weights) or `"dynamic_int8"`: the converter's dynamic-range
            quantization, int8 weights (4x fewer bytes) for every weight
            matrix of at least 1024 elements; activations, the caches and
            smaller tensors stay float32, so the file shrinks less than 4x.
            The same choices as `export_tflite`. Greedy tokens can differ
            from the float32 generator's: check `"token_agreement"` with
            `sample_inputs` (see docs/quantization.md). Defaults to `None`.

    Returns:
        A dict with `"path"`, `"quantization"`, `"size_bytes"`,
        `"op_names"` (sorted distinct op names) and, with `sample_inputs`,
        `"max_abs_diff"` (of the scores) and `"token_agreement"`;
        otherwise those two are `None`.

    Raises:
        ModuleNotFoundError: `ai-edge-litert` is not installed (checked
            before anything is written).
        ValueError: for an argument of the wrong type or out of range, or
            `sample_inputs` whose shape is not `(batch_size, input_len)`.
        FileExistsError: with `overwrite=False`, another writer created
            `path` while this export ran; it is left as that writer left it.
        OSError: the file cannot be written (`path` is left as it was).

    Example:

    ```python
    report = export_generation_tflite(generator, "/tmp/generate.tflite", input_len=8)
    runner = ai_edge_litert.interpreter.Interpreter(
        model_path=report["path"]).get_signature_runner()
    runner(source_ids=source_ids)["token_ids"]
    ```
    """
    _check_tflite("export_generation_tflite", generator, batch_size, quantization)
    _check_input_len("input_len", input_len, generator)
    _check_sample_shape(sample_inputs, generator, batch_size, input_len)
    path = _checks.check_output_path("path", path, overwrite, kind="file", suffix=".tflite")
    function = _generate_function(generator, (batch_size, input_len))
    module = _module([function])
    with _io.written_aside(path, overwrite) as new:
        report = {
            "path": path,
            "quantization": quantization,
            **_write_tflite(function, module, new, quantization),
        }
        _verified(report, new, generator, sample_inputs)
    return report


def export_decode_step_tflite(
    generator, directory, batch_size=1, source_len=None, overwrite=False, quantization=None
):
    """Writes one decoder step (and `encode`) as `.tflite` files without control flow.

    Delegates that cannot run `WHILE` run these; the caller loops, feeding
    back `self_attention_cache` and the next token with `index` = 0, 1, ...
    (see `export_generation_saved_model` for the tensors). `directory` gets
    `decode_step.tflite` and, for an encoder-decoder model, `encode.tflite`
    (`source_ids` of shape `(batch_size, source_len)` to the encoder state
    and the zero cache). A decoder-only caller starts from a zero
    `self_attention_cache` of the step input's shape and feeds the prompt
    one token per step. Only builtin ops are used.

    The folder with both files is written next to `directory` and put in
    place in one step; any failure leaves `directory` as it was.

    Args:
        generator: a `keras_transformer_layers.generation.Generator` whose
            model computes in float32.
        directory: output folder. It must not exist or be empty unless
            `overwrite=True`.
        batch_size: positive int. Defaults to `1`.
        source_len: positive int, the (padded) source length of an
            encoder-decoder model, at most the encoder's learned position
            table if it has one; `None` for a decoder-only model. Defaults
            to `None`.
        overwrite: bool, replace an existing `directory`. Defaults to
            `False`.
        quantization: `None` (float32 weights), `"float16"` or
            `"dynamic_int8"` (int8 weights for the matrix products, float32
            activations and caches), for both files; as in
            `export_generation_tflite`. Defaults to `None`.

    Returns:
        A dict with `"path"` (the absolute folder), `"quantization"`, and
        `"files"`, `"size_bytes"` and `"op_names"`, each a dict by
        signature name (`"encode"`, `"decode_step"`).

    Raises:
        ModuleNotFoundError: `ai-edge-litert` is not installed.
        ValueError: for an argument of the wrong type or out of range.
        OSError: the files cannot be written (`directory` is left as it was).

    Example:

    ```python
    report = export_decode_step_tflite(generator, "/tmp/step", source_len=8)
    report["files"]["decode_step"]  # '/tmp/step/decode_step.tflite'
    ```
    """
    _check_tflite("export_decode_step_tflite", generator, batch_size, quantization)
    _check_source_len("source_len", source_len, generator, required=True)
    path = _checks.check_output_path("directory", directory, overwrite, kind="folder")
    functions = _step_functions(generator, batch_size, source_len)
    module = _module(functions.values())
    file_names = {ENCODE_SIGNATURE: ENCODE_FILE, DECODE_STEP_SIGNATURE: DECODE_STEP_FILE}
    report = {
        "path": path,
        "quantization": quantization,
        "files": {},
        "size_bytes": {},
        "op_names": {},
    }
    with _io.written_aside(path, overwrite) as new:
        os.mkdir(new)
        for name, function in functions.items():
            converted = _write_tflite(
                function, module, os.path.join(new, file_names[name]), quantization
            )
            report["files"][name] = os.path.join(path, file_names[name])
            report["size_bytes"][name] = converted["size_bytes"]
            report["op_names"][name] = converted["op_names"]
    return report
