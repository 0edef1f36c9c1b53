"""tests/conftest.py: a missing optional extra skips its tests with the reason, unless
KTL_REQUIRE_EXTRAS=1 (the TensorFlow run of `make test`), where it fails them."""

import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.backend_neutral

ROOT = pathlib.Path(__file__).parents[1]

# `None` in sys.modules makes `import` raise ModuleNotFoundError, as a missing package does.
TESTS = {
    "test_module_level.py": 'import sys\nsys.modules["sacrebleu"] = None\nimport sacrebleu\n',
    "test_in_test.py": """\
import sys


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


def _pytest(tmp_path, require_extras):
    (tmp_path / "conftest.py").write_text("from tests.conftest import *  # noqa: F403\n")
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


def test_with_every_extra_required_a_missing_one_fails(tmp_path):
    result = _pytest(tmp_path, require_extras="1")
    assert result.returncode != 0
    assert "skipped" not in result.stdout
    # The first check: every extra of EXTRA_OF_MODULE is installed, or the run stops.
    # The extras are installed here, so the run goes on and the imports fail.
    assert "2 failed, 1 error" in result.stdout, result.stdout
