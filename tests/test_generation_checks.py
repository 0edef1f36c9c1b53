"""Bad settings, ids and lengths are ValueErrors naming the argument, compiled or not."""

import re

import keras
import numpy as np
import pytest
from keras import ops

import keras_transformer_layers as ktl
from keras_transformer_layers.generation import BeamSearch
from keras_transformer_layers.generation import Generator
from keras_transformer_layers.generation import Greedy
from keras_transformer_layers.generation import Sampling
from keras_transformer_layers.generation import length_penalty
from keras_transformer_layers.models import CachedDecoding
from tests.generation_fixtures import recompute_greedy
from tests.generation_fixtures import small_model

pytestmark = pytest.mark.backend_neutral

JIT = pytest.mark.parametrize(
    "jit_compile",
    [
        False,
        pytest.param(
            True,
            marks=pytest.mark.skipif(
                keras.config.backend() != "tensorflow", reason="TensorFlow-only: XLA"
            ),
        ),
    ],
    ids=["compiled", "xla"],
)
VOCABULARY_SIZE = 12  # small_model's


@pytest.fixture(scope="module")
def model():
    return small_model(favoured=())[1]


@pytest.fixture(scope="module")
def table_model():
    """Learned position tables of 4 rows in both embeddings: `(model, interface)`."""
    return small_model(table=4, favoured=())


@pytest.fixture(scope="module")
def lm():
    """A decoder-only model, learned position table of 6 rows: `(model, interface)`."""
    return small_model(table=6, favoured=(), decoder_only=True)


def _match(name, received):
    return rf"`{name}`[\s\S]*Received: [\s\S]*{re.escape(received)}"


@pytest.mark.parametrize(
    "make, name, received",
    [
        (lambda: Sampling(temperature=float("nan")), "temperature", "temperature=nan"),
        (lambda: Sampling(temperature=float("inf")), "temperature", "temperature=inf"),
        (lambda: Sampling(temperature=1e-45), "temperature", "temperature=1e-45"),
        (lambda: Sampling(temperature=0.0), "temperature", "temperature=0.0"),
        (lambda: Sampling(temperature=-1.0), "temperature", "temperature=-1.0"),
        (lambda: Sampling(top_p=float("nan")), "top_p", "top_p=nan"),
        (lambda: Sampling(top_p=0.0), "top_p", "top_p=0.0"),
        (lambda: Sampling(top_p=1.5), "top_p", "top_p=1.5"),
        (lambda: Sampling(top_k=2.0), "top_k", "top_k=2.0"),
        (lambda: Sampling(top_k=0), "top_k", "top_k=0"),
        (lambda: Sampling(seed=2**31), "seed", "seed=2147483648"),
        (lambda: Sampling(seed=-(2**31) - 1), "seed", "seed=-2147483649"),
        (lambda: Sampling(seed=2**32 - 5), "seed", "seed=4294967291"),
        (lambda: Sampling(seed=1.5), "seed", "seed=1.5"),
        (lambda: BeamSearch(num_beams=0), "num_beams", "num_beams=0"),
        (lambda: BeamSearch(num_beams=2.0), "num_beams", "num_beams=2.0"),
        (lambda: BeamSearch(length_penalty=float("inf")), "length_penalty", "length_penalty=inf"),
        (lambda: BeamSearch(length_penalty=float("nan")), "length_penalty", "length_penalty=nan"),
        (lambda: BeamSearch(length_penalty="0.6"), "length_penalty", "length_penalty='0.6'"),
        (lambda: BeamSearch(length_penalty=-0.5), "length_penalty", "length_penalty=-0.5"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_bad_strategy_settings_are_value_errors_naming_the_argument(make, name, received):
    with pytest.raises(ValueError, match=_match(name, received)):
        make()


@pytest.mark.parametrize(
    "settings, name, received",
    [
        ({"strategy": "sample"}, "strategy", "strategy='sample'"),
        ({"strategy": 1}, "strategy", "strategy=1"),
        ({"strategy": Greedy}, "strategy", "strategy=<class"),
        ({"jit_compile": "yes"}, "jit_compile", "jit_compile='yes'"),
        (
            {"strategy": BeamSearch(length_penalty=1e6)},
            "length_penalty",
            "length_penalty=1000000.0, max_new_tokens=31",
        ),
        ({"strategy": Sampling(top_k=13)}, "top_k", "top_k=13"),
        ({"strategy": Sampling(top_k=40)}, "top_k", "top_k=40"),
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
        ({"strategy": BeamSearch(num_beams=11)}, "num_beams", "num_beams=11"),
        ({"max_length": 2.0}, "max_length", "max_length=2.0"),
        ({"max_length": 0}, "max_length", "max_length=0"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_bad_generator_settings_are_value_errors_naming_the_argument(
    model, settings, name, received
):
    with pytest.raises(ValueError, match=_match(name, received)):
        Generator(model, **settings)


def test_settings_at_the_edges_are_accepted(model):
    source = np.array([[4, 5, 6, 0]])
    for settings in (
        {"strategy": BeamSearch(num_beams=10)},  # the 12 ids without padding and start
        {"strategy": BeamSearch(num_beams=1, length_penalty=0.0)},
        {"strategy": Sampling(top_k=12, seed=-(2**31))},
        {"strategy": Sampling(top_p=1.0, seed=2**31 - 1, temperature=1e-30)},
        {"strategy": BeamSearch(length_penalty=20.0)},
        {"end_id": None},
    ):
        token_ids = Generator(model, max_new_tokens=3, **settings).generate(source)
        assert token_ids.shape == (1, 3), settings


def test_seed_is_not_wrapped(model):
    generator = Generator(model, Sampling(temperature=5.0), max_length=6)
    source = np.repeat(np.array([[4, 5, 6, 0]]), 8, axis=0)
    np.testing.assert_array_equal(
        generator.generate(source, seed=-5), generator.generate(source, seed=-5)
    )
    with pytest.raises(ValueError, match=_match("seed", "seed=4294967291")):
        generator.generate(source, seed=2**32 - 5)
    with pytest.raises(ValueError, match=_match("seed", "seed='1'")):
        generator.generate(source, seed="1")


@pytest.mark.parametrize(
    "inputs, received",
    [
        (np.array([[4.0, 5.0]]), "inputs.dtype=float64"),
        (ops.convert_to_tensor([[4.0, 5.0]], "float32"), "inputs.dtype=float32"),
        (np.array([[True, False]]), "inputs.dtype=bool"),
        (np.array([["4", "5"]]), "inputs.dtype=<U1"),
        ([4, 5, 6], "inputs.shape=(3,)"),
        (np.ones((1, 1, 3), "int32"), "inputs.shape=(1, 1, 3)"),
        ([[4, 5], [6]], "inputs=[[4, 5], [6]]"),
        (np.zeros((0, 3), "int32"), "inputs.shape=(0, 3)"),
        (np.zeros((2, 0), "int32"), "inputs.shape=(2, 0)"),
    ],
    ids=[
        "float",
        "float_tensor",
        "bool",
        "string",
        "rank1",
        "rank3",
        "ragged_list",
        "empty_batch",
        "empty_rows",
    ],
)
def test_generate_rejects_inputs_that_are_not_an_integer_matrix(model, inputs, received):
    generator = Generator(model, max_length=3)
    with pytest.raises(ValueError, match=_match("inputs", received)):
        generator.generate(inputs)


@pytest.mark.skipif(keras.config.backend() != "tensorflow", reason="TensorFlow-only: tf.ragged")
def test_generate_rejects_a_ragged_tensor(model):
    import tensorflow as tf

    generator = Generator(model, max_length=3)
    with pytest.raises(ValueError, match=_match("inputs", "inputs=<tf.RaggedTensor")):
        generator.generate(tf.ragged.constant([[4, 5], [6]]))


def test_generate_takes_lists_arrays_and_tensors_alike(model):
    generator = Generator(model, max_length=4)
    expected = generator.generate(np.array([[4, 5, 6, 0]], "int32"))
    for inputs in (
        [[4, 5, 6, 0]],
        np.array([[4, 5, 6, 0]], "uint8"),
        np.array([[4, 5, 6, 0]], "int64"),
        ops.convert_to_tensor([[4, 5, 6, 0]], "int32"),
    ):
        np.testing.assert_array_equal(generator.generate(inputs), expected)
    for name, value in (
        ("return_scores", "yes"),
        ("batch_size", 0),
        ("batch_size", 2.0),
        ("verbose", "yes"),
        ("verbose", 3),
    ):
        with pytest.raises(ValueError, match=_match(name, f"{name}={value!r}")):
            generator.generate([[4, 5]], **{name: value})


@JIT
@pytest.mark.parametrize("bad_id", [-1, VOCABULARY_SIZE, 10**6])
def test_generate_rejects_ids_outside_the_source_vocabulary(model, jit_compile, bad_id):
    generator = Generator(model, max_length=3, jit_compile=jit_compile)
    source = np.array([[4, 5, 6], [4, bad_id, 0]])
    low, high = min(bad_id, 0), max(bad_id, 6)
    with pytest.raises(
        ValueError,
        match=rf"`inputs` must be ids in \[0, 12\) \(the encoder's[\s\S]*Received: inputs with "
        rf"values in \[{low}, {high}\]",
    ):
        generator.generate(source)


@JIT
def test_max_length_is_checked_against_the_decoder_position_table(table_model, jit_compile):
    full_model, interface = table_model
    for max_length in (5, 8):
        with pytest.raises(
            ValueError,
            match=rf"`max_length`[\s\S]*table \(4 positions[\s\S]*max_length={max_length}",
        ):
            Generator(interface, max_length=max_length, jit_compile=jit_compile)
    # Four positions: the start token and three generated tokens.
    generator = Generator(interface, max_length=4, jit_compile=jit_compile)
    source = np.array([[4, 5, 6, 0], [7, 8, 9, 10]])
    np.testing.assert_array_equal(
        generator.generate(source), recompute_greedy(full_model, 4, source=source)[0]
    )


@JIT
def test_source_length_is_checked_against_the_encoder_position_table(table_model, jit_compile):
    generator = Generator(table_model[1], max_new_tokens=3, jit_compile=jit_compile)
    with pytest.raises(ValueError, match=_match("inputs", "inputs.shape=(2, 5)")) as error:
        generator.generate(np.ones((2, 5), "int32"))
    assert "position table (4)" in str(error.value)
    assert generator.generate(np.ones((2, 4), "int32")).shape == (2, 3)


def test_logits_wider_than_the_decoder_embedding_are_rejected():
    source_ids = keras.Input((None,), dtype="int32")
    target_ids = keras.Input((None,), dtype="int32")
    encoder_embedding = ktl.PositionalEmbedding(12, 16)
    encoder = ktl.TransformerEncoder(1, 2, 32)
    decoder_embedding = ktl.PositionalEmbedding(12, 16)
    decoder = ktl.TransformerDecoder(1, 2, 32)
    dense = keras.layers.Dense(14)
    memory = encoder(encoder_embedding(source_ids))
    keras.Model([source_ids, target_ids], dense(decoder(decoder_embedding(target_ids), memory)))
    interface = CachedDecoding(
        encoder_embedding=encoder_embedding,
        encoder=encoder,
        decoder_embedding=decoder_embedding,
        decoder=decoder,
        logits=dense,
    )
    # Ids 12 and 13 could be generated but not fed back.
    with pytest.raises(ValueError, match=r"`logits`[\s\S]*\(12\)[\s\S]*Received: logits width=14"):
        Generator(interface)


def test_model_without_the_interface_is_rejected_with_advice():
    with pytest.raises(ValueError, match=_match("model", "model='transformer'")):
        Generator("transformer")
    # A functional model has layers but not the interface: the message says
    # how to get it.
    inputs = keras.Input((None,), dtype="int32")
    plain = keras.Model(inputs, keras.layers.Dense(4)(keras.layers.Embedding(4, 4)(inputs)))
    with pytest.raises(
        ValueError,
        match=r"`model` must have the decoding interface[\s\S]*"
        r"CachedDecoding[\s\S]*Received: model=",
    ):
        Generator(plain)


def test_length_penalty_function_checks_its_arguments():
    assert length_penalty(7, 1.0) == 2.0
    for alpha in (float("nan"), float("inf"), -0.5, "1"):
        with pytest.raises(ValueError, match=_match("alpha", f"alpha={alpha!r}")):
            length_penalty(7, alpha)
    for length in (float("nan"), -1):
        with pytest.raises(ValueError, match=_match("length", f"length={length!r}")):
            length_penalty(length, 1.0)


# ------------------------------------------------------------- decoder-only


@pytest.mark.parametrize(
    "prompts, received",
    [
        (np.array([[4, 5, 0], [0, 0, 0]]), "inputs[1]=[0, 0, 0]"),
        (np.array([[4, 5, 0], [0, 6, 7]]), "inputs[1]=[0, 6, 7]"),
        (np.array([[4, 0, 5], [6, 7, 8]]), "inputs[0]=[4, 0, 5]"),
        (np.array([[4, 5, 6, 7, 8, 9]]), "a prompt of 6 tokens (inputs.shape=(1, 6))"),
        (np.array([[4, 12]]), "inputs with values in [4, 12]"),
        (np.array([[4, -1]]), "inputs with values in [-1, 4]"),
    ],
    ids=["empty_row", "left_padded", "padding_inside", "too_long", "id_too_large", "negative_id"],
)
def test_bad_prompts_are_value_errors(lm, prompts, received):
    generator = Generator(lm[1], max_length=6)
    with pytest.raises(ValueError, match=_match("inputs", received)):
        generator.generate(prompts)


def test_decoder_only_lengths_are_checked(lm):
    full_model, interface = lm
    with pytest.raises(
        ValueError, match=r"`max_length`[\s\S]*table \(6 positions, the prompt[\s\S]*max_length=7"
    ):
        Generator(interface, max_length=7)
    with pytest.raises(ValueError, match=_match("max_length", "max_length=1")):
        Generator(interface, max_length=1)
    # Padding columns beyond max_length are not part of any prompt.
    generator = Generator(interface, max_length=6)
    prompts = np.array([[4, 5, 0, 0, 0, 0, 0, 0], [6, 0, 0, 0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(
        generator.generate(prompts),
        recompute_greedy(full_model, 6, prompts=prompts[:, :6])[0],
    )
