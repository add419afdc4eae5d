"""What a person (or a log collector) sees while a run goes: the CLI's Progress
implementations. A tqdm bar on a terminal; a line every few seconds when
standard error is not a terminal (cron, systemd); JSON events with
``--log-format json``."""

from __future__ import annotations

import codecs
import json
import sys
import time
import unicodedata
from collections import Counter
from typing import IO, Any

from bulksend.common.outcome import FAILED, SENT, Outcome

# -- a console that cannot print everything (issue 26) -----------------------
# Windows writes redirected output (and a console under an old code page) in
# its legacy code page, cp1252 in western Europe: no "→", no "█", no "Ł". A
# name or a message that holds one must not end the run with a
# UnicodeEncodeError: such a stream writes an ASCII form instead.

ASCII_FORMS = "bulksend-ascii-forms"
_FORMS = {"→": "->", "←": "<-", "…": "...", "█": "#", "—": "-", "\u2013": "-", "\u2018": "'",
          "\u2019": "'", "“": '"', "”": '"', "≥": ">=", "≤": "<=", "\u00d7": "x", "·": ".", "•": "*",
          "✓": "ok", "Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "\u0131": "i"}  # letters NFKD leaves whole


def _ascii_form(char: str) -> str:
    """"→" -> "->", "Ł" -> "L" (its letter without the mark where Unicode has
    one), anything else "?"."""
    form = _FORMS.get(char)
    if form is None:
        form = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode("ascii") or "?"
    return form


def _ascii_forms(error: UnicodeError) -> tuple[str, int]:
    """The codec error handler ``ASCII_FORMS``: each character the encoding
    cannot write, as ``_ascii_form`` writes it."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    return "".join(map(_ascii_form, error.object[error.start:error.end])), error.end


codecs.register_error(ASCII_FORMS, _ascii_forms)


def prints_everything(stream: IO[str]) -> bool:
    """Whether ``stream``'s encoding can write any text (UTF-8 and its kin)."""
    try:
        "█→…Ł".encode(getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def fit_console(stream: IO[str]) -> None:
    """Make ``stream`` write, in place of what its encoding cannot write, an
    ASCII form ("→" as "->", "█" as "#", "Ł" as "L", else "?") rather than
    raise UnicodeEncodeError. A stream that can write everything, or cannot be
    reconfigured (not a TextIOWrapper), is left as it is."""
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None and not prints_everything(stream):
        reconfigure(errors=ASCII_FORMS)


def _counts_text(counts: Counter[str]) -> str:
    order = ("sent", "failed", "unknown", "invalid", "duplicate", "ready")
    return " ".join(f"{name}={counts[name]}" for name in order if counts[name])


class _Base:
    def __init__(self, stream: IO[str] | None = None, *, verbose: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.verbose = verbose
        self.total = 0
        self.counts: Counter[str] = Counter()
        self.done = 0
        self.skipped = 0  # rows carried unread from earlier runs: not in the rate
        self.started = time.monotonic()
        self.current_rate = 0.0
        self.retrying_rows: set[object] = set()  # rows between a retryable error and their outcome
        self.started_run = False  # nothing to close before start(): no line on an input error

    def _rate_eta(self) -> tuple[float, float | None]:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = (self.done - self.skipped) / elapsed
        left = self.total - self.done
        return rate, (left / rate if rate > 0 and left > 0 else None)

    def start(self, total: int) -> None:
        self.total = total
        self.started = time.monotonic()
        self.started_run = True

    def outcome(self, outcome: Outcome) -> None:
        self.counts[outcome.status] += 1
        self.done += 1

    def carried(self, counts: dict[str, int]) -> None:
        self.counts.update(counts)
        self.done += sum(counts.values())
        self.skipped += sum(counts.values())

    def rate(self, per_second: float) -> None:
        self.current_rate = per_second


class _Periodic(_Base):
    """A progress report every ``every`` seconds of rows, and one at the end."""

    def __init__(self, stream: IO[str] | None = None, *, every: float = 5.0,
                 verbose: bool = False) -> None:
        super().__init__(stream, verbose=verbose)
        self.every = every
        self._last = time.monotonic()

    def _report(self) -> None:
        raise NotImplementedError

    def outcome(self, outcome: Outcome) -> None:
        super().outcome(outcome)
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self._report()

    def close(self) -> None:
        if self.started_run:
            self._report()


class LineProgress(_Periodic):
    """Headless: one line every ``every`` seconds, plus notable events."""

    def _line(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.stream.write(f"{stamp} {text}\n")
        self.stream.flush()

    def _report(self) -> None:
        rate, eta = self._rate_eta()
        eta_text = f" eta={eta:.0f}s" if eta is not None else ""
        self._line(
            f"progress {self.done}/{self.total} {_counts_text(self.counts)} "
            f"rate={rate:.1f}/s{eta_text}".replace("  ", " ")
        )

    def start(self, total: int) -> None:
        super().start(total)
        self._line(f"start rows={total}")

    def event(self, kind: str, message: str, **fields: Any) -> None:
        if kind in ("retry", "reconciled") and not self.verbose:
            return
        self._line(f"{kind} {message}")


class JsonProgress(_Periodic):
    """``--log-format json``: one JSON object per line, per event and per
    progress tick (and per row with --verbose). On a stream that cannot write
    every character, the others are written as JSON's \\u escapes: the log
    keeps each name exactly."""

    def __init__(self, stream: IO[str] | None = None, *, every: float = 5.0,
                 verbose: bool = False) -> None:
        super().__init__(stream, every=every, verbose=verbose)
        self._escape = not prints_everything(self.stream)

    def _emit(self, event: str, **fields: Any) -> None:
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "event": event, **fields}
        self.stream.write(json.dumps(record, ensure_ascii=self._escape) + "\n")
        self.stream.flush()

    def _report(self) -> None:
        rate, eta = self._rate_eta()
        self._emit("progress", done=self.done, total=self.total, counts=dict(self.counts),
                   rate=round(rate, 2), eta_seconds=None if eta is None else round(eta, 1))

    def start(self, total: int) -> None:
        super().start(total)
        self._emit("start", rows=total)

    def outcome(self, outcome: Outcome) -> None:
        if self.verbose:
            self._emit("row", row=outcome.row, key=outcome.key, status=outcome.status,
                       request_id=outcome.request_id, http_status=outcome.http_status,
                       error=outcome.error)
        super().outcome(outcome)

    def event(self, kind: str, message: str, **fields: Any) -> None:
        self._emit(kind, message=message, **fields)


class BarProgress(_Base):
    """A tqdm bar; messages are written through tqdm so they never tear it."""

    def __init__(self, stream: IO[str] | None = None, *, verbose: bool = False) -> None:
        super().__init__(stream, verbose=verbose)
        self.bar: Any = None

    def start(self, total: int) -> None:
        from tqdm import tqdm

        super().start(total)
        self.bar = tqdm(total=total, unit="row", file=self.stream, dynamic_ncols=True,
                        smoothing=0.1, mininterval=0.2)

    def _postfix(self) -> None:
        if self.bar is None:
            return
        parts: dict[str, object] = {"sent": self.counts[SENT], "failed": self.counts[FAILED]}
        if self.retrying_rows:
            parts["retrying"] = len(self.retrying_rows)
        if self.current_rate:
            parts["gate"] = f"{self.current_rate:.1f}/s"
        self.bar.set_postfix(parts, refresh=False)

    def outcome(self, outcome: Outcome) -> None:
        super().outcome(outcome)
        self.retrying_rows.discard(outcome.row)
        if self.bar is not None:
            self._postfix()
            self.bar.update(1)

    def carried(self, counts: dict[str, int]) -> None:
        super().carried(counts)
        if self.bar is not None:
            # As tqdm's `initial`: its rate and ETA then count this run's rows only.
            self.bar.initial = self.bar.n = self.bar.last_print_n = self.done
            self._postfix()
            self.bar.refresh()

    def event(self, kind: str, message: str, **fields: Any) -> None:
        if kind == "retry":
            self.retrying_rows.add(fields.get("row", -1))
            if not self.verbose:
                self._postfix()
                return
        from tqdm import tqdm

        tqdm.write(f"{kind}: {message}", file=self.stream)

    def rate(self, per_second: float) -> None:
        super().rate(per_second)
        self._postfix()

    def close(self) -> None:
        if self.bar is not None:
            self._postfix()
            self.bar.refresh()
            self.bar.close()


class QuietProgress(_Base):
    """``--no-progress`` on a terminal: only the notable events."""

    def event(self, kind: str, message: str, **fields: Any) -> None:
        if kind in ("retry", "reconciled"):
            return
        self.stream.write(f"{kind}: {message}\n")

    def close(self) -> None:
        pass


def make_progress(*, log_format: str, no_progress: bool, verbose: bool,
                  stream: IO[str] | None = None) -> Any:
    stream = stream or sys.stderr
    if log_format == "json":
        return JsonProgress(stream, verbose=verbose)
    if not stream.isatty():
        return LineProgress(stream, verbose=verbose)
    if no_progress:
        return QuietProgress(stream, verbose=verbose)
    return BarProgress(stream, verbose=verbose)
