"""Keras' own tests of `keras.layers.MultiHeadAttention`, run on our class.

The test file ships inside the installed Keras wheel
(`keras/src/layers/attention/multi_head_attention_test.py`). It is copied
with every `layers.MultiHeadAttention` replaced by
`keras_transformer_layers.MultiHeadAttention`, nothing else changed, and run
by pytest in a fresh process on the current backend. Every test must pass,
except those Keras itself skips on the backend; `DEPARTURES` lists the Keras
tests our layer deliberately fails (with a test of our behaviour instead),
and it is empty: the layer passes all of them.
"""

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import keras
import pytest

pytestmark = pytest.mark.backend_neutral

KERAS_TEST = os.path.join(
    os.path.dirname(keras.__file__), "src", "layers", "attention", "multi_head_attention_test.py"
)
# Keras' tests that our layer fails on purpose, by name: none.
DEPARTURES = {}
# What Keras skips itself: flash attention exists on JAX and PyTorch only.
KERAS_SKIPS = {
    "tensorflow": {"test_basics_with_flash_attention", "test_flash_attention_with_errors"},
    "jax": set(),
}


def _substituted(source):
    """Keras' test file with our class in place of Keras' layer."""
    source, count = re.subn(
        r"\blayers\.MultiHeadAttention\b", "keras_transformer_layers.MultiHeadAttention", source
    )
    assert count > 40  # every construction, the subclass test included
    anchor = "from keras.src.backend.config import is_flash_attention_enabled\n"
    assert anchor in source
    return source.replace(anchor, anchor + "import keras_transformer_layers\n", 1)


def test_keras_own_multi_head_attention_tests_pass_with_our_class(tmp_path):
    with open(KERAS_TEST, encoding="utf-8") as file:
        source = _substituted(file.read())
    test_file = tmp_path / "test_keras_mha_with_ours.py"
    test_file.write_text(source, encoding="utf-8")
    report = tmp_path / "report.xml"
    environment = dict(os.environ, KERAS_BACKEND=keras.config.backend())
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    command += ["-p", "no:xdist", f"--junitxml={report}", str(test_file)]
    subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, check=False)
    outcomes = {}
    for case in ElementTree.parse(report).iter("testcase"):
        kinds = {child.tag for child in case} & {"failure", "error", "skipped"}
        outcomes[case.get("name")] = kinds.pop() if kinds else "passed"
    failed = {name for name, outcome in outcomes.items() if outcome in ("failure", "error")}
    skipped = {name for name, outcome in outcomes.items() if outcome == "skipped"}
    assert failed == set(DEPARTURES)
    assert skipped == KERAS_SKIPS[keras.config.backend()]
    assert len(outcomes) == 50  # the 50 tests of Keras 3.15.1's file
