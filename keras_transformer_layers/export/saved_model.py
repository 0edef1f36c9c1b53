"""SavedModel export with named signatures (forward, encoder, text, extras)."""

import collections

import keras
import tensorflow as tf

from keras_transformer_layers.export import _checks
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
    _checks.check_model(model)
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


def encoder_function(model):
    """The encoder of a model with the decoding interface, as a signature function.

    Built on `model.call_encoder`, the call generators and the generation
    exports use, so no layer is looked up by name.

    Args:
        model: a Keras model.

    Returns:
        `(fn, input_signature)` with `fn(source_ids)`, int32
        `(batch, source_len)`, returning the encoder state: `"source_mask"`
        int32 `(batch, source_len)` (1 = a real token) and
        `"cross_attention_cache"` `(batch, num_layers, 2, source_len, heads,
        key_dim)`, the per-block tensors stacked on axis 1, as the
        `decode_step` signature of `generation_signatures` takes them. `None`
        for a model without the decoding interface or without an encoder.
        Ids are checked like in `forward_function`.

    Example:

    ```python
    fn, signature = encoder_function(build_transformer(100, 100))
    ```
    """
    from keras_transformer_layers.export import _decoding

    _checks.check_model(model)
    spec = getattr(model, "decoding_spec", None)
    if spec is None or not spec.is_encoder_decoder:
        return None

    def check_ids(source_ids):
        return check_token_ids(
            "source_ids", source_ids, spec.source_vocabulary_size, spec.max_source_length
        )

    ids_spec = tf.TensorSpec((None, None), tf.int32, name="source_ids")
    encode, _ = _decoding.encode_function(model, ids_spec, check_ids)
    return encode, None


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
    - `"encoder"`: for a model with the decoding interface and an encoder
      (`build_transformer`), `source_ids` to the encoder state
      `{"source_mask", "cross_attention_cache"}` (see `encoder_function`).
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

    The artifact is written into a fresh folder next to `path`, then put in
    place in one step (see `keras_transformer_layers.export` for what that
    guarantees); any failure leaves `path` as it was.

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
        A dict with `"path"` (absolute) and `"signatures"` (the sorted names
        written).

    Raises:
        ValueError: a bad argument (`path` exists without `overwrite=True`,
            a reserved signature name, a model without inputs).
        FileExistsError: with `overwrite=False`, another writer created
            `path` while this export ran; it is left as that writer left it.
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
    _checks.check_model(model)
    path = _checks.check_output_path("path", path, overwrite, kind="folder")
    endpoints = _endpoints(model, text_translator, extra_signatures)
    archive = keras.export.ExportArchive()
    archive.track(model)
    for resource in track or []:
        archive.track(resource)
    for name, endpoint in endpoints.items():
        for resource in endpoint.track:
            archive.track(resource)
        archive.add_endpoint(name, endpoint.function, input_signature=endpoint.input_signature)
    with _io.written_aside(path, overwrite) as new:
        archive.write_out(new, verbose=False)
    return {"path": path, "signatures": sorted(endpoints)}


def _extra_signature(name, entry):
    if isinstance(entry, ExportSignature):
        return entry
    if isinstance(entry, (tuple, list)) and len(entry) == 2:
        return ExportSignature(*entry)
    if callable(entry):
        return ExportSignature(entry, None)
    raise ValueError(
        f"Each `extra_signatures` entry must be a `tf.function` with an "
        f"input signature or a pair (callable, input_signature). "
        f"Received: extra_signatures[{name!r}]={entry!r}"
    )


def _endpoints(model, text_translator, extra_signatures):
    """Every signature of `export_saved_model`, by name, as `ExportSignature`s."""
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
    forward = ExportSignature(*forward_function(model))
    # TF Serving and `saved_model_cli run` default to "serving_default".
    endpoints = {FORWARD_SIGNATURE: forward, DEFAULT_SIGNATURE: forward}
    encoder = encoder_function(model)
    if encoder is not None:
        endpoints[ENCODER_SIGNATURE] = ExportSignature(*encoder)
    if text_translator is not None:
        endpoints[TEXT_SIGNATURE] = ExportSignature(*text_translator)
    for name, entry in extra_signatures.items():
        endpoints[name] = _extra_signature(name, entry)
    return endpoints
