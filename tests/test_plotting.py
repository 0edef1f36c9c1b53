import numpy as np
import pytest

from keras_transformer_layers import plotting

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    data = path.read_bytes()
    return len(data) > 1000 and data.startswith(_PNG_MAGIC)


def _sinusoid(length, depth):
    # Section 3.5 of the paper, for a realistic picture.
    positions = np.arange(length)[:, None]
    rates = 1.0 / 10000 ** (2 * (np.arange(depth) // 2) / depth)
    angles = positions * rates
    return np.where(np.arange(depth) % 2 == 0, np.sin(angles), np.cos(angles))


@pytest.mark.parametrize("heads, columns, rows", [(4, 4, 1), (6, 4, 2), (1, 4, 1)])
def test_attention_heads_png_and_axes(tmp_path, heads, columns, rows):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(heads, 3, 5))
    scores = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    path = tmp_path / "sub" / "attention.png"
    figure = plotting.plot_attention_heads(
        scores, ["a", "b", "c"], list("vwxyz"), str(path), title="t", columns=columns
    )
    assert _is_png(path)
    assert len(figure.axes) == heads
    assert figure.axes[-1].get_gridspec().nrows == rows
    first = figure.axes[0]
    assert [t.get_text() for t in first.get_xticklabels()] == list("vwxyz")
    assert [t.get_text() for t in first.get_yticklabels()] == ["a", "b", "c"]
    np.testing.assert_allclose(first.images[0].get_array(), scores[0], atol=1e-6)


def test_attention_heads_accepts_batch_of_one(tmp_path):
    scores = np.full((1, 2, 2, 2), 0.5)
    figure = plotting.plot_attention_heads(scores, "ab", "cd", str(tmp_path / "a.png"))
    assert len(figure.axes) == 2


def test_positional_encoding_png(tmp_path):
    table = _sinusoid(50, 32)
    path = tmp_path / "pe.png"
    figure = plotting.plot_positional_encoding(table, str(path), title="pe")
    assert _is_png(path)
    assert len(figure.axes) == 2  # heatmap and colour bar
    np.testing.assert_allclose(figure.axes[0].images[0].get_array(), table, atol=1e-6)


def test_bad_arguments(tmp_path):
    path = str(tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"`scores`.*Received: scores.shape=\(3, 3\)"):
        plotting.plot_attention_heads(np.zeros((3, 3)), "abc", "abc", path)
    with pytest.raises(ValueError, match=r"`key_tokens`.*Received: key_tokens of length 2"):
        plotting.plot_attention_heads(np.zeros((1, 3, 3)), "abc", "ab", path)
    with pytest.raises(ValueError, match=r"`columns`.*Received: columns=0"):
        plotting.plot_attention_heads(np.zeros((1, 3, 3)), "abc", "abc", path, columns=0)
    with pytest.raises(ValueError, match=r"`encoding`.*Received: encoding.shape=\(4,\)"):
        plotting.plot_positional_encoding(np.zeros(4), path)


def test_positional_encoding_from_the_package_layer(tmp_path):
    import keras_transformer_layers as ktl

    table = ktl.PositionalEncoding()(np.zeros((1, 40, 16), "float32"))  # (1, 40, 16)
    figure = plotting.plot_positional_encoding(table, str(tmp_path / "pe.png"))
    image = figure.axes[0].images[0].get_array()
    assert image.shape == (40, 16)
    np.testing.assert_allclose(image, _sinusoid(40, 16), atol=1e-5)
    np.testing.assert_allclose(image[0], [0.0, 1.0] * 8, atol=1e-6)
