"""`make test`'s stage runner (tools/run_stages.py) runs every stage and reports each."""

import importlib.util
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


def test_times_are_rounded_to_whole_seconds_before_they_are_split():
    spec = importlib.util.spec_from_file_location("run_stages", RUNNER)
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    # 839.6 s is 13 min 59.6 s: rounded, 14 min 0 s, never "13 min 60 s".
    assert runner.minutes_and_seconds(839.6).split() == ["14", "min", "0", "s"]
    assert runner.minutes_and_seconds(59.4).split() == ["0", "min", "59", "s"]
    table = runner.summary([("a", 0, 839.6), ("b", 2, 0.5)]).splitlines()
    assert table[2].split()[-4:] == ["14", "min", "0", "s"]
    assert table[-1].split()[-4:] == ["14", "min", "0", "s"]  # 840.1 s in all


def test_every_stage_passing_passes_the_run(tmp_path):
    result = _run_stages(tmp_path, "first", "last")
    assert result.returncode == 0
    assert "total            all passed" in result.stdout


def test_no_stage_is_a_usage_error(tmp_path):
    result = _run_stages(tmp_path)
    assert result.returncode != 0
    assert "Usage:" in result.stderr
