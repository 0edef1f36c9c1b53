"""The paper's equations in plain NumPy: an independent reference for the tests.

Written from Vaswani et al. (2017) and Ba et al. (2016) directly. It never
imports `keras_transformer_layers`: tests copy a layer's weights into these
functions and compare outputs.
"""

import numpy as np


def positional_encoding(length, dim, start=0, max_wavelength=10000.0):
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...) (section 3.5)."""
    table = np.zeros((length, dim))
    for pos in range(start, start + length):
        for channel in range(dim):
            angle = pos / max_wavelength ** ((channel - channel % 2) / dim)
            table[pos - start, channel] = np.sin(angle) if channel % 2 == 0 else np.cos(angle)
    return table


def softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def attention(q, k, v, mask=None):
    """Equation (1): softmax(Q K^T / sqrt(d_k)) V for one head.

    q (Tq, dk), k (Tk, dk), v (Tk, dv), mask (Tq, Tk) booleans, True = attend.
    A row with no allowed key attends to nothing and returns zeros.
    Returns (output (Tq, dv), weights (Tq, Tk)).
    """
    scores = q @ k.T / np.sqrt(q.shape[-1])
    if mask is None:
        weights = softmax(scores)
    else:
        weights = np.zeros_like(scores)
        for row in range(scores.shape[0]):
            allowed = mask[row]
            if allowed.any():
                weights[row, allowed] = softmax(scores[row, allowed])
    return weights @ v, weights


def multi_head_attention(query, value, params, mask=None, key=None):
    """Section 3.2.2 for one example: Concat(head_1..head_h) W^O.

    query (Tq, d), value/key (Tk, d_in). params holds kernels in the Keras
    layout: "query"/"key"/"value" kernels (d_in, h, dk) with biases (h, dk),
    "output" kernel (h, dv, d) with bias (d,). Returns (output, weights (h, Tq, Tk)).
    """
    key = value if key is None else key
    num_heads = params["query_kernel"].shape[1]
    heads, all_weights = [], []
    for head in range(num_heads):
        q = query @ params["query_kernel"][:, head] + params["query_bias"][head]
        k = key @ params["key_kernel"][:, head] + params["key_bias"][head]
        v = value @ params["value_kernel"][:, head] + params["value_bias"][head]
        out, weights = attention(q, k, v, mask)
        heads.append(out)
        all_weights.append(weights)
    concatenated = np.concatenate(heads, axis=-1)  # (Tq, h * dv)
    output_kernel = params["output_kernel"].reshape(-1, params["output_kernel"].shape[-1])
    return concatenated @ output_kernel + params["output_bias"], np.stack(all_weights)


def layer_norm(x, gamma, beta, epsilon):
    """Ba et al. (2016): biased variance, epsilon inside the square root."""
    mean = x.mean(axis=-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + epsilon) * gamma + beta


def add_norm(x, sublayer_output, gamma, beta, epsilon):
    """Section 3.1: LayerNorm(x + Sublayer(x))."""
    return layer_norm(x + sublayer_output, gamma, beta, epsilon)


def feed_forward(x, w1, b1, w2, b2):
    """Equation (2): max(0, x W1 + b1) W2 + b2."""
    return np.maximum(0.0, x @ w1 + b1) @ w2 + b2


def _sublayer(x, fn, norm, normalize_first, epsilon):
    """Post-norm LN(x + F(x)) or pre-norm x + F(LN(x)); norm = (gamma, beta)."""
    if normalize_first:
        return x + fn(layer_norm(x, *norm, epsilon))
    return layer_norm(x + fn(x), *norm, epsilon)


def padding_to_attention_mask(query_mask, key_mask):
    return query_mask[:, None] & key_mask[None, :]


def encoder_block(x, params, mask, epsilon, normalize_first=False):
    """Figure 1 (left), one example: x (T, d), mask (T,) booleans."""
    attention_mask = padding_to_attention_mask(mask, mask)
    x = _sublayer(
        x,
        lambda h: multi_head_attention(h, h, params["self_attention"], attention_mask)[0],
        params["self_attention_norm"],
        normalize_first,
        epsilon,
    )
    return _sublayer(
        x,
        lambda h: feed_forward(h, *params["feed_forward"]),
        params["feed_forward_norm"],
        normalize_first,
        epsilon,
    )


def decoder_block(y, memory, params, mask, memory_mask, epsilon, normalize_first=False):
    """Figure 1 (right), one example: y (T, d), memory (S, d), masks booleans."""
    length = y.shape[0]
    causal = np.tril(np.ones((length, length), dtype=bool))
    self_mask = padding_to_attention_mask(mask, mask) & causal
    cross_mask = padding_to_attention_mask(mask, memory_mask)
    y = _sublayer(
        y,
        lambda h: multi_head_attention(h, h, params["self_attention"], self_mask)[0],
        params["self_attention_norm"],
        normalize_first,
        epsilon,
    )
    y = _sublayer(
        y,
        lambda h: multi_head_attention(h, memory, params["cross_attention"], cross_mask)[0],
        params["cross_attention_norm"],
        normalize_first,
        epsilon,
    )
    return _sublayer(
        y,
        lambda h: feed_forward(h, *params["feed_forward"]),
        params["feed_forward_norm"],
        normalize_first,
        epsilon,
    )


def encoder_stack(x, blocks, mask, epsilon, normalize_first=False, final_norm=None):
    """Section 3.1: N encoder blocks in turn; returns the list of every block's output.

    `blocks` holds each block's params; `final_norm` (gamma, beta) is the
    pre-norm stack's closing LayerNorm, applied to every returned output.
    """
    outputs = []
    for params in blocks:
        x = encoder_block(x, params, mask, epsilon, normalize_first)
        outputs.append(x)
    if final_norm is not None:
        outputs = [layer_norm(output, *final_norm, epsilon) for output in outputs]
    return outputs


def decoder_stack(
    y, memories, blocks, mask, memory_mask, epsilon, normalize_first=False, final_norm=None
):
    """N decoder blocks in turn; block i attends to `memories[i]`.

    The paper (section 3.1) passes the last encoder output N times; the
    layer-wise connection passes encoder block i's output to decoder block i.
    """
    for params, memory in zip(blocks, memories, strict=True):
        y = decoder_block(y, memory, params, mask, memory_mask, epsilon, normalize_first)
    if final_norm is not None:
        y = layer_norm(y, *final_norm, epsilon)
    return y
