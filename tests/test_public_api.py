import keras
import pytest

import keras_transformer_layers as ktl

pytestmark = pytest.mark.backend_neutral

EXPECTED = {
    "AddNorm",
    "FeedForward",
    "MultiHeadAttention",
    "PositionalEmbedding",
    "PositionalEncoding",
    "TiedLogits",
    "TransformerDecoder",
    "TransformerDecoderBlock",
    "TransformerEncoder",
    "TransformerEncoderBlock",
    "build_transformer",
    "build_transformer_lm",
    "CachedDecoding",
    "Seq2SeqTransformer",
    "TransformerLM",
    "__version__",
}


def test_public_names():
    assert set(ktl.__all__) == EXPECTED
    assert all(hasattr(ktl, name) for name in EXPECTED)


def test_every_layer_is_registered_under_the_package_name():
    for name in EXPECTED:
        obj = getattr(ktl, name)
        if isinstance(obj, type) and issubclass(obj, keras.layers.Layer):
            assert keras.saving.get_registered_name(obj) == f"keras_transformer_layers>{name}"
            assert keras.saving.get_registered_object(f"keras_transformer_layers>{name}") is obj


def test_every_public_name_is_documented():
    for name in EXPECTED - {"__version__"}:
        doc = getattr(ktl, name).__doc__
        for section in ("Args:", "Returns:", "Example:", "Reference:"):
            assert section in doc, (name, section)
        obj = getattr(ktl, name)
        if isinstance(obj, type) and issubclass(obj, keras.layers.Layer):
            assert "Call arguments:" in doc, name
