"""``bulksend report``: what a results CSV says, for the person who opens it."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from bulksend.common.outcome import DUPLICATE, EXCLUDED, FAILED, FILTERED, INVALID, READY, SENT, UNKNOWN
from bulksend.store.results import read_results
from bulksend.tasks.remembered import remembered, send_command

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
    """The report of the results file at ``path``: rows by status, reasons and
    notes grouped (``examples`` rows each), and what to run next. Raises
    ``ResultsError`` when it cannot be read as a results file."""
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
    out.extend(rerun_lines(path, counts))
    if counts[FILTERED] or counts[EXCLUDED]:
        out.append("filtered and excluded rows were left out (--where, --exclude): a run without sends them.")
    return "\n".join(out)


def rerun_lines(path: Path, counts: Counter[str]) -> list[str]:
    """What to run next, with the files the send used (tasks/remembered.py):
    each command, run as printed, does what the line before it says (issue 27)."""
    ready, failed, unknown = counts[READY], counts[FAILED], counts[UNKNOWN]
    to_fix = counts[INVALID] + counts[DUPLICATE]
    if remembered(path).send.get("demo"):
        return ["this is the demo's record; its sandbox is gone. `bulksend demo` runs it again."]
    found = send_command(path)
    if found is None:
        if not (ready or failed or unknown or to_fix):
            return ["nothing to rerun."]
        return [f"{path}: the send that wrote it is not recorded beside it (no journal, or an older one): "
                f"to go on, rerun that send command with --results {path}"]
    command, note = found
    shown = f"  {command}" + (f"   # {note}" if note else "")
    out: list[str] = []
    will = [f"sends the {ready} rows not sent yet (ready)"] if ready else []
    will += [f"retries the {failed} failed"] if failed else []
    will += [f"looks the {unknown} unknown up before any resend"] if unknown else []
    if will:
        out += ["rerun the send: it " + ", ".join(will) + "; rows already sent are not sent again:", shown]
    if failed:
        only, _ = send_command(path, "--only-failed") or (command, "")
        # Unknown rows are looked up before anything is sent, --only-failed or not.
        kept = f" (the {ready} ready stay unsent)" if ready else ""
        out += [f"or only the {failed} failed rows{kept}:",
                f"  {only}" + (f"   # {note}" if note else "")]
    if to_fix:
        out.append("invalid and duplicate rows are never sent: fix them in the file, then rerun the send"
                   + ("." if will else ":"))
        if not will:
            out.append(shown)
    return out or ["nothing to rerun."]
