"""int8 LiteRT files (`quantization="dynamic_int8"`) of the trained fixture, against float32.

One module fixture converts the whole generation loop (`WHILE`) and the
`encode`/`decode_step` pair of `fixtures/int8_reversal.keras`; the tests run
them with `ai_edge_litert` alone and compare their greedy tokens with the
float32 Keras generator's, stored in `fixtures/int8_reversal.npz`.
"""

import math
import pathlib

import keras
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter

from keras_transformer_layers.export import export_decode_step_tflite
from keras_transformer_layers.export import export_generation_tflite
from keras_transformer_layers.generation import Generator
from keras_transformer_layers.tokens import END_ID
from keras_transformer_layers.tokens import START_ID

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "int8_reversal"
MAX_NEW_TOKENS = 10  # as in make_int8_fixture.py
# The agreement docs/quantization.md promises on this fixture.
DOCUMENTED_AGREEMENT = 0.99
# The converter leaves constant tensors of fewer elements in float32.
MIN_QUANTIZED_ELEMENTS = 1024


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("int8_tflite")
    with np.load(FIXTURE.with_suffix(".npz")) as data:
        stored = dict(data)
    model = keras.models.load_model(FIXTURE.with_suffix(".keras"))
    generator = Generator(model, max_new_tokens=MAX_NEW_TOKENS)
    batch_size, source_len = stored["source"].shape
    loop = export_generation_tflite(
        generator,
        folder / "generate.tflite",
        batch_size=batch_size,
        input_len=source_len,
        sample_inputs=stored["source"],
        quantization="dynamic_int8",
    )
    steps = export_decode_step_tflite(
        generator,
        folder / "steps",
        batch_size=batch_size,
        source_len=source_len,
        quantization="dynamic_int8",
    )
    return {"stored": stored, "model": model, "loop": loop, "steps": steps}


def _agreement(expected, got):
    """Equal ids over the positions where either holds a token (padding in both not counted)."""
    tokens = (expected != 0) | (got != 0)
    return np.sum((expected == got) & tokens) / np.sum(tokens)


def _int8_elements(path):
    """Elements of the int8 tensors in every subgraph of a `.tflite` file."""
    with open(path, "rb") as f:
        flat_model = schema.Model.GetRootAs(f.read(), 0)
    total = 0
    for s in range(flat_model.SubgraphsLength()):
        subgraph = flat_model.Subgraphs(s)
        for t in range(subgraph.TensorsLength()):
            tensor = subgraph.Tensors(t)
            if tensor.Type() == schema.TensorType.INT8:
                total += math.prod(tensor.ShapeAsNumpy())
    return total


def _quantizable_elements(layers):
    """Elements of the kernels of `layers` large enough for the converter to quantize."""
    sizes = [
        math.prod(w.shape)
        for layer in layers
        for w in layer.weights
        if w.path.endswith("kernel") and math.prod(w.shape) >= MIN_QUANTIZED_ELEMENTS
    ]
    assert sizes  # the fixture is wide enough for this test to mean something
    return sum(sizes)


def test_int8_generation_loop_agrees_with_float32(exported):
    stored, loop = exported["stored"], exported["loop"]
    assert loop["quantization"] == "dynamic_int8"
    assert "WHILE" in loop["op_names"]
    # `sample_inputs` compared the file with the float32 generator.
    assert loop["token_agreement"] >= DOCUMENTED_AGREEMENT
    runner = Interpreter(model_path=loop["path"]).get_signature_runner()
    token_ids = runner(source_ids=stored["source"])["token_ids"]
    assert _agreement(stored["float32_greedy"], token_ids) >= DOCUMENTED_AGREEMENT
    # Every matrix of both stacks is in the file as int8.
    model = exported["model"]
    stacks = [model.encoder, model.decoder]
    assert _int8_elements(loop["path"]) >= _quantizable_elements(stacks)


def test_int8_decode_step_pair_agrees_with_float32(exported):
    stored, steps = exported["stored"], exported["steps"]
    assert steps["quantization"] == "dynamic_int8"
    encode = Interpreter(model_path=steps["files"]["encode"]).get_signature_runner()
    step = Interpreter(model_path=steps["files"]["decode_step"]).get_signature_runner()
    state = encode(source_ids=stored["source"])
    cache = state.pop("self_attention_cache")
    batch_size = len(stored["source"])
    tokens = np.full((batch_size, 1), START_ID, "int32")
    finished = np.zeros(batch_size, bool)
    greedy = np.zeros((batch_size, MAX_NEW_TOKENS), "int32")
    for index in range(MAX_NEW_TOKENS):
        outputs = step(token_ids=tokens, index=np.int32(index), self_attention_cache=cache, **state)
        cache = outputs["self_attention_cache"]
        chosen = np.where(finished, 0, outputs["logits"].argmax(-1)).astype("int32")
        greedy[:, index] = chosen
        finished |= chosen == END_ID
        tokens = chosen[:, None]
    assert _agreement(stored["float32_greedy"], greedy) >= DOCUMENTED_AGREEMENT
    # Between them (cross-attention keys and values in `encode`), every matrix is int8.
    model = exported["model"]
    int8 = sum(_int8_elements(path) for path in steps["files"].values())
    assert int8 >= _quantizable_elements([model.encoder, model.decoder])


@pytest.mark.parametrize("exporter", [export_generation_tflite, export_decode_step_tflite])
def test_unknown_quantization_is_a_value_error(exporter, exported, tmp_path):
    generator = Generator(exported["model"], max_new_tokens=MAX_NEW_TOKENS)
    with pytest.raises(
        ValueError, match=r"`quantization` must be one of .*Received: quantization='int8'"
    ):
        exporter(generator, tmp_path / "out.tflite", quantization="int8")
    assert not (tmp_path / "out.tflite").exists()
