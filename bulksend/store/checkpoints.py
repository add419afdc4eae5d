"""Checkpoints: how a rerun skips, unread, the rows earlier runs settled.

A nightly export grows at its end; resuming it used to read, map and look up
every row already sent before reaching the new ones (17 s at a million rows).
At the end of a complete run, the journal keeps a *checkpoint* at every
``INTERVAL``-th record boundary of the input below the first row that still
needs something (failed, unknown, not yet sent), and at the last row when
every row is settled. A checkpoint says: the input's first ``offset`` bytes
hold records 1..``number``; every data row among them is settled (sent,
invalid or a duplicate); the results CSV's first ``results_offset`` bytes are
their lines, header included; ``counts`` are their statuses.

A rerun takes the last checkpoint that both files still match, byte for byte
(a chained BLAKE2b over the segments between checkpoints, so one pass over
each file checks them all), and starts reading the input there. Rows before it
are identical to the rows that run saw, with the same mapping, so they would
be settled the same way again: their lines are kept as they are, their counts
added. Anything that does not match (an edited row, another mapping, codec or
delimiter, a results file opened and saved in Excel) gives an earlier
checkpoint or none, that is, a full read, as before.

Only text inputs in UTF-8 or a one-byte code page can be read from the middle;
spreadsheets and UTF-16 always take the full read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bulksend.common.outcome import DUPLICATE, INVALID, SENT, Outcome
from bulksend.reading.table import Mark, Table

# Records between checkpoints: at most this many known rows are read again.
INTERVAL = 4096
SETTLED = frozenset({SENT, INVALID, DUPLICATE})  # final: a rerun would do nothing else with them
META = "checkpoints"
VERSION = 1
_CHUNK = 1 << 20


@dataclass
class Checkpoint:
    number: int  # input records 1..number (header and blank records included) are settled
    offset: int  # and are the input's first `offset` bytes
    digest: str  # chained hash of those bytes
    results_offset: int  # the results CSV's first bytes: header and those rows' lines
    results_digest: str
    counts: dict[str, int]  # statuses of the data rows among them

    @property
    def mark(self) -> Mark:
        return Mark(self.number, self.offset)

    @property
    def rows(self) -> int:
        """Data rows among records 1..number."""
        return sum(self.counts.values())


@dataclass
class Chain:
    codec: str
    delimiter: str
    mapping: str  # the mapping's digest
    base_run: int  # the first run whose claims the checkpoints rely on
    points: list[Checkpoint] = field(default_factory=list)
    # the first few invalid and duplicate rows below the last checkpoint: (row, key, error)
    examples: dict[str, list[tuple[int, str, str]]] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"version": VERSION, **asdict(self)}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Chain | None:
        try:
            data = json.loads(text)
            if data.pop("version") != VERSION:
                return None
            points = [Checkpoint(**p) for p in data.pop("points")]
            examples = {k: [(int(r), str(key), str(e)) for r, key, e in v]
                        for k, v in data.pop("examples").items()}
            return cls(points=points, examples=examples, **data)
        except (ValueError, TypeError, KeyError, AttributeError):
            return None

    @property
    def last(self) -> Checkpoint:
        return self.points[-1]

    def examples_upto(self, number: int) -> dict[str, list[Outcome]]:
        return {
            status: [Outcome(row=row, values={}, key=key, status=status, error=error)
                     for row, key, error in found if row <= number]
            for status, found in self.examples.items()
        }


def peek(journal: Path) -> str | None:
    """The stored chain, read without writing (no lock is held yet)."""
    if not journal.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        row = db.execute("SELECT value FROM meta WHERE name=?", (META,)).fetchone()
    except sqlite3.Error:
        return None
    finally:
        db.close()
    return None if row is None else str(row[0])


def _digests(path: Path, start: int, digest: str, offsets: list[int]) -> Iterator[str]:
    """The chained digest at each offset (ascending, >= start): BLAKE2b of the
    previous digest and the bytes since the previous offset. Read lazily, so a
    caller that stops at a mismatch reads no further; ends early with the file."""
    with open(path, "rb") as f:
        f.seek(start)
        pos = start
        for end in offsets:
            h = hashlib.blake2b(bytes.fromhex(digest), digest_size=16)
            while pos < end:
                chunk = f.read(min(_CHUNK, end - pos))
                if not chunk:
                    return
                h.update(chunk)
                pos += len(chunk)
            digest = h.hexdigest()
            yield digest


def _matching(path: Path, pairs: list[tuple[int, str]]) -> int:
    """How many leading (offset, digest) pairs the file at ``path`` still matches."""
    n = 0
    with contextlib.suppress(OSError):
        for (_, want), got in zip(pairs, _digests(path, 0, "", [o for o, _ in pairs]), strict=False):
            if got != want:
                break
            n += 1
    return n


def usable(stored: str | None, table: Table, mapping_digest: str, results: Path) -> Chain | None:
    """The stored chain cut to the checkpoints both files still match; None when none does."""
    if stored is None or not table.seekable or table.path is None or not results.exists():
        return None
    chain = Chain.from_json(stored)
    if chain is None or not chain.points:
        return None
    if (chain.codec, chain.delimiter, chain.mapping) != (table.encoding, table.delimiter, mapping_digest):
        return None
    n = _matching(Path(table.path), [(p.offset, p.digest) for p in chain.points])
    n = _matching(results, [(p.results_offset, p.results_digest) for p in chain.points[:n]])
    if n == 0:
        return None
    chain.points = chain.points[:n]
    return chain


def interval() -> int:
    """INTERVAL, or BULKSEND_CHECKPOINT_EVERY when it is a positive whole
    number (for tests, which need checkpoints inside small files)."""
    every = os.environ.get("BULKSEND_CHECKPOINT_EVERY", "")
    return int(every) if every.isdigit() and int(every) > 0 else INTERVAL


class Tracker:
    """What the end of a run needs to lay new checkpoints: per-bucket status
    counts, the first row that is not settled, and the last row seen."""

    def __init__(self) -> None:
        self.interval = interval()
        self.buckets: dict[int, Counter[str]] = {}
        self.first_unsettled: int | None = None
        self.last_row = 0

    def note(self, outcome: Outcome) -> None:
        row = outcome.row
        bucket = self.buckets.get((row - 1) // self.interval)
        if bucket is None:
            bucket = self.buckets[(row - 1) // self.interval] = Counter()
        bucket[outcome.status] += 1
        if outcome.status not in SETTLED and (self.first_unsettled is None or row < self.first_unsettled):
            self.first_unsettled = row
        if row > self.last_row:
            self.last_row = row

    def candidates(self, after: int, header_row: int) -> list[int]:
        """Record numbers that may take a checkpoint: every ``interval``-th below the
        first unsettled row, and the last row when all are settled."""
        stop = self.first_unsettled if self.first_unsettled is not None else self.last_row + 1
        low = max(after, header_row)
        numbers = list(range((low // self.interval + 1) * self.interval, stop, self.interval))
        if self.first_unsettled is None and self.last_row > low and self.last_row not in numbers:
            numbers.append(self.last_row)
        return numbers

    def counts_upto(self, base: dict[str, int], number: int) -> dict[str, int]:
        """``base`` plus the statuses of this run's rows up to ``number``.
        Exact at multiples of ``interval``; at the last row, every bucket counts."""
        total: Counter[str] = Counter(base)
        for bucket, counts in self.buckets.items():
            if (bucket + 1) * self.interval <= number or number == self.last_row:
                total.update(counts)
        return dict(total)


def extend(
    previous: Chain | None,
    *,
    table: Table,
    results: Path,
    mapping_digest: str,
    run_id: int,
    tracker: Tracker,
    results_offsets: dict[int, int],
    examples: dict[str, list[Outcome]],
) -> Chain | None:
    """The chain after a complete run: the checkpoints it started from, then
    new ones over the rows it settled. ``results_offsets``: for each number of
    ``tracker.candidates()``, where the results file's lines up to that row end
    (``ResultsWriter.finish``). None when the input cannot be read from the middle."""
    if not table.seekable or table.path is None or table.encoding is None or table.delimiter is None:
        return None
    kept = previous.points if previous is not None else []
    start = kept[-1] if kept else None
    numbers = sorted(results_offsets)
    marks = table.marks(start.mark if start else None, numbers)
    chain = Chain(
        codec=table.encoding,
        delimiter=table.delimiter,
        mapping=mapping_digest,
        base_run=previous.base_run if previous is not None else run_id,
        points=list(kept),
    )
    if marks:
        in_digests = _digests(Path(table.path), start.offset if start else 0,
                              start.digest if start else "", [m.offset for m in marks])
        res_offsets = [results_offsets[m.number] for m in marks]
        res_digests = _digests(results, start.results_offset if start else 0,
                               start.results_digest if start else "", res_offsets)
        base_counts = start.counts if start else {}
        for mark, digest, res_offset, res_digest in zip(marks, in_digests, res_offsets, res_digests,
                                                        strict=False):
            chain.points.append(Checkpoint(mark.number, mark.offset, digest, res_offset, res_digest,
                                           tracker.counts_upto(base_counts, mark.number)))
    if not chain.points:
        return None
    last = chain.last.number
    chain.examples = {
        status: [(o.row, o.key, o.error) for o in examples.get(status, []) if o.row <= last]
        for status in (INVALID, DUPLICATE)
    }
    return chain
