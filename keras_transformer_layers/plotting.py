"""Pictures of attention heads and positional encodings (matplotlib).

Needs the optional extra: `pip install ".[plot]"` (from the repository root).
The helpers draw on a private `matplotlib.figure.Figure` with the Agg canvas,
so they never touch pyplot's global state or need a display.
"""

import math
import os

import keras
import numpy as np


def _figure(width, height):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(
            "Plotting needs matplotlib. Install the extra from the repository "
            'root: pip install ".[plot]"'
        ) from error
    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path):
    directory = os.path.dirname(os.fspath(path))
    if directory:
        os.makedirs(directory, exist_ok=True)
    figure.savefig(path, format="png", dpi=100, bbox_inches="tight")


def _labels(name, tokens, expected):
    tokens = [str(t) for t in tokens]
    if len(tokens) != expected:
        raise ValueError(
            f"`{name}` must have one label per position ({expected}). "
            f"Received: {name} of length {len(tokens)}"
        )
    return tokens


def plot_attention_heads(scores, query_tokens, key_tokens, path, title=None, columns=4):
    """Draws one heatmap per attention head and writes a PNG.

    Row `i` of head `h` shows how much query position `i` attends to each key
    position: the softmax weights of equation (1) of the paper, one row per
    query, summing to 1. Works with the scores of any attention layer, such
    as `keras.layers.MultiHeadAttention(..., return_attention_scores=True)` or
    the package's `MultiHeadAttention`.

    Args:
        scores: array-like `(heads, query_len, key_len)`, or
            `(1, heads, query_len, key_len)` for a batch of one.
        query_tokens: list of `query_len` labels (decoder tokens for
            cross-attention).
        key_tokens: list of `key_len` labels (encoder tokens for
            cross-attention).
        path: str, the PNG file to write.
        title: optional str, the figure title. Defaults to `None`.
        columns: positive int, heads per row of the grid. Defaults to `4`.

    Returns:
        The `matplotlib.figure.Figure`, with one axes per head.

    Example:

    ```python
    _, scores = attention(query, key, return_attention_scores=True)
    plot_attention_heads(scores[0], list("2014-07-01"), list("1 July 2014"),
                         "attention.png", title="cross-attention")
    ```
    """
    scores = np.asarray(keras.ops.convert_to_numpy(scores), dtype="float32")
    if scores.ndim == 4 and scores.shape[0] == 1:
        scores = scores[0]
    if scores.ndim != 3:
        raise ValueError(
            "`scores` must be shaped (heads, query_len, key_len) or "
            f"(1, heads, query_len, key_len). Received: scores.shape={scores.shape}"
        )
    if isinstance(columns, bool) or not isinstance(columns, int) or columns <= 0:
        raise ValueError(f"`columns` must be a positive integer. Received: columns={columns!r}")
    heads, query_len, key_len = scores.shape
    query_tokens = _labels("query_tokens", query_tokens, query_len)
    key_tokens = _labels("key_tokens", key_tokens, key_len)
    columns = min(columns, heads)
    rows = math.ceil(heads / columns)
    cell = 0.25 * max(query_len, key_len) + 1.0
    figure = _figure(columns * cell, rows * cell)
    for head in range(heads):
        axes = figure.add_subplot(rows, columns, head + 1)
        axes.imshow(scores[head], cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        axes.set_xticks(range(key_len), key_tokens, rotation=90, fontsize=8)
        axes.set_yticks(range(query_len), query_tokens, fontsize=8)
        axes.set_title(f"head {head}", fontsize=9)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    _save(figure, path)
    return figure


def plot_positional_encoding(encoding, path, title=None):
    """Draws the positional-encoding matrix (position x dimension) as a PNG.

    For the sinusoidal encoding of section 3.5 of the paper, dimension pairs
    `(2i, 2i+1)` hold `sin` and `cos` of `pos / 10000^(2i/d_model)`: fast
    stripes on the left, slow ones on the right.

    Args:
        encoding: array-like `(length, depth)`, or `(1, length, depth)`, such
            as the output of the package's `PositionalEncoding` layer.
        path: str, the PNG file to write.
        title: optional str, the figure title. Defaults to `None`.

    Returns:
        The `matplotlib.figure.Figure`: the heatmap axes and its colour bar.

    Example:

    ```python
    plot_positional_encoding(table, "positional_encoding.png",
                             title="sinusoidal encoding, d_model=128")
    ```
    """
    encoding = np.asarray(keras.ops.convert_to_numpy(encoding), dtype="float32")
    if encoding.ndim == 3 and encoding.shape[0] == 1:
        encoding = encoding[0]
    if encoding.ndim != 2:
        raise ValueError(
            f"`encoding` must be shaped (length, depth). Received: encoding.shape={encoding.shape}"
        )
    figure = _figure(8, 5)
    axes = figure.add_subplot(1, 1, 1)
    image = axes.imshow(encoding, cmap="RdBu", vmin=-1.0, vmax=1.0, aspect="auto")
    axes.set_xlabel("dimension")
    axes.set_ylabel("position")
    figure.colorbar(image, ax=axes)
    if title:
        axes.set_title(title)
    _save(figure, path)
    return figure
