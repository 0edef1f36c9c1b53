"""The stderr filter drops TensorFlow's known notices and passes every other line."""

import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.backend_neutral

# Loaded from its file in the test process, so that importing the package
# (and with it TensorFlow, which writes its own start-up lines) stays out.
_MODULE = (
    pathlib.Path(__file__).resolve().parents[1]
    / "keras_transformer_layers"
    / "_tensorflow_notices.py"
)

# Copied from TensorFlow 2.21 and LiteRT runs on a CPU-only machine.
NOTICES = [
    "E0000 00:00:1796068387.731556   21587 cuda_platform.cc:52] failed call to cuInit: "
    "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    "E0000 00:00:1796068586.790904   23068 util.cc:131] oneDNN supports DT_BOOL only on "
    "platforms with AVX-512. Falling back to the default Eigen-based implementation if present.",
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
]
# Real messages, some close to a notice: every one must get through.
MESSAGES = [
    "E0000 00:00:1796068387.731556   21587 cuda_platform.cc:52] failed call to cuInit: "
    "CUDA_ERROR_OUT_OF_MEMORY: out of memory",
    "E0000 00:00:1796068586.790904   23068 util.cc:131] oneDNN supports DT_BOOL only on "
    "platforms with AVX-512. Falling back to the default Eigen-based implementation if present. "
    "And something else.",
    "W0000 00:00:1796068328.433334   19855 cudart_stub.cc:31] Could not find cuda drivers on "
    "your machine, GPU will not be used.",
    "error: MODEL must be an existing .keras file. Received: model='x.keras'",
    "caf\u00e9 \u2013 not ASCII",
    # Written while TensorFlow loads, before the filter can start: not filtered.
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
]

_SCRIPT = """
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("notices", sys.argv[1])
notices = importlib.util.module_from_spec(spec)
spec.loader.exec_module(notices)
notices.filter_stderr()
for line in sys.argv[3:]:
    os.write(2, (line + "\\n").encode("utf-8"))  # as C++ code writes, past Python
    print("stdout:", line[:10], flush=True)
if sys.argv[2] == "abort":
    os.abort()  # no exit handler runs
raise SystemExit("the last line")
"""


def _run(ending, lines):
    return subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(_MODULE), ending, *lines],
        capture_output=True,
        timeout=60,
    )


def test_drops_the_notices_and_keeps_every_other_line():
    lines = [NOTICES[0], MESSAGES[0], MESSAGES[1], NOTICES[1], MESSAGES[2]]
    lines += [NOTICES[2], NOTICES[0], MESSAGES[3], MESSAGES[4], MESSAGES[5]]
    result = _run("exit", lines)
    assert result.returncode == 1
    assert result.stderr.decode("utf-8").splitlines() == MESSAGES + ["the last line"]
    assert len(result.stdout.decode("utf-8").splitlines()) == len(lines)  # stdout untouched


def test_a_crash_loses_no_line():
    result = _run("abort", [NOTICES[0], MESSAGES[0], MESSAGES[3]])
    assert result.returncode != 0
    assert result.stderr.decode("utf-8").splitlines() == [MESSAGES[0], MESSAGES[3]]
