"""Bad settings, ids and lengths are ValueErrors naming the argument, in eager and XLA alike."""

import re

import numpy as np
import pytest
import tensorflow as tf

from keras_transformer_layers.decoding import TranslationGenerator, length_penalty
from tests.decoding_fixtures import recompute_greedy, small_model

JIT = pytest.mark.parametrize("jit_compile", [False, True], ids=["eager", "xla"])
VOCABULARY_SIZE = 12  # small_model's


@pytest.fixture(scope="module")
def model():
    return small_model(favoured=())


@pytest.fixture(scope="module")
def table_model():
    """Learned position tables of 4 rows in both embeddings."""
    return small_model(table=4, favoured=())


def _match(name, received):
    return rf"`{name}`[\s\S]*Received: [\s\S]*{re.escape(received)}"


@pytest.mark.parametrize(
    "settings, name, received",
    [
        ({"sample": "no"}, "sample", "sample='no'"),
        ({"sample": 1}, "sample", "sample=1"),
        ({"jit_compile": "yes"}, "jit_compile", "jit_compile='yes'"),
        ({"length_penalty": float("inf")}, "length_penalty", "length_penalty=inf"),
        ({"length_penalty": float("nan")}, "length_penalty", "length_penalty=nan"),
        ({"length_penalty": 1e6}, "length_penalty", "length_penalty=1000000.0, max_length=32"),
        ({"length_penalty": "0.6"}, "length_penalty", "length_penalty='0.6'"),
        ({"temperature": float("nan"), "sample": True}, "temperature", "temperature=nan"),
        ({"temperature": float("inf"), "sample": True}, "temperature", "temperature=inf"),
        ({"temperature": 1e-45, "sample": True}, "temperature", "temperature=1e-45"),
        ({"top_p": float("nan"), "sample": True}, "top_p", "top_p=nan"),
        ({"top_k": 13, "sample": True}, "top_k", "top_k=13"),
        ({"top_k": 40, "sample": True}, "top_k", "top_k=40"),
        ({"top_k": 2.0, "sample": True}, "top_k", "top_k=2.0"),
        ({"start_id": -1}, "start_id", "start_id=-1"),
        ({"start_id": 12}, "start_id", "start_id=12"),
        ({"start_id": 2.0}, "start_id", "start_id=2.0"),
        ({"start_id": 0}, "start_id", "start_id=0, pad_id=0"),
        ({"pad_id": -1}, "pad_id", "pad_id=-1"),
        ({"pad_id": 1}, "pad_id", "pad_id=1"),
        ({"pad_id": True}, "pad_id", "pad_id=True"),
        ({"end_id": -1}, "end_id", "end_id=-1"),
        ({"end_id": 12}, "end_id", "end_id=12"),
        ({"end_id": 0}, "end_id", "end_id=0, pad_id=0"),
        ({"end_id": 2}, "end_id", "end_id=2, pad_id=0, start_id=2"),
        ({"seed": 2**31}, "seed", "seed=2147483648"),
        ({"seed": -(2**31) - 1}, "seed", "seed=-2147483649"),
        ({"seed": 2**32 - 5}, "seed", "seed=4294967291"),
        ({"seed": 1.5}, "seed", "seed=1.5"),
        ({"num_beams": 11}, "num_beams", "num_beams=11"),
        ({"max_length": 2.0}, "max_length", "max_length=2.0"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_bad_settings_are_value_errors_naming_the_argument(model, settings, name, received):
    with pytest.raises(ValueError, match=_match(name, received)):
        TranslationGenerator(model, **settings)


def test_settings_at_the_edges_are_accepted(model):
    source = np.array([[4, 5, 6, 0]])
    for settings in (
        {"num_beams": 10},  # the 12 ids without padding and start
        {"sample": True, "top_k": 12, "seed": -(2**31)},
        {"sample": True, "top_p": 1.0, "seed": 2**31 - 1, "temperature": 1e-30},
        {"length_penalty": 20.0},
        {"end_id": None},
    ):
        token_ids = TranslationGenerator(model, max_length=3, **settings).generate(source)
        assert token_ids.shape == (1, 3), settings


def test_seed_is_not_wrapped(model):
    generator = TranslationGenerator(model, max_length=6, sample=True, temperature=5.0)
    source = np.repeat(np.array([[4, 5, 6, 0]]), 8, axis=0)
    np.testing.assert_array_equal(
        generator.generate(source, seed=-5), generator.generate(source, seed=-5)
    )
    with pytest.raises(ValueError, match=_match("seed", "seed=4294967291")):
        generator.generate(source, seed=2**32 - 5)
    with pytest.raises(ValueError, match=_match("seed", "seed='1'")):
        generator.generate(source, seed="1")


@pytest.mark.parametrize(
    "source_ids, received",
    [
        (np.array([[4.0, 5.0]]), "source_ids.dtype=float64"),
        (tf.constant([[4.0, 5.0]]), "source_ids.dtype=float32"),
        (np.array([[True, False]]), "source_ids.dtype=bool"),
        (np.array([["4", "5"]]), "source_ids.dtype=<U1"),
        ([4, 5, 6], "source_ids.shape=(3,)"),
        (np.ones((1, 1, 3), "int32"), "source_ids.shape=(1, 1, 3)"),
        ([[4, 5], [6]], "source_ids=[[4, 5], [6]]"),
        (tf.ragged.constant([[4, 5], [6]]), "source_ids=<tf.RaggedTensor"),
        (np.zeros((0, 3), "int32"), "source_ids.shape=(0, 3)"),
        (np.zeros((2, 0), "int32"), "source_ids.shape=(2, 0)"),
    ],
    ids=[
        "float", "float_tensor", "bool", "string", "rank1", "rank3", "ragged_list",
        "ragged_tensor", "empty_batch", "empty_rows",
    ],
)
def test_generate_rejects_source_ids_that_are_not_an_integer_matrix(model, source_ids, received):
    generator = TranslationGenerator(model, max_length=3)
    with pytest.raises(ValueError, match=_match("source_ids", received)):
        generator.generate(source_ids)


def test_generate_takes_lists_arrays_and_tensors_alike(model):
    generator = TranslationGenerator(model, max_length=4)
    expected = generator.generate(np.array([[4, 5, 6, 0]], "int32"))
    for source_ids in (
        [[4, 5, 6, 0]],
        np.array([[4, 5, 6, 0]], "uint8"),
        tf.constant([[4, 5, 6, 0]], tf.int64),
    ):
        np.testing.assert_array_equal(generator.generate(source_ids), expected)
    with pytest.raises(ValueError, match=_match("return_scores", "return_scores='yes'")):
        generator.generate([[4, 5]], return_scores="yes")


@JIT
@pytest.mark.parametrize("bad_id", [-1, VOCABULARY_SIZE, 10**6])
def test_generate_rejects_ids_outside_the_source_vocabulary(model, jit_compile, bad_id):
    generator = TranslationGenerator(model, max_length=3, jit_compile=jit_compile)
    source = np.array([[4, 5, 6], [4, bad_id, 0]])
    low, high = min(bad_id, 0), max(bad_id, 6)
    with pytest.raises(
        ValueError,
        match=rf"`source_ids` must be ids in \[0, 12\)[\s\S]*Received: source_ids with values "
        rf"in \[{low}, {high}\]",
    ):
        generator.generate(source)


@JIT
def test_max_length_is_checked_against_the_decoder_position_table(table_model, jit_compile):
    for max_length in (5, 8):
        with pytest.raises(
            ValueError,
            match=rf"`max_length`[\s\S]*table \(4 positions[\s\S]*max_length={max_length}",
        ):
            TranslationGenerator(table_model, max_length=max_length, jit_compile=jit_compile)
    # Four positions feed four tokens: the start token and three generated ones.
    generator = TranslationGenerator(table_model, max_length=4, jit_compile=jit_compile)
    source = np.array([[4, 5, 6, 0], [7, 8, 9, 10]])
    np.testing.assert_array_equal(
        generator.generate(source), recompute_greedy(table_model, source, 4)
    )


@JIT
def test_source_length_is_checked_against_the_encoder_position_table(table_model, jit_compile):
    generator = TranslationGenerator(table_model, max_length=3, jit_compile=jit_compile)
    with pytest.raises(
        ValueError, match=_match("source_ids", "source_ids.shape=(2, 5)")
    ) as error:
        generator.generate(np.ones((2, 5), "int32"))
    assert "position table (4)" in str(error.value)
    assert generator.generate(np.ones((2, 4), "int32")).shape == (2, 3)


def test_logits_wider_than_the_decoder_embedding_are_rejected():
    import keras

    import keras_transformer_layers as ktl

    source_ids = keras.Input((None,), dtype="int32")
    target_ids = keras.Input((None,), dtype="int32")
    x = ktl.PositionalEmbedding(12, 16, name="encoder_embedding")(source_ids)
    x = ktl.TransformerEncoder(1, 2, 32, name="encoder")(x)
    y = ktl.PositionalEmbedding(12, 16, name="decoder_embedding")(target_ids)
    y = ktl.TransformerDecoder(1, 2, 32, name="decoder")(y, x)
    logits = keras.layers.Dense(14, name="logits")(y)
    model = keras.Model([source_ids, target_ids], logits)
    # Ids 12 and 13 could be generated but not fed back.
    with pytest.raises(ValueError, match=r"`logits`[\s\S]*\(12\)[\s\S]*Received: logits width=14"):
        TranslationGenerator(model)


def test_model_and_layer_names_are_checked(model):
    with pytest.raises(ValueError, match=_match("model", "model='transformer'")):
        TranslationGenerator("transformer")
    with pytest.raises(ValueError, match=_match("layer_names", "layer_names=['decoder']")):
        TranslationGenerator(model, layer_names=["decoder"])
    # A misspelt role would otherwise be ignored and the default layer used.
    with pytest.raises(
        ValueError, match=_match("layer_names", "layer_names keys ['decoder_embeddings']")
    ):
        TranslationGenerator(model, layer_names={"decoder_embeddings": "decoder_embedding"})


def test_length_penalty_function_checks_its_arguments():
    assert length_penalty(7, 1.0) == 2.0
    for alpha in (float("nan"), float("inf"), -0.5, "1"):
        with pytest.raises(ValueError, match=_match("alpha", f"alpha={alpha!r}")):
            length_penalty(7, alpha)
    for length in (float("nan"), -1):
        with pytest.raises(ValueError, match=_match("length", f"length={length!r}")):
            length_penalty(length, 1.0)
