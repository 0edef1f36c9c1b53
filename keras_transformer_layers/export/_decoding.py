"""The decoding interface at a signature boundary: its state as named tensors.

The models' caches and encoder state hold tuples of one tensor per decoder
block and a boolean source mask; a signature takes and returns named
tensors, which serving and TFLite callers feed more easily as one stacked
tensor and as int32. The exporters convert here, at their boundary, and
convert back before calling `call_decoder_with_cache`.
"""

import keras
import tensorflow as tf


def stacked(value):
    """A per-block tuple as one tensor stacked on axis 1 (a tensor is returned as is)."""
    if isinstance(value, (list, tuple)):
        return tf.stack(value, axis=1)  # (batch, layers, ...)
    return value


def per_block(value, template):
    """The signature tensor `value` in the form of `template` (a per-block tuple or a tensor)."""
    if isinstance(template, (list, tuple)):
        return tuple(tf.unstack(value, num=len(template), axis=1))
    return value


def _is_bool(template):
    return keras.tree.flatten(template)[0].dtype == tf.bool


def encode_function(model, ids_spec, check_ids, max_length=None):
    """`model.call_encoder` as a traced `tf.function` of named tensors.

    Args:
        model: a model with the decoding interface, encoder-decoder.
        ids_spec: the `tf.TensorSpec` of the source ids (its name is the
            signature's input name).
        check_ids: function of the ids returning them after graph checks.
        max_length: optional int; when given, the outputs also hold the zero
            `self_attention_cache` of that many positions.

    Returns:
        `(encode, to_state)`: `encode(ids)` returns the encoder state by name
        (per-block tuples stacked on axis 1, booleans as int32);
        `to_state(named)` turns a dict holding those names back into the
        state `call_decoder_with_cache` takes.
    """
    templates = {}

    @tf.function(input_signature=[ids_spec])
    def encode(ids):
        state = model.call_encoder(check_ids(ids))
        templates.update(state)
        outputs = {
            name: tf.cast(stacked(value), tf.int32) if _is_bool(value) else stacked(value)
            for name, value in state.items()
        }
        if max_length is not None:
            outputs["self_attention_cache"] = stacked(
                model.initial_cache(tf.shape(ids)[0], max_length)
            )
        return outputs

    encode.get_concrete_function()  # traces it, which fills `templates`

    def to_state(named):
        return {
            name: per_block(tf.cast(named[name], tf.bool) if _is_bool(t) else named[name], t)
            for name, t in templates.items()
        }

    return encode, to_state
