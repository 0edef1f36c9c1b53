"""Exports of `TranslationGenerator`: SavedModel signatures and TFLite flat buffers.

- `export_generation_saved_model`: a SavedModel whose signatures run the whole
  decoding loop (`serving_default`: source ids in, generated ids and scores
  out), plus `encode` and `decode_step` for callers that drive the loop
  themselves. It loads with `tf.saved_model.load` alone, without this package.
- `generation_tflite`: the same decoding loop as a TFLite model (a `WHILE`
  op, builtin ops only).
- `decode_step_tflite`: `encode` and one decoder step as two TFLite models
  without control flow, for delegates that cannot run `WHILE`.

Inputs are checked in every runtime: ids outside the vocabulary, a source
longer than a learned position table and a step `index` outside the cache
raise `InvalidArgumentError` in the SavedModel (graph asserts) and make a
TFLite `invoke` raise `RuntimeError` (TFLite drops asserts, but its `GATHER`
refuses out-of-range indices), never a silent clamp.
"""


import tensorflow as tf

from keras_transformer_layers import _validation
from keras_transformer_layers.decoding.generator import TranslationGenerator
from keras_transformer_layers.export import _io
from keras_transformer_layers.export import saved_model


def _check_generator(generator):
    if not isinstance(generator, TranslationGenerator):
        raise ValueError(
            "`generator` must be a `keras_transformer_layers.decoding.TranslationGenerator`. "
            f"Received: generator={generator!r}"
        )


def _check_source_len(name, source_len, generator):
    _validation.check_optional_positive_int(name, source_len)
    limit = generator.max_source_length
    if source_len is not None and limit is not None and source_len > limit:
        raise ValueError(
            f"`{name}` must be at most the encoder's learned position table ({limit}). "
            f"Received: {name}={source_len!r}"
        )


def _checked_source_ids(generator, source_ids):
    return saved_model.check_token_ids(
        "source_ids",
        source_ids,
        generator.source_vocabulary_size,
        max_length=generator.max_source_length,
    )


def _checked_index(index, max_length):
    """The cache position `index`, checked to lie in `[0, max_length)`.

    The SavedModel runs the asserts; TFLite drops them, so the index is also
    read through a gather, whose bounds check makes `invoke` fail instead.
    """
    message = f"`index` must be in [0, {max_length})"
    checks = [
        tf.debugging.assert_non_negative(index, message=message),
        tf.debugging.assert_less(index, max_length, message=message),
    ]
    with tf.control_dependencies(checks):
        # A negative index is sent past the end, where the gather fails.
        index = tf.where(index < 0, max_length, index)
    return tf.gather(tf.range(max_length), index)


def _generation_function(generator, source_shape):
    def generate(source_ids):
        token_ids, scores = generator.generate_tensors(
            _checked_source_ids(generator, source_ids),
            tf.constant(generator.seed or 0, tf.int32),
        )
        return {"token_ids": token_ids, "scores": scores}

    return tf.function(
        generate,
        input_signature=[tf.TensorSpec(source_shape, tf.int32, name="source_ids")],
    )


def _step_functions(generator, batch_size, source_len):
    decoder = generator._layers["decoder"]
    attention = decoder.blocks[0].self_attention
    cache_shape = (
        batch_size,
        decoder.num_layers,
        2,
        generator.max_length,
        attention.num_heads,
        attention.key_dim,
    )
    cross_shape = cache_shape[:3] + (source_len,) + cache_shape[4:]

    @tf.function(
        input_signature=[tf.TensorSpec((batch_size, source_len), tf.int32, name="source_ids")]
    )
    def encode(source_ids):
        source_mask, cross_cache = generator.encode(_checked_source_ids(generator, source_ids))
        return {
            "source_mask": tf.cast(source_mask, tf.int32),
            "cross_attention_cache": cross_cache,
            "self_attention_cache": generator.initial_cache(tf.shape(source_ids)[0]),
        }

    @tf.function(
        input_signature=[
            tf.TensorSpec((batch_size, 1), tf.int32, name="token_ids"),
            tf.TensorSpec((), tf.int32, name="index"),
            tf.TensorSpec(cache_shape, decoder.compute_dtype, name="self_attention_cache"),
            tf.TensorSpec(cross_shape, decoder.compute_dtype, name="cross_attention_cache"),
            tf.TensorSpec((batch_size, source_len), tf.int32, name="source_mask"),
        ]
    )
    def decode_step(token_ids, index, self_attention_cache, cross_attention_cache, source_mask):
        token_ids = saved_model.check_token_ids("token_ids", token_ids, generator.vocabulary_size)
        index = _checked_index(index, generator.max_length)
        logits, self_attention_cache = generator.decode_step(
            token_ids,
            index,
            self_attention_cache,
            cross_attention_cache,
            tf.cast(source_mask, tf.bool),
        )
        # As in `generate`: padding and start ids are never the next token.
        logits = generator.exclude_special_ids(logits)
        return {"logits": logits, "self_attention_cache": self_attention_cache}

    return encode, decode_step


def _module(generator):
    module = tf.Module()
    # Track the model's variables so that the SavedModel stores them.
    module.model_variables = [variable.value for variable in generator.model.variables]
    return module


def generation_signatures(generator, step_batch_size=1, step_source_len=None):
    """The decoding signatures of `generator`, as `tf.function`s by name.

    `generate` runs the whole loop (`source_ids` in, `token_ids` and `scores`
    out); `encode` and `decode_step` are the single-step pair described in
    `export_generation_saved_model`. Pass the dict to
    `keras_transformer_layers.export.export_saved_model(extra_signatures=...)`
    to put them in the same SavedModel as the forward pass.

    Args:
        generator: a `TranslationGenerator`.
        step_batch_size: positive int or `None`, the batch size of the
            `encode`/`decode_step` signatures. Defaults to `1`.
        step_source_len: positive int or `None`, their source length, at
            most the encoder's learned position table if it has one.
            Defaults to `None` (any).

    Returns:
        A dict `{"generate": ..., "encode": ..., "decode_step": ...}`.

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
    _check_source_len("step_source_len", step_source_len, generator)
    encode, decode_step = _step_functions(generator, step_batch_size, step_source_len)
    return {
        "generate": _generation_function(generator, (None, None)),
        "encode": encode,
        "decode_step": decode_step,
    }


def export_generation_saved_model(
    generator, path, step_batch_size=1, step_source_len=None, overwrite=False
):
    """Saves `generator`'s decoding as a TensorFlow SavedModel.

    The SavedModel holds three signatures and needs only TensorFlow to run:
    `serving_default` (`source_ids` int32 `(batch, source_len)`, any batch and
    length, to `token_ids` int32 `(batch, max_length)` and `scores` float32
    `(batch,)`, the whole loop in one `WHILE`), and the single-step pair
    `encode` (`source_ids` to `source_mask`, `cross_attention_cache` and a zero
    `self_attention_cache`) and `decode_step` (`token_ids` `(batch, 1)`,
    `index` in `[0, max_length)`, both caches and `source_mask` to next-token
    `logits` and the updated `self_attention_cache`), with no control flow.
    The step's `logits` of `pad_id` and `start_id` are -1e9, as in
    `generate`, so an arg-max or sampling loop never picks them. Bad ids,
    lengths and indices raise `InvalidArgumentError` when a signature runs.

    Args:
        generator: a `TranslationGenerator`.
        path: string or path, the SavedModel directory.
        step_batch_size: positive int or `None`, the batch size of the
            `encode`/`decode_step` signatures. Defaults to `1`.
        step_source_len: positive int or `None`, their source length, at
            most the encoder's learned position table if it has one.
            Defaults to `None` (any).
        overwrite: bool, replace an existing artifact at `path`. The new
            SavedModel is written aside and swapped in, so a failure leaves
            `path` as it was. Defaults to `False`.

    Returns:
        `path`, as an absolute path.

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
    path = _io.check_output_path("path", path, overwrite)
    signatures = generation_signatures(generator, step_batch_size, step_source_len)
    module = _module(generator)
    module.generate = signatures["generate"]
    module.encode = signatures["encode"]
    module.decode_step = signatures["decode_step"]
    with _io.atomic_output(path) as staging:
        tf.saved_model.save(
            module,
            staging,
            signatures={
                "serving_default": module.generate,
                "encode": module.encode,
                "decode_step": module.decode_step,
            },
        )
    return path


def _convert(concrete_function, module):
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete_function], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def generation_tflite(generator, batch_size=1, source_len=None):
    """Converts `generator`'s whole decoding loop to a TFLite flat buffer.

    The loop becomes a TFLite `WHILE` op; only builtin ops are used. The
    model takes `source_ids` int32 `(batch_size, source_len)` and returns
    `token_ids` int32 `(batch_size, max_length)` and `scores` float32.
    With `source_len=None` the interpreter's input is resized to the source
    length before `allocate_tensors()`.

    Args:
        generator: a `TranslationGenerator`.
        batch_size: positive int, the fixed batch size. Defaults to `1`.
        source_len: positive int or `None`, at most the encoder's learned
            position table if it has one. Defaults to `None`.

    Returns:
        The flat buffer, `bytes`.

    Raises:
        ValueError: for an argument of the wrong type or out of range.

    Example:

    ```python
    flat_buffer = generation_tflite(generator, batch_size=1, source_len=8)
    interpreter = ai_edge_litert.interpreter.Interpreter(model_content=flat_buffer)
    ```
    """
    _check_generator(generator)
    _validation.check_positive_int("batch_size", batch_size)
    _check_source_len("source_len", source_len, generator)
    module = _module(generator)
    function = _generation_function(generator, (batch_size, source_len))
    return _convert(function.get_concrete_function(), module)


def decode_step_tflite(generator, batch_size=1, source_len=8):
    """Converts `encode` and one decoding step to two TFLite flat buffers.

    Neither contains control flow, so delegates that cannot run `WHILE` can
    run them; the caller loops, feeding back `self_attention_cache` and the
    next token, with `index` = 0, 1, ... (see
    `export_generation_saved_model` for the tensors).

    Args:
        generator: a `TranslationGenerator`.
        batch_size: positive int. Defaults to `1`.
        source_len: positive int, the (padded) source length, at most the
            encoder's learned position table if it has one. Defaults to `8`.

    Returns:
        `(encode_flat_buffer, decode_step_flat_buffer)`.

    Raises:
        ValueError: for an argument of the wrong type or out of range.

    Example:

    ```python
    encode_tflite, step_tflite = decode_step_tflite(generator, 1, 8)
    ```
    """
    _check_generator(generator)
    _validation.check_positive_int("batch_size", batch_size)
    _validation.check_positive_int("source_len", source_len)
    _check_source_len("source_len", source_len, generator)
    module = _module(generator)
    encode, decode_step = _step_functions(generator, batch_size, source_len)
    return (
        _convert(encode.get_concrete_function(), module),
        _convert(decode_step.get_concrete_function(), module),
    )
