"""Boolean attention masks (True = attend), as pure functions on `keras.ops`.

Keras propagates padding masks shaped `(batch, seq_len)`; attention needs one
mask shaped `(batch, query_len, key_len)`. These helpers build it.
"""

from keras import ops


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
    query_positions = ops.arange(query_len) + ops.cast(query_start, "int32")
    key_positions = ops.arange(key_len)
    mask = ops.greater_equal(
        ops.expand_dims(query_positions, 1), ops.expand_dims(key_positions, 0)
    )  # (query_len, key_len)
    return ops.expand_dims(mask, 0)  # (1, query_len, key_len)


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
