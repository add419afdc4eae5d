"""The end of a run leaves the results file as it was streamed when the stream
is already in row order (issue 18: no rewrite of a complete file), and that
file is byte for byte what the rewrite writes: the same lines fed in another
order (which forces the rewrite) give the same bytes and the same checkpoint
offsets. Properties over open-ended cells (STYLE)."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bulksend.common.errors import ResultsError
from bulksend.common.outcome import STATUSES, Outcome
from bulksend.store.journal import Journal
from bulksend.store.results import ResultsWriter

SURROGATES: tuple[Literal["Cs"]] = ("Cs",)
cell = st.text(st.characters(blacklist_categories=SURROGATES, blacklist_characters="\x00"), max_size=30)
COLUMNS = ["Email", "Notes"]


def outcomes(cells: list[tuple[str, str, str]], first: int) -> list[Outcome]:
    return [Outcome(row=first + n, key=key, status=status, error=error, attempts=1,
                    values={"Email": f"p{n}@example.com", "Notes": error})
            for n, (key, status, error) in enumerate(cells)]


def finish(path: Path, feed: list[Outcome], *, journal: bool, keep: int = 0,
           after: list[int] | None = None) -> tuple[bytes, dict[int, int], bool]:
    """Stream ``feed`` in its order, finish; (the file's bytes, the offsets
    finish returned for ``after``, whether the file is the one streamed)."""
    j = Journal(path.with_suffix(".journal")) if journal else None
    try:
        writer = ResultsWriter(path, j, COLUMNS)
        writer.open(keep=keep)
        for outcome in feed:
            writer.write(outcome)
        streamed = os.stat(path).st_ino
        ends = writer.finish(after or [])
        return path.read_bytes(), ends, os.stat(path).st_ino == streamed
    finally:
        if j is not None:
            j.close()


@settings(max_examples=60, deadline=None)
@given(cells=st.lists(st.tuples(cell, st.sampled_from(STATUSES), cell), min_size=2, max_size=12),
       seed=st.integers(0, 10_000), journal=st.booleans(), twice=st.booleans())
def test_a_stream_in_order_is_kept_and_equals_the_rewrite(
        cells: list[tuple[str, str, str]], seed: int, journal: bool, twice: bool) -> None:
    rows = outcomes(cells, first=2)
    shuffled = rows[:]
    random.Random(seed).shuffle(shuffled)
    if shuffled == rows or twice:
        # An earlier line for the last row, superseded: out of order too.
        shuffled.insert(0, Outcome(row=rows[-1].row, key="stale", status="failed"))
    after = [rows[0].row, rows[len(rows) // 2].row, rows[-1].row]
    with tempfile.TemporaryDirectory() as tmp:
        kept, kept_ends, same_file = finish(Path(tmp) / "a.csv", rows, journal=journal, after=after)
        rewritten, rewritten_ends, same = finish(Path(tmp) / "b.csv", shuffled, journal=journal, after=after)
    assert same_file and not same  # in order: left as streamed; otherwise rewritten
    assert kept == rewritten
    assert kept_ends == rewritten_ends


@settings(max_examples=30, deadline=None)
@given(cells=st.lists(st.tuples(cell, st.sampled_from(STATUSES), cell), min_size=3, max_size=10),
       split=st.integers(1, 2), seed=st.integers(0, 10_000))
def test_a_resumed_stream_after_kept_bytes_equals_the_rewrite(
        cells: list[tuple[str, str, str]], split: int, seed: int) -> None:
    """A resumed run keeps the file's first bytes (checkpoints.py) and streams the rest."""
    rows = outcomes(cells, first=2)
    head, tail = rows[:split], rows[split:]
    shuffled = tail[::-1] if len(tail) > 1 else [Outcome(row=tail[0].row, status="failed"), *tail]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, feed in (("a.csv", tail), ("b.csv", shuffled)):
            path = Path(tmp) / name
            _, ends, _ = finish(path, head, journal=False, after=[head[-1].row])
            results.append(finish(path, feed, journal=True, keep=ends[head[-1].row], after=[rows[-1].row]))
    (kept, kept_ends, same_file), (rewritten, rewritten_ends, same) = results
    assert same_file and not same
    assert kept == rewritten and kept_ends == rewritten_ends


def test_a_hard_link_made_during_the_run_is_refused_as_the_rewrite_refuses_it(tmp_path: Path) -> None:
    """A stream in order is not taken as the results when another name was
    made for it during the run: finish refuses it as the rewrite does."""
    path = tmp_path / "r.csv"
    writer = ResultsWriter(path, None, COLUMNS)
    writer.open()
    for outcome in outcomes([("k1", "sent", ""), ("k2", "sent", "")], first=2):
        writer.write(outcome)
    os.link(path, tmp_path / "other.csv")
    with pytest.raises(ResultsError, match="2 names"):
        writer.finish()


def test_a_stale_tmp_from_a_killed_rewrite_goes_when_the_stream_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    (tmp_path / "r.csv.tmp").write_text("half a rewrite", encoding="utf-8")
    content, _, same_file = finish(path, outcomes([("k1", "sent", "")], first=2), journal=True)
    assert same_file and content.count(b"\n") == 2
    assert not (tmp_path / "r.csv.tmp").exists()
