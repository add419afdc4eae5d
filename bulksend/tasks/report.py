"""``bulksend report``: what a results CSV says, for the person who opens it."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from bulksend.common.outcome import DUPLICATE, EXCLUDED, FAILED, FILTERED, INVALID, READY, SENT, UNKNOWN
from bulksend.store.results import read_results

_ORDER = (SENT, READY, FAILED, UNKNOWN, INVALID, DUPLICATE, FILTERED, EXCLUDED)


def reason_of(error: str) -> str:
    """Group errors by their shape: quoted values and numbers vary per row."""
    # Keep the column's name, drop the row's value and key.
    text = re.sub(r'(column )?"[^"]*"', lambda m: m.group(0) if m.group(1) else '"…"', error)
    text = re.sub(r"\([^()]*\); not sent$", "(…); not sent", text)
    text = re.sub(r"\brow \d+\b", "row N", text)
    text = re.sub(r"\b[0-9a-zA-Z]{17}\b", "<id>", text)
    return text.strip() or "(no message)"


def report_text(path: Path, *, examples: int = 3) -> str:
    counts: Counter[str] = Counter()
    reasons: dict[tuple[str, str], list[str]] = {}
    total = 0
    for line in read_results(path):
        total += 1
        status = line.get("status", "")
        counts[status] += 1
        # A sent row's error column holds a note when there is one (the
        # server's errors beside a created request, a request that existed
        # before the run): shown too, never dropped (issue 10, case 2).
        if status in (FAILED, UNKNOWN, INVALID, DUPLICATE, FILTERED, EXCLUDED) or (
                status == SENT and line.get("error")):
            reasons.setdefault((status, reason_of(line.get("error", ""))), []).append(line.get("row", "?"))
    out = [f"{path}: {total} rows"]
    for status in _ORDER:
        if counts[status]:
            out.append(f"  {status:<10}{counts[status]:>8}")
    for status in sorted(set(counts) - set(_ORDER)):
        out.append(f"  {status or '(blank)':<10}{counts[status]:>8}")
    if reasons:
        out.append("")
        out.append("reasons and notes:")
        ranked = sorted(reasons.items(), key=lambda item: (-len(item[1]), item[0]))
        for (status, reason), rows in ranked:
            shown = ", ".join(rows[:examples]) + (", …" if len(rows) > examples else "")
            out.append(f"  {len(rows):>6} {status}: {reason}  (rows {shown})")
    out.append("")
    if counts[FAILED] or counts[UNKNOWN] or counts[READY]:
        out.append("to retry what failed and settle unknown rows, rerun the same send command:")
        out.append(f"  bulksend send CONTACTS -m MAPPING.yaml --results {path}")
        if counts[FAILED]:
            out.append("or only the failed rows:")
            out.append(f"  bulksend send CONTACTS -m MAPPING.yaml --results {path} --only-failed")
    if counts[INVALID] or counts[DUPLICATE]:
        out.append("invalid and duplicate rows are never sent: fix them in the file, then rerun.")
    if counts[FILTERED] or counts[EXCLUDED]:
        out.append("filtered and excluded rows were left out (--where, --exclude): a run without sends them.")
    if not (counts[FAILED] or counts[UNKNOWN] or counts[INVALID] or counts[DUPLICATE]):
        out.append("nothing to rerun.")
    return "\n".join(out)
