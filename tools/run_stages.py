"""`make test`: runs every stage, whatever the earlier ones gave, then one line per stage.

Usage: `python tools/run_stages.py MAKE STAGE...` (the Makefile passes `$(MAKE)`, so the
stages run with the same make and settings). Exits 1 if any stage failed.
"""

import subprocess
import sys
import time


def run(make, stages):
    """Runs `make STAGE` for each stage in order; returns `[(stage, exit status, seconds)]`."""
    results = []
    for stage in stages:
        print(f"\n== make {stage} ==", flush=True)
        start = time.monotonic()
        status = subprocess.call([make, "--no-print-directory", stage])
        results.append((stage, status, time.monotonic() - start))
    return results


def minutes_and_seconds(seconds):
    """`seconds` rounded to whole seconds, as `"M min SS s"` (right-aligned)."""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes:3d} min {rest:2d} s"


def summary(results):
    """The table printed at the end: stage, result and wall time, then the total."""
    lines = ["", "== make test: every stage =="]
    for stage, status, seconds in results:
        result = "passed" if status == 0 else f"FAILED (exit status {status})"
        lines.append(f"  {stage:<16} {result:<28} {minutes_and_seconds(seconds)}")
    total = sum(seconds for _, _, seconds in results)
    failed = [stage for stage, status, _ in results if status != 0]
    verdict = f"failed: {', '.join(failed)}" if failed else "all passed"
    lines.append(f"  {'total':<16} {verdict:<28} {minutes_and_seconds(total)}")
    return "\n".join(lines)


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    results = run(argv[0], argv[1:])
    print(summary(results), flush=True)
    return 1 if any(status != 0 for _, status, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
