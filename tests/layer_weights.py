"""Reads our layers' weights into the dicts that `numpy_reference` expects."""

import keras
import numpy as np


def attention_params(layer):
    return {
        "query_kernel": keras.ops.convert_to_numpy(layer.query_dense.kernel),
        "query_bias": keras.ops.convert_to_numpy(layer.query_dense.bias),
        "key_kernel": keras.ops.convert_to_numpy(layer.key_dense.kernel),
        "key_bias": keras.ops.convert_to_numpy(layer.key_dense.bias),
        "value_kernel": keras.ops.convert_to_numpy(layer.value_dense.kernel),
        "value_bias": keras.ops.convert_to_numpy(layer.value_dense.bias),
        "output_kernel": keras.ops.convert_to_numpy(layer.output_dense.kernel),
        "output_bias": keras.ops.convert_to_numpy(layer.output_dense.bias),
    }


def _norm(layer_norm, add_norm):
    """(gamma, beta) of a pre-norm LayerNorm, or of the LayerNorm in a post-norm AddNorm."""
    layer_norm = add_norm.layer_norm if layer_norm is None else layer_norm
    return keras.ops.convert_to_numpy(layer_norm.gamma), keras.ops.convert_to_numpy(layer_norm.beta)


def block_params(block):
    params = {
        "self_attention": attention_params(block.self_attention),
        "self_attention_norm": _norm(
            block.self_attention_layer_norm, block.self_attention_add_norm
        ),
        "feed_forward": [
            keras.ops.convert_to_numpy(block.feed_forward.intermediate_dense.kernel),
            keras.ops.convert_to_numpy(block.feed_forward.intermediate_dense.bias),
            keras.ops.convert_to_numpy(block.feed_forward.output_dense.kernel),
            keras.ops.convert_to_numpy(block.feed_forward.output_dense.bias),
        ],
        "feed_forward_norm": _norm(block.feed_forward_layer_norm, block.feed_forward_add_norm),
    }
    if getattr(block, "cross_attention", None) is not None:
        params["cross_attention"] = attention_params(block.cross_attention)
        params["cross_attention_norm"] = _norm(
            block.cross_attention_layer_norm, block.cross_attention_add_norm
        )
    return params


def randomize(layer, scale=0.3):
    """Gives every weight (biases and LayerNorm offsets included) random values."""
    for weight in layer.weights:
        values = np.random.normal(size=weight.shape) * scale
        if weight.path.endswith("gamma"):
            values += 1.0
        weight.assign(values.astype("float32"))
