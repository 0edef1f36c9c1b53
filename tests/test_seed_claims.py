import importlib.util
import pathlib

import pytest

_PATH = pathlib.Path(__file__).resolve().parents[1] / "examples" / "seed_claims.py"


@pytest.fixture(scope="module")
def seed_claims():
    spec = importlib.util.spec_from_file_location("seed_claims", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scaling_keeps_softmax_alive(seed_claims):
    rows = seed_claims.softmax_scaling(d_ks=(4, 256, 1024), num_queries=64)
    scaled = [row["scaled"] for row in rows]
    unscaled = [row["unscaled"] for row in rows]
    # Scaled: the entropy and the gradient do not depend on d_k.
    entropies = [r["entropy"] for r in scaled]
    assert max(entropies) - min(entropies) < 0.05
    grads = [r["grad_norm"] for r in scaled]
    assert max(grads) / min(grads) < 1.3
    # Unscaled: saturation grows with d_k and the gradient vanishes.
    assert unscaled[0]["entropy"] > unscaled[1]["entropy"] > unscaled[2]["entropy"]
    assert unscaled[2]["entropy"] < 0.1 < 0.8 < scaled[2]["entropy"]
    assert unscaled[2]["max_weight"] > 0.9
    assert unscaled[2]["grad_norm"] < 0.3 * unscaled[0]["grad_norm"]


def test_layer_norm_ignores_padding_batch_norm_does_not(seed_claims):
    results = seed_claims.norm_padding()
    assert results["LayerNorm"]["padding"] == 0.0
    assert results["LayerNorm"]["batch"] == 0.0
    assert results["BatchNorm"]["padding"] > 0.5
    assert results["BatchNorm (masked)"]["padding"] < 1e-5
    assert results["BatchNorm (masked)"]["batch"] > 0.5


def test_main_writes_pngs_and_table(seed_claims, tmp_path, capsys):
    seed_claims.main(["--output-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "Claim A" in out and "Claim B" in out
    for name in ("softmax_scaling.png", "norm_padding.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")
