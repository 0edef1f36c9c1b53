"""`import keras_transformer_layers` is light: heavy submodules load on first use."""

import ast
import importlib
import json
import os
import pathlib
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_transformer_layers

pytestmark = pytest.mark.backend_neutral

REPO = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = REPO / "keras_transformer_layers"
HEAVY = ("tensorflow", "tensorflow_datasets", "matplotlib", "ai_edge_litert")
# Only these parts of the package may import a module of HEAVY at module level.
HEAVY_ALLOWED = ("data", "export", "plotting.py")


def run_fresh(script):
    """Runs `script` in a fresh Python process on this backend; returns its last line as JSON."""
    env = {
        **os.environ,
        "KERAS_BACKEND": keras.config.backend(),
        "PYTHONPATH": str(REPO),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_bare_import_leaves_the_heavy_modules_unimported():
    # `import keras` itself imports matplotlib when it is installed (Keras 3.15:
    # `keras/src/visualization/plot_image_gallery.py` does
    # `try: import matplotlib.pyplot`) and TensorFlow on its TensorFlow
    # backend; nothing else of HEAVY. So: the package adds nothing to what
    # `import keras` brings, and where Keras brings nothing (the JAX
    # environment, no TensorFlow, no matplotlib) none of HEAVY is loaded at
    # all. Then `plotting` (it imports matplotlib only when it draws) shows a
    # lazy submodule loading on first access, on every backend.
    loaded = run_fresh(
        "import importlib.util, json, sys\n"
        f"heavy = {HEAVY!r}\n"
        "installed = [m for m in heavy if importlib.util.find_spec(m)]\n"
        "import keras\n"
        "by_keras = [m for m in heavy if m in sys.modules]\n"
        "gallery = 'keras.src.visualization.plot_image_gallery' in sys.modules\n"
        "import keras_transformer_layers\n"
        "after = [m for m in heavy if m in sys.modules]\n"
        "before = 'keras_transformer_layers.plotting' in sys.modules\n"
        "module = keras_transformer_layers.plotting\n"
        "print(json.dumps({'installed': installed, 'keras': by_keras, 'package': after,\n"
        "                  'gallery': gallery, 'plotting': [before, module.__name__]}))\n"
    )
    assert loaded["package"] == loaded["keras"]
    by_keras = {"matplotlib"} & set(loaded["installed"])
    if keras.config.backend() == "tensorflow":
        by_keras.add("tensorflow")
    assert set(loaded["keras"]) == by_keras
    assert loaded["gallery"]  # the Keras module that imports matplotlib when it can
    if keras.config.backend() != "tensorflow" and "matplotlib" not in loaded["installed"]:
        assert loaded["package"] == []
    assert loaded["plotting"] == [False, "keras_transformer_layers.plotting"]


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(
        AttributeError,
        match=r"module 'keras_transformer_layers' has no attribute 'dat'.*data, export",
    ):
        keras_transformer_layers.dat  # noqa: B018
    assert not hasattr(keras_transformer_layers, "Seq2Seq_typo")
    assert set(keras_transformer_layers.LAZY_SUBMODULES) >= {
        "data",
        "export",
        "generation",
        "plotting",
    }


@pytest.mark.skipif(
    keras.config.backend() != "tensorflow", reason="TensorFlow-only: `data` imports TensorFlow"
)
def test_data_loads_on_first_access_and_registers_only_the_tokenizer():
    # Everything of the package a `.keras` file can hold is registered by the
    # bare import; the first access to `data` imports tensorflow-datasets, and
    # importing every lazy submodule adds only `TextTokenizer` (TensorFlow
    # string ops), registered by `import keras_transformer_layers.data`, and
    # the generation strategies, which serialize a `Generator`'s settings and
    # are never part of a model file.
    loaded = run_fresh(
        "import importlib, importlib.util, json, sys, keras\n"
        "import keras_transformer_layers as ktl\n"
        "def ours():\n"
        "    return sorted(n for n in keras.saving.get_custom_objects()\n"
        "                  if n.startswith('keras_transformer_layers>'))\n"
        "bare, tfds_before = ours(), 'tensorflow_datasets' in sys.modules\n"
        "tokenizer = ktl.data.TextTokenizer(['a'])\n"
        "tfds_after = 'tensorflow_datasets' in sys.modules\n"
        "for name in ktl.LAZY_SUBMODULES:\n"
        "    if importlib.util.find_spec(f'keras_transformer_layers.{name}'):\n"
        "        importlib.import_module(f'keras_transformer_layers.{name}')\n"
        "print(json.dumps({'bare': bare, 'all': ours(), 'tfds': [tfds_before, tfds_after],\n"
        "                  'tokenizer': type(tokenizer).__module__}))\n"
    )
    assert loaded["tfds"] == [False, True]
    assert loaded["tokenizer"] == "keras_transformer_layers.data.tokenizer"
    assert sorted(set(loaded["all"]) - set(loaded["bare"])) == [
        f"keras_transformer_layers>{name}"
        for name in ("BeamSearch", "Greedy", "Sampling", "TextTokenizer")
    ]
    for name in (
        "MultiHeadAttention",
        "TransformerDecoder",
        "TransformerSchedule",
        "TransformerAdam",
        "MaskedSparseCategoricalCrossentropy",
        "MaskedAccuracy",
    ):
        assert f"keras_transformer_layers>{name}" in loaded["bare"]


def test_missing_extras_name_the_install_command_from_the_clone(tmp_path, monkeypatch):
    # `None` in `sys.modules` makes an import fail, as without the extra.
    for name in (
        "tensorflow_datasets",
        "matplotlib",
        "matplotlib.backends.backend_agg",
        "matplotlib.figure",
    ):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "keras_transformer_layers.data", raising=False)
    with pytest.raises(
        ModuleNotFoundError,
        match=re.escape(
            "needs tensorflow-datasets. Install the extra from the repository "
            'root: pip install ".[data]"'
        ),
    ):
        importlib.import_module("keras_transformer_layers.data")
    from keras_transformer_layers import plotting

    with pytest.raises(ImportError, match=re.escape('root: pip install ".[plot]"')):
        plotting.plot_positional_encoding(np.zeros((4, 6)), tmp_path / "p.png")
    assert list(tmp_path.iterdir()) == []


def module_level_imports(path):
    """The top-level module names `path` imports outside function bodies."""
    names = set()

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.Import):
                names.update(alias.name.split(".")[0] for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0:
                names.add(child.module.split(".")[0])
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return names


def test_eager_modules_import_no_heavy_module_at_module_level():
    checked = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        part = path.relative_to(PACKAGE).parts[0]
        if part not in HEAVY_ALLOWED:
            checked[str(path.relative_to(PACKAGE))] = sorted(
                module_level_imports(path) & set(HEAVY)
            )
    assert {
        "layers/attention.py",
        "models/transformer.py",
        "training/schedule.py",
        "tokens.py",
        "_validation.py",
    } <= set(checked)
    assert {name: heavy for name, heavy in checked.items() if heavy} == {}


def test_module_level_imports_sees_nested_imports_but_not_function_bodies(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(
        "import os.path\n"
        "from tensorflow import nn\n"
        "try:\n    import matplotlib.pyplot\nexcept ImportError:\n    pass\n"
        "class A:\n    import ai_edge_litert\n"
        "    def f(self):\n        import tensorflow_datasets\n"
        "def g():\n    import jax\n"
        "from . import sibling\n"
    )
    assert module_level_imports(path) == {"os", "tensorflow", "matplotlib", "ai_edge_litert"}
