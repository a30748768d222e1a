"""The ``pytest -m gpu`` run as one status line, read from its JUnit XML report.

passed: at least one test passed and none failed (the skipped ones and why are named);
skipped: every test was skipped (e.g. "needs CUDA and Transformer Engine" where Transformer
Engine is not installed); failed: a failure or error, no report, or no test selected.
"""

from __future__ import annotations

import collections
import re
import xml.etree.ElementTree as ET
from pathlib import Path


def summarize(junit: str | Path, returncode: int) -> tuple[str, str]:
    """(status, why) of a pytest run from its JUnit XML report and exit code."""
    from olmpool.smoke import FAILED, PASSED, SKIPPED

    p = Path(junit)
    if not p.exists():
        return FAILED, f"pytest exited {returncode} without a report ({p})"
    root = ET.parse(p).getroot()
    cases = root.findall(".//testcase")
    failed = [c for c in cases if c.find("failure") is not None or c.find("error") is not None]
    skipped = [c for c in cases if c.find("skipped") is not None]
    passed = len(cases) - len(failed) - len(skipped)
    reasons = collections.Counter(_skip_reason(c.find("skipped")) for c in skipped)
    why_skipped = "; ".join(f"{n} x {r}" for r, n in reasons.most_common())
    if failed:
        names = ", ".join(f"{c.get('classname')}.{c.get('name')}" for c in failed[:3])
        return FAILED, f"{len(failed)} failed ({names}), {passed} passed, {len(skipped)} skipped"
    # exit code 5 = "no tests collected": also what pytest says when every selected module
    # skipped itself at import (test_arch_gpu.py without Transformer Engine)
    if not cases or returncode not in (0, 5) or (returncode == 5 and len(skipped) != len(cases)):
        return FAILED, f"pytest exited {returncode} with {len(cases)} test(s) in its report"
    if passed == 0:
        return SKIPPED, f"all {len(skipped)} skipped: {why_skipped}"
    return PASSED, f"{passed} passed" + (f", {len(skipped)} skipped ({why_skipped})" if skipped else "")


def _skip_reason(el) -> str:
    """pytest's skip message without the file/line tuple it wraps module-level skips in."""
    msg = el.get("message") or el.text or "no reason given"
    if msg == "collection skipped" and el.text:
        msg = el.text
    m = re.search(r"Skipped: ([^'\"]+)", msg)
    return (m.group(1) if m else msg).strip()


def main(args) -> int:
    """``python -m olmpool.smoke pytest-report``: status line of a finished pytest run."""
    from olmpool.smoke import FAILED, write_status

    status, why = summarize(args.junit, args.returncode)
    print(write_status(args.status, status, why))
    return 1 if status == FAILED else 0
