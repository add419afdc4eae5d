"""The results CSV survives write-then-read (STYLE: properties where inputs are
open-ended): whatever text a cell holds, reading the file back gives it again,
except that formula-like cells carry the neutralising quote on disk."""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from bulksend.common.outcome import STATUSES, Outcome
from bulksend.store.results import COLUMNS, ResultsWriter, read_results

cell = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)


@settings(max_examples=150, deadline=None)
@example(rows=[("'=already quoted", "sent", "''+1", "'@x", None)], columns=["a"])
@given(
    rows=st.lists(
        st.tuples(cell, st.sampled_from(STATUSES), cell, cell, st.none() | st.integers(100, 599)),
        min_size=1, max_size=8,
    ),
    columns=st.lists(st.text("abcdefgh ", min_size=1, max_size=6), min_size=1, max_size=3, unique=True),
)
def test_results_survive_write_then_read(rows: list[tuple[str, str, str, str, int | None]],
                                         columns: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "results.csv"
        writer = ResultsWriter(path, None, columns)
        writer.open()
        outcomes = []
        for n, (key, status, error, value, http) in enumerate(rows, start=2):
            o = Outcome(row=n, key=key, status=status, error=error, http_status=http, attempts=n,
                        values={c: value for c in columns})
            outcomes.append(o)
            writer.write(o)
        writer.finish()

        back = list(read_results(path))
        assert [int(r["row"]) for r in back] == [o.row for o in outcomes]
        for o, r in zip(outcomes, back, strict=True):
            assert r["key"] == o.key and r["status"] == o.status and r["error"] == o.error
            assert r["http_status"] == ("" if o.http_status is None else str(o.http_status))
            assert all(r[c] == o.values[c] for c in columns)
        # On disk, nothing a spreadsheet would run as a formula.
        with open(path, encoding="utf-8-sig", newline="") as fh:
            for line in list(csv.reader(fh))[1:]:
                assert not any(c.lstrip("'")[:1] in ("=", "+", "-", "@", "\t", "\r") and c[:1] != "'"
                               for c in line)
        assert path.read_bytes().startswith(b"\xef\xbb\xbf" + ",".join(COLUMNS[:2]).encode())
