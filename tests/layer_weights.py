"""Reads our layers' weights into the dicts that `numpy_reference` expects."""

import numpy as np


def attention_params(layer):
    return {
        "query_kernel": np.asarray(layer.query_dense.kernel),
        "query_bias": np.asarray(layer.query_dense.bias),
        "key_kernel": np.asarray(layer.key_dense.kernel),
        "key_bias": np.asarray(layer.key_dense.bias),
        "value_kernel": np.asarray(layer.value_dense.kernel),
        "value_bias": np.asarray(layer.value_dense.bias),
        "output_kernel": np.asarray(layer.output_dense.kernel),
        "output_bias": np.asarray(layer.output_dense.bias),
    }


def _norm(block, name):
    if block.normalize_first:
        layer_norm = getattr(block, f"{name}_layer_norm")
    else:
        layer_norm = getattr(block, f"{name}_add_norm").layer_norm
    return np.asarray(layer_norm.gamma), np.asarray(layer_norm.beta)


def block_params(block):
    params = {
        "self_attention": attention_params(block.self_attention),
        "self_attention_norm": _norm(block, "self_attention"),
        "feed_forward": [
            np.asarray(block.feed_forward.intermediate_dense.kernel),
            np.asarray(block.feed_forward.intermediate_dense.bias),
            np.asarray(block.feed_forward.output_dense.kernel),
            np.asarray(block.feed_forward.output_dense.bias),
        ],
        "feed_forward_norm": _norm(block, "feed_forward"),
    }
    if getattr(block, "cross_attention", None) is not None:
        params["cross_attention"] = attention_params(block.cross_attention)
        params["cross_attention_norm"] = _norm(block, "cross_attention")
    return params


def randomize(layer, scale=0.3):
    """Gives every weight (biases and LayerNorm offsets included) random values."""
    for weight in layer.weights:
        values = np.random.normal(size=weight.shape) * scale
        if weight.path.endswith("gamma"):
            values += 1.0
        weight.assign(values.astype("float32"))
