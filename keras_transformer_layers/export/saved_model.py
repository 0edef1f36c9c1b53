"""SavedModel export with named signatures (forward, encoder, text, extras)."""

import collections

import keras
import tensorflow as tf

from keras_transformer_layers.export import _io

FORWARD_SIGNATURE = "forward"
ENCODER_SIGNATURE = "encoder"
TEXT_SIGNATURE = "translate"
DEFAULT_SIGNATURE = "serving_default"

ExportSignature = collections.namedtuple(
    "ExportSignature", ["function", "input_signature", "track"], defaults=[()]
)
ExportSignature.__doc__ = """A function to save as a SavedModel signature.

Fields:
    function: callable taking tensors matching `input_signature` and
        returning a dict of named tensors.
    input_signature: list of `tf.TensorSpec` (names become the signature's
        input names), or `None` when `function` is a `tf.function` that
        already has one.
    track: layers, models or `tf.Module`s holding variables or lookup tables
        that `function` uses besides the exported model's own. Defaults to
        `()`.
"""


def _input_specs(model):
    """One `tf.TensorSpec` per flat model input, named after the input."""
    specs = []
    for tensor in keras.tree.flatten(model.input):
        name = tensor.name.split(":")[0]
        specs.append(tf.TensorSpec(tensor.shape, tensor.dtype, name=name))
    return specs


def token_id_limits(model):
    """`{input name: (vocabulary_size, table_length)}` for inputs read by embeddings.

    `vocabulary_size` is the smallest table of the `PositionalEmbedding` or
    `keras.layers.Embedding` layers that read the input directly;
    `table_length` the smallest learned position table among them, or `None`.
    """
    from keras_transformer_layers.layers.positional import PositionalEmbedding

    inputs = {id(t): t.name.split(":")[0] for t in keras.tree.flatten(model.input)}
    limits = {}
    for layer in model.layers:
        if isinstance(layer, PositionalEmbedding):
            size = layer.vocabulary_size
            length = layer.sequence_length if layer.learned_positions else None
        elif isinstance(layer, keras.layers.Embedding):
            size, length = layer.input_dim, None
        else:
            continue
        try:
            read = keras.tree.flatten(layer.input)
        except (AttributeError, ValueError):
            continue  # not called in this model's graph
        for tensor in read:
            name = inputs.get(id(tensor))
            if name is None:
                continue
            old_size, old_length = limits.get(name, (size, length))
            lengths = [n for n in (old_length, length) if n is not None]
            limits[name] = (min(old_size, size), min(lengths) if lengths else None)
    return limits


def check_token_ids(name, ids, vocabulary_size, table_length=None):
    """`ids` after graph asserts that they fit the embedding tables.

    The asserts run wherever the SavedModel runs, with TensorFlow alone:
    ids outside `[0, vocabulary_size)` and, with `table_length`, sequences
    longer than a learned position table raise `InvalidArgumentError`
    naming `name`, instead of reading another row of the table.
    """
    ids = tf.convert_to_tensor(ids)
    valid = tf.logical_and(
        ids >= tf.constant(0, ids.dtype), ids < tf.constant(vocabulary_size, ids.dtype)
    )
    checks = [
        tf.debugging.Assert(
            tf.reduce_all(valid),
            [
                f"`{name}` must hold token ids in [0, {vocabulary_size}). "
                f"Received: {name} with smallest id",
                tf.reduce_min(ids),
                "and largest id",
                tf.reduce_max(ids),
            ],
        )
    ]
    if table_length is not None:
        length = tf.shape(ids)[-1]
        checks.append(
            tf.debugging.Assert(
                length <= table_length,
                [
                    f"`{name}` must be at most {table_length} tokens long (the "
                    f"learned position table). Received: {name} of length",
                    length,
                ],
            )
        )
    with tf.control_dependencies(checks):
        return tf.identity(ids)


def _output_names(model):
    names = list(getattr(model, "output_names", None) or [])
    count = len(keras.tree.flatten(model.output))
    if len(names) != count or len(set(names)) != count:
        names = [f"output_{i}" for i in range(count)]
    return names


def forward_function(model):
    """The model's inference pass as a function of named tensors.

    Args:
        model: a Keras model with inputs (functional, or called once).

    Returns:
        `(fn, input_signature)`: `fn(*flat_inputs)` returns a dict from output
        name (for `build_transformer` models, `"logits"`) to tensor, with
        `training=False`; `input_signature` is a list of `tf.TensorSpec`
        named after the model's inputs, batch and lengths dynamic. Inputs
        read by an embedding are checked in the graph: ids outside the
        vocabulary, or sequences longer than a learned position table,
        raise `tf.errors.InvalidArgumentError` naming the input.

    Example:

    ```python
    fn, signature = forward_function(model)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("forward", fn, input_signature=signature)
    ```
    """
    _io.check_model(model)
    specs = _input_specs(model)
    names = _output_names(model)
    structure = model.input
    limits = token_id_limits(model)

    def forward(*flat_inputs):
        flat_inputs = [
            check_token_ids(spec.name, x, *limits[spec.name]) if spec.name in limits else x
            for spec, x in zip(specs, flat_inputs, strict=True)
        ]
        inputs = keras.tree.pack_sequence_as(structure, list(flat_inputs))
        outputs = keras.tree.flatten(model(inputs, training=False))
        return dict(zip(names, outputs, strict=True))

    return forward, specs


def encoder_function(model, encoder_layer="encoder", encoder_input="encoder_inputs"):
    """The encoder stack alone, for models built like `build_transformer`.

    Args:
        model: a functional model with an input named `encoder_input` and a
            layer named `encoder_layer`.
        encoder_layer: string, name of the encoder stack layer. Defaults to
            `"encoder"`.
        encoder_input: string, name of the source ids input. Defaults to
            `"encoder_inputs"`.

    Returns:
        `(fn, input_signature)` with `fn(encoder_inputs)` returning
        `{"encoder_outputs": (batch, source_len, model_dim)}`, or `None` when
        the model has no such input or layer. Ids are checked like in
        `forward_function`.

    Raises:
        ValueError: if the encoder layer was first called in another model
            (its output is not connected to `model`'s input).

    Example:

    ```python
    fn, signature = encoder_function(build_transformer(100, 100))
    ```
    """
    _io.check_model(model)
    source = [t for t in keras.tree.flatten(model.input) if t.name.split(":")[0] == encoder_input]
    layer_names = {layer.name for layer in model.layers}
    if len(source) != 1 or encoder_layer not in layer_names:
        return None
    try:
        encoder = keras.Model(source[0], model.get_layer(encoder_layer).output, name="encoder_only")
    except ValueError:
        # Keras records the output of a layer's first call: from another model,
        # it is not connected to this model's input.
        raise ValueError(
            f"The `{ENCODER_SIGNATURE}` signature needs the output of the layer "
            f"`{encoder_layer}` in `model`, but that layer was first called in another "
            f"model, whose output is not connected to `model`'s `{encoder_input}`. Build "
            "`model` from layers called only in it, or export the model they were first "
            f"called in. Received: model={model.name!r}"
        ) from None
    spec = tf.TensorSpec(source[0].shape, source[0].dtype, name=encoder_input)
    limits = token_id_limits(model).get(encoder_input)

    def encode(encoder_inputs):
        if limits is not None:
            encoder_inputs = check_token_ids(encoder_input, encoder_inputs, *limits)
        return {"encoder_outputs": encoder(encoder_inputs, training=False)}

    return encode, [spec]


def export_saved_model(
    model,
    path,
    extra_signatures=None,
    text_translator=None,
    overwrite=False,
    track=None,
):
    """Writes a SavedModel that TensorFlow alone (and TF Serving) can run.

    Signatures:

    - `"forward"` (also `"serving_default"`): the model's inputs (for
      `build_transformer`, int32 `encoder_inputs` and `decoder_inputs`,
      `(batch, None)`) to `{"logits": ...}` or the model's named outputs.
    - `"encoder"`: `encoder_inputs` to `{"encoder_outputs": ...}`, when the
      model has an `"encoder_inputs"` input and an `"encoder"` layer.
    - `"translate"`: string in, string out, when `text_translator` is given
      (see `text_translation_function`).
    - one per entry of `extra_signatures`, e.g. the generation and
      single-step functions of `generation_signatures`.

    The weights are stored as variables of the SavedModel; loading needs no
    Python code from this package. The token-id inputs of `forward` and
    `encoder` are checked in the graph: an id outside the vocabulary of the
    embedding that reads it (negative ids included), or a sequence longer
    than a learned position table, raises `InvalidArgumentError` naming the
    input when the SavedModel runs, with TensorFlow alone.

    The artifact is written to a staging folder next to `path` and renamed
    into place; with `overwrite=True` the previous artifact is renamed aside
    first and deleted only once the new one is in place. Any failure leaves
    `path` exactly as it was (absent, or the previous artifact intact), and
    a staging folder left by a killed process is cleaned up by the next
    export into the same folder.

    Args:
        model: Keras model with inputs.
        path: output folder. It must not exist or be empty unless
            `overwrite=True`.
        extra_signatures: optional dict from signature name to either a
            `tf.function` created with an `input_signature`, a pair
            `(callable, input_signature)` or an `ExportSignature`. Defaults
            to `None`.
        text_translator: optional `ExportSignature` from
            `text_translation_function`. Defaults to `None`.
        overwrite: bool, replace an existing `path`. Defaults to `False`.
        track: optional list of extra layers, models or `tf.Module`s whose
            variables or lookup tables the extra signatures use (the model
            itself is always tracked). Defaults to `None`.

    Returns:
        The sorted list of signature names written.

    Raises:
        ValueError: a bad argument (`path` exists without `overwrite=True`,
            a reserved signature name, a model without inputs, an `encoder`
            layer first called in another model).
        OSError: the artifact cannot be written (read-only or full disk);
            `path` is left as it was.

    Example:

    ```python
    model = keras_transformer_layers.build_transformer(100, 100, num_layers=1)
    export_saved_model(model, "/tmp/transformer_savedmodel")
    loaded = tf.saved_model.load("/tmp/transformer_savedmodel")
    logits = loaded.signatures["forward"](
        encoder_inputs=tf.constant([[5, 6, 7]]),
        decoder_inputs=tf.constant([[1, 7]]))["logits"]
    ```
    """
    _io.check_model(model)
    path = _io.check_output_path("path", path, overwrite)
    extra_signatures = dict(extra_signatures or {})
    reserved = {FORWARD_SIGNATURE, ENCODER_SIGNATURE, DEFAULT_SIGNATURE}
    if text_translator is not None:
        reserved.add(TEXT_SIGNATURE)
    clashes = sorted(reserved.intersection(extra_signatures))
    if clashes:
        raise ValueError(
            "`extra_signatures` may not reuse the names of the built-in "
            f"signatures {sorted(reserved)}. Received: extra_signatures keys "
            f"{sorted(extra_signatures)}"
        )

    archive = keras.export.ExportArchive()
    archive.track(model)
    for resource in track or []:
        archive.track(resource)

    forward, forward_specs = forward_function(model)
    endpoints = {FORWARD_SIGNATURE: (forward, forward_specs)}
    encoder = encoder_function(model)
    if encoder is not None:
        endpoints[ENCODER_SIGNATURE] = encoder
    if text_translator is not None:
        endpoints[TEXT_SIGNATURE] = text_translator
    for name, entry in extra_signatures.items():
        if isinstance(entry, ExportSignature):
            endpoints[name] = entry
        elif isinstance(entry, (tuple, list)) and len(entry) == 2:
            endpoints[name] = ExportSignature(*entry)
        elif callable(entry):
            endpoints[name] = ExportSignature(entry, None)
        else:
            raise ValueError(
                f"Each `extra_signatures` entry must be a `tf.function` with an "
                f"input signature or a pair (callable, input_signature). "
                f"Received: extra_signatures[{name!r}]={entry!r}"
            )

    for name, endpoint in endpoints.items():
        endpoint = ExportSignature(*endpoint)
        for resource in endpoint.track:
            archive.track(resource)
        archive.add_endpoint(name, endpoint.function, input_signature=endpoint.input_signature)
    # TF Serving and `saved_model_cli run` default to "serving_default".
    archive.add_endpoint(DEFAULT_SIGNATURE, forward, input_signature=forward_specs)

    with _io.atomic_output(path) as staging:
        archive.write_out(staging, verbose=False)
    return sorted(list(endpoints) + [DEFAULT_SIGNATURE])
