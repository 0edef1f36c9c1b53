"""Every public layer saved to .keras reloads in a fresh process that only imports the package."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_transformer_layers as ktl

pytestmark = pytest.mark.backend_neutral

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LOADER = """
import sys
import numpy as np
import keras
import keras_transformer_layers  # registers the layers; no custom_objects
for name in sys.argv[2:]:
    data = np.load(f"{sys.argv[1]}/{name}.npz")
    inputs = [data[f"input_{i}"] for i in range(len(data.files) - 1)]
    model = keras.models.load_model(f"{sys.argv[1]}/{name}.keras")
    np.save(f"{sys.argv[1]}/{name}.reloaded.npy", keras.ops.convert_to_numpy(model(inputs)))
"""


def _cases():
    x = np.random.rand(2, 4, 8).astype("float32")
    memory = np.random.rand(2, 6, 8).astype("float32")
    ids = np.array([[3, 4, 0, 0], [5, 6, 7, 8]], "int32")
    block = {"num_heads": 2, "intermediate_dim": 16}
    return {
        "PositionalEncoding": (ktl.PositionalEncoding(), [x]),
        "PositionalEmbedding": (
            ktl.PositionalEmbedding(10, 8, learned_positions=True, sequence_length=4),
            [ids],
        ),
        "MultiHeadAttention": (ktl.MultiHeadAttention(2, 4), [x, memory]),
        "AddNorm": (ktl.AddNorm(), [x, x]),
        "FeedForward": (ktl.FeedForward(16), [x]),
        "TransformerEncoderBlock": (ktl.TransformerEncoderBlock(**block), [x]),
        "TransformerEncoder": (ktl.TransformerEncoder(2, **block, normalize_first=True), [x]),
        "TransformerDecoderBlock": (ktl.TransformerDecoderBlock(**block), [x, memory]),
        "TransformerDecoder": (ktl.TransformerDecoder(2, **block), [x, memory]),
    }


def test_every_layer_reloads_in_a_fresh_process(tmp_path):
    expected = {}
    for name, (layer, inputs) in _cases().items():
        symbolic = [keras.Input(x.shape[1:], dtype=str(x.dtype)) for x in inputs]
        model = keras.Model(symbolic, layer(*symbolic))
        model.save(tmp_path / f"{name}.keras")
        np.savez(
            tmp_path / f"{name}.npz", **{f"input_{i}": x for i, x in enumerate(inputs)}, unused=0
        )
        expected[name] = keras.ops.convert_to_numpy(model(inputs))
    script = tmp_path / "load.py"
    script.write_text(LOADER)
    environment = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run(
        [sys.executable, str(script), str(tmp_path), *expected],
        check=True,
        env=environment,
        cwd=tmp_path,
        timeout=300,
    )
    for name, output in expected.items():
        np.testing.assert_allclose(
            np.load(tmp_path / f"{name}.reloaded.npy"), output, atol=1e-6, err_msg=name
        )


def test_build_transformer_round_trips_with_its_optimizer_state(tmp_path):
    model = ktl.build_transformer(
        20, 20, num_layers=1, model_dim=16, num_heads=2, intermediate_dim=32
    )
    model.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    inputs = {
        "encoder_inputs": np.array([[3, 4, 5, 0]]),
        "decoder_inputs": np.array([[1, 6, 7, 0]]),
    }
    model.fit(inputs, np.array([[6, 7, 2, 0]]), epochs=2, verbose=0)
    path = tmp_path / "transformer.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(restored(inputs)),
        keras.ops.convert_to_numpy(model(inputs)),
        atol=1e-6,
    )
    iterations = [keras.ops.convert_to_numpy(m.optimizer.iterations) for m in (restored, model)]
    assert iterations == [2, 2]
