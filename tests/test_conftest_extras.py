"""tests/conftest.py: a missing optional extra skips its tests with the reason, unless
KTL_REQUIRE_EXTRAS=1 (the TensorFlow run of `make test`), where it fails them."""

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

from tests.conftest import EXTRA_OF_MODULE

pytestmark = pytest.mark.backend_neutral

ROOT = pathlib.Path(__file__).parents[1]

# `None` in sys.modules makes `import` raise ModuleNotFoundError, as a missing
# package does, and `importlib.util.find_spec` return None.
TESTS = {
    "test_module_level.py": """\
import sys

import pytest

pytestmark = pytest.mark.backend_neutral
sys.modules["sacrebleu"] = None
import sacrebleu  # noqa: E402, F401
""",
    "test_in_test.py": """\
import sys

import pytest

pytestmark = pytest.mark.backend_neutral


def test_wrapped():
    sys.modules["ai_edge_litert"] = None
    try:
        import ai_edge_litert  # noqa: F401
    except ImportError as error:
        raise ImportError("the package's own message") from error


def test_not_an_extra():
    raise ModuleNotFoundError("missing", name="not_an_extra")
""",
}


def _pytest(tmp_path, require_extras, hidden=()):
    """Runs the tests above with the suite's conftest, `hidden` modules made missing first."""
    hide = "".join(f"sys.modules[{name!r}] = None\n" for name in hidden)
    conftest = f"import sys\n\n{hide}from tests.conftest import *  # noqa: F403\n"
    (tmp_path / "conftest.py").write_text(conftest)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers = backend_neutral: any backend\n")
    for name, text in TESTS.items():
        (tmp_path / name).write_text(text)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KTL_REQUIRE_EXTRAS": require_extras}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"]
        + ["--continue-on-collection-errors", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_a_missing_extra_skips_with_the_extra_named(tmp_path):
    result = _pytest(tmp_path, require_extras="0")
    assert result.returncode == 1, result.stdout  # test_not_an_extra still fails
    assert "1 failed, 2 skipped" in result.stdout
    assert "needs the `dev` extra (sacrebleu is not installed)" in result.stdout
    assert "needs the `litert` extra (ai_edge_litert is not installed)" in result.stdout


def test_with_every_extra_required_a_missing_one_stops_the_run(tmp_path):
    result = _pytest(tmp_path, require_extras="1", hidden=["sacrebleu"])
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    assert "these extras are not installed: " in result.stderr
    assert "`dev` (sacrebleu)" in result.stderr
    assert "passed" not in result.stdout and "skipped" not in result.stdout


@pytest.mark.skipif(
    any(importlib.util.find_spec(module) is None for module in EXTRA_OF_MODULE),
    reason="needs every extra installed, as in .venv",
)
def test_with_every_extra_required_a_failing_import_fails_the_test(tmp_path):
    result = _pytest(tmp_path, require_extras="1")
    assert "2 failed, 1 error" in result.stdout, result.stdout
    assert "skipped" not in result.stdout
