"""Every public layer takes its call arguments positionally and by keyword, eagerly and functionally.

The output structure of a symbolic call is traced from `call` itself, so the
arguments mean the same in every form: a mask passed positionally is that
mask in a functional model too. keras-hub's spellings of the arguments are a
`ValueError` naming ours.
"""

import keras
import numpy as np
import pytest

import keras_transformer_layers as ktl

pytestmark = pytest.mark.backend_neutral

RNG = np.random.default_rng(0)
X = RNG.normal(size=(2, 4, 8)).astype("float32")  # (batch, target_len, model_dim)
MEMORY = RNG.normal(size=(2, 5, 8)).astype("float32")  # (batch, source_len, model_dim)
X_MASK = np.array([[True, True, True, False], [True, True, False, False]])
MEMORY_MASK = np.array([[True] * 5, [True, True, True, False, False]])
IDS = np.array([[4, 5, 0, 0], [6, 7, 8, 9]], "int32")
STACK = {"num_layers": 2, "num_heads": 2, "intermediate_dim": 16}
BLOCK = {"num_heads": 2, "intermediate_dim": 16}


def _tied_logits():
    embedding = ktl.PositionalEmbedding(12, 8)
    embedding.build((None, None))
    return ktl.TiedLogits(embedding)


# name: (layer factory, call arguments in `call`'s order as (name, value), more
# positional-only values such as ints).
LAYERS = {
    "PositionalEncoding": (ktl.PositionalEncoding, [("inputs", X)]),
    "PositionalEmbedding": (lambda: ktl.PositionalEmbedding(12, 8), [("inputs", IDS)]),
    "MultiHeadAttention": (
        lambda: ktl.MultiHeadAttention(num_heads=2, key_dim=4),
        [
            ("query", X),
            ("value", MEMORY),
            ("key", MEMORY),
            ("query_mask", X_MASK),
            ("value_mask", MEMORY_MASK),
            ("key_mask", MEMORY_MASK),
        ],
    ),
    "AddNorm": (ktl.AddNorm, [("inputs", X), ("sublayer_output", 2 * X)]),
    "FeedForward": (lambda: ktl.FeedForward(16), [("inputs", X)]),
    "TransformerEncoderBlock": (
        lambda: ktl.TransformerEncoderBlock(**BLOCK),
        [("inputs", X), ("mask", X_MASK)],
    ),
    "TransformerEncoder": (
        lambda: ktl.TransformerEncoder(**STACK),
        [("inputs", X), ("mask", X_MASK)],
    ),
    "TransformerDecoderBlock": (
        lambda: ktl.TransformerDecoderBlock(**BLOCK),
        [
            ("decoder_inputs", X),
            ("encoder_outputs", MEMORY),
            ("decoder_inputs_mask", X_MASK),
            ("encoder_outputs_mask", MEMORY_MASK),
        ],
    ),
    "TransformerDecoder": (
        lambda: ktl.TransformerDecoder(**STACK),
        [
            ("decoder_inputs", X),
            ("encoder_outputs", MEMORY),
            ("decoder_inputs_mask", X_MASK),
            ("encoder_outputs_mask", MEMORY_MASK),
        ],
    ),
    "TiedLogits": (_tied_logits, [("inputs", X)]),
}


def test_every_public_layer_is_covered():
    public = {
        name
        for name in ktl.__all__
        if isinstance(getattr(ktl, name), type)
        and issubclass(getattr(ktl, name), keras.layers.Layer)
    }
    public -= {"Seq2SeqTransformer", "TransformerLM"}  # models, called with one input
    assert public == set(LAYERS)


def _numpy(outputs):
    return [keras.ops.convert_to_numpy(x) for x in keras.tree.flatten(outputs)]


@pytest.mark.parametrize("name", list(LAYERS))
def test_positional_and_keyword_arguments_agree_eagerly_and_functionally(name):
    factory, arguments = LAYERS[name]
    names = [argument for argument, _ in arguments]
    values = [value for _, value in arguments]
    layer = factory()
    by_keyword = _numpy(layer(**dict(arguments)))
    np.testing.assert_allclose(_numpy(layer(*values)), by_keyword, atol=1e-6)
    inputs = [keras.Input(value.shape[1:], dtype=str(value.dtype)) for value in values]
    positional = keras.Model(inputs, layer(*inputs))
    keyword = keras.Model(inputs, layer(**dict(zip(names, inputs, strict=True))))
    for model in (positional, keyword):
        np.testing.assert_allclose(_numpy(model(values)), by_keyword, atol=1e-5)
    # A mask in its place changes the result (it is not ignored).
    if any(argument.endswith("mask") for argument in names):
        unmasked = [v for n, v in arguments if not n.endswith("mask")]
        assert not np.allclose(_numpy(layer(*unmasked))[0], by_keyword[0], atol=1e-4)


@pytest.mark.parametrize(
    "layer, arguments, ours",
    [
        (ktl.TransformerEncoder(**STACK), {"padding_mask": X_MASK}, "`mask`"),
        (ktl.TransformerEncoderBlock(**BLOCK), {"padding_mask": X_MASK}, "`mask`"),
        (
            ktl.TransformerDecoder(**STACK),
            {"decoder_padding_mask": X_MASK},
            "`decoder_inputs_mask`",
        ),
        (
            ktl.TransformerDecoderBlock(**BLOCK),
            {"encoder_padding_mask": MEMORY_MASK},
            "`encoder_outputs_mask`",
        ),
        (ktl.TransformerDecoder(**STACK), {"padding_mask": X_MASK}, "`decoder_inputs_mask`"),
        (ktl.TransformerDecoder(**STACK), {"use_causal_mask": True}, "always causal"),
        (ktl.MultiHeadAttention(2, 4), {"padding_mask": X_MASK}, "`query_mask`"),
    ],
    ids=[
        "encoder-padding_mask",
        "encoder_block-padding_mask",
        "decoder-decoder_padding_mask",
        "decoder_block-encoder_padding_mask",
        "decoder-padding_mask",
        "decoder-use_causal_mask",
        "attention-padding_mask",
    ],
)
def test_keras_hub_spellings_are_a_value_error_naming_ours(layer, arguments, ours):
    (spelling,) = arguments
    inputs = (X, MEMORY) if isinstance(layer, ktl.MultiHeadAttention) else (X,)
    with pytest.raises(ValueError, match=rf"{ours}.*`{spelling}` is keras-hub's spelling"):
        layer(*inputs, **arguments)
