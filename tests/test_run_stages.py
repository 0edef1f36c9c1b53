"""`make test`'s stage runner (tools/run_stages.py) runs every stage and reports each."""

import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.backend_neutral

RUNNER = pathlib.Path(__file__).parents[1] / "tools" / "run_stages.py"

MAKEFILE = """\
first:
\t@echo first ran
broken:
\t@echo broken ran; exit 3
last:
\t@echo last ran
"""


def _run_stages(tmp_path, *stages):
    (tmp_path / "Makefile").write_text(MAKEFILE)
    return subprocess.run(
        [sys.executable, str(RUNNER), "make", *stages],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )


def test_a_failed_stage_does_not_stop_the_later_ones_and_fails_the_run(tmp_path):
    result = _run_stages(tmp_path, "first", "broken", "last")
    assert result.returncode == 1
    ran = [line for line in result.stdout.splitlines() if line.endswith(" ran")]
    assert ran == ["first ran", "broken ran", "last ran"]
    table = result.stdout.split("== make test: every stage ==")[1].splitlines()[1:]
    assert [line.split()[:2] for line in table] == [
        ["first", "passed"],
        ["broken", "FAILED"],
        ["last", "passed"],
        ["total", "failed:"],
    ]
    assert "(exit status 2)" in table[1]  # make's status for a failed recipe
    assert "failed: broken " in table[3]


def test_every_stage_passing_passes_the_run(tmp_path):
    result = _run_stages(tmp_path, "first", "last")
    assert result.returncode == 0
    assert "total            all passed" in result.stdout


def test_no_stage_is_a_usage_error(tmp_path):
    result = _run_stages(tmp_path)
    assert result.returncode != 0
    assert "Usage:" in result.stderr
