"""Boolean attention masks (True = attend) and the masked softmax, on `keras.ops`.

Keras propagates padding masks shaped `(batch, seq_len)`; attention needs one
mask shaped `(batch, query_len, key_len)`. These helpers build it, and
`masked_softmax` is the one place where a mask meets the attention logits.
"""

from keras import ops

# Masked logits are filled before the float32 softmax. A fill near the lowest
# float32 value keeps every masked key below every real one, however large the
# logits (-1e9 does not: real logits can be lower); being finite, it keeps a
# row whose keys are all masked free of NaN. Such rows are zeroed afterwards.
MASKED_SCORE = -3.0e38


def masked_softmax(scores, mask=None, axis=-1):
    """`softmax(scores)` over `axis` in float32, exactly 0 where `mask` is False.

    The masking rule of every attention computation of the package: a masked
    key gets exactly zero weight, so a query whose keys are all masked gets
    all-zero weights (no NaN, in every dtype).

    Args:
        scores: float tensor of attention logits.
        mask: optional boolean tensor broadcastable to `scores`, True where a
            query may attend.
        axis: int or tuple of non-negative ints, the key axes normalized
            over. Defaults to `-1`.

    Returns:
        A float32 tensor shaped like `scores`.
    """
    scores = ops.cast(scores, "float32")
    if mask is None:
        return _softmax(scores, axis)
    weights = _softmax(ops.where(mask, scores, MASKED_SCORE), axis)
    return ops.where(mask, weights, 0.0)


def _softmax(scores, axis):
    """`exp(s - max s) / sum exp(s - max s)` over `axis` (an int or a tuple of ints).

    Written out rather than left to the backend's softmax kernel, so that a
    saturated row (one logit ahead of the others by more than ~17, so that
    their `exp` underflows) gives weights of exactly 1 and 0 and a gradient
    of exactly 0 on every backend. TensorFlow's Eigen kernel (the one that
    runs where oneDNN is off: `TF_ENABLE_ONEDNN_OPTS=0`, or a CPU on which
    TensorFlow does not turn oneDNN on) returns `1 - 2**-24` for such a row;
    the softmax gradient `(g - sum(g p)) p` is then `2**-24 g` on the leading
    logit instead of 0, and the gradient with respect to the query and key,
    that times the key and query, is dominated by it once the activations are
    large (10.7x the true input gradient of an encoder block at inputs of
    1e4, in every dtype). The max is a constant of the softmax (the result
    does not depend on it), so no gradient flows through it.
    """
    shifted = scores - ops.stop_gradient(ops.max(scores, axis=axis, keepdims=True))
    exponentials = ops.exp(shifted)
    return exponentials / ops.sum(exponentials, axis=axis, keepdims=True)


def causal_mask(query_len, key_len, query_start=0):
    """Lower-triangular mask: query `query_start + i` may attend key `j <= query_start + i`.

    Args:
        query_len: int or scalar tensor, number of query positions.
        key_len: int or scalar tensor, number of key positions.
        query_start: int or scalar tensor, absolute position of the first
            query (non-zero when decoding step by step over a cache).
            Defaults to `0`.

    Returns:
        A boolean tensor of shape `(1, query_len, key_len)`.
    """
    query_positions, key_positions = _positions(query_len, key_len, query_start)
    return ops.expand_dims(query_positions >= key_positions, 0)  # (1, query_len, key_len)


def sliding_window_mask(query_len, key_len, window, query_start=0):
    """Band mask: query `query_start + i` may attend key `j` when `|query_start + i - j| < window`.

    Args:
        query_len: int or scalar tensor, number of query positions.
        key_len: int or scalar tensor, number of key positions.
        window: positive int, the width of the band on each side (the
            query's own position included).
        query_start: int or scalar tensor, absolute position of the first
            query. Defaults to `0`.

    Returns:
        A boolean tensor of shape `(1, query_len, key_len)`.
    """
    query_positions, key_positions = _positions(query_len, key_len, query_start)
    return ops.expand_dims(ops.abs(query_positions - key_positions) < window, 0)


def _positions(query_len, key_len, query_start):
    """Absolute positions `(query_len, 1)` of the queries and `(1, key_len)` of the keys."""
    query_positions = ops.arange(query_len, dtype="int32") + ops.cast(query_start, "int32")
    key_positions = ops.arange(key_len, dtype="int32")
    return ops.expand_dims(query_positions, 1), ops.expand_dims(key_positions, 0)


def merge_masks(*masks):
    """Logical AND of broadcastable boolean masks, skipping `None`s.

    Returns `None` when every mask is `None`.
    """
    merged = None
    for mask in masks:
        if mask is None:
            continue
        mask = ops.cast(mask, "bool")
        merged = mask if merged is None else ops.logical_and(merged, mask)
    return merged


def attention_mask_from_padding(query_mask=None, key_mask=None):
    """Combines `(batch, query_len)` and `(batch, key_len)` padding masks.

    Returns:
        A boolean tensor broadcastable to `(batch, query_len, key_len)`, or
        `None` when both masks are `None`.
    """
    if query_mask is not None:
        query_mask = ops.expand_dims(query_mask, -1)  # (batch, query_len, 1)
    if key_mask is not None:
        key_mask = ops.expand_dims(key_mask, -2)  # (batch, 1, key_len)
    return merge_masks(query_mask, key_mask)
