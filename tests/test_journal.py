"""The journal's claims, batch by batch, answer as the plain rule says: a key
met earlier in this run is a duplicate of the first row that met it; a key
from an earlier run shows its earlier record; a new key has none. Whatever the
batch boundaries and the keys met in earlier runs."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from bulksend.store.journal import Journal

keys = st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), max_size=30)


def claim_all(journal: Journal, keys: list[str], chunk: int) -> list[tuple[object, ...] | None]:
    items = [(key, n, None) for n, key in enumerate(keys, start=2)]
    out: list[tuple[object, ...] | None] = []
    for i in range(0, len(items), chunk):
        for r in journal.claim_many(items[i:i + chunk], lambda _: "{}"):
            out.append(None if r is None else (r.key, r.row, r.run_id))
    return out


@settings(max_examples=100, deadline=None)
@given(earlier=keys, now=keys, chunk=st.integers(1, 7), earlier_chunk=st.integers(1, 7))
def test_claim_many_follows_the_rule(earlier: list[str], now: list[str], chunk: int,
                                     earlier_chunk: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "results.csv.journal"
        first = Journal(path)
        claim_all(first, earlier, earlier_chunk)
        first.commit()
        first.close()
        journal = Journal(path)

        got = claim_all(journal, now, chunk)

        # The rule, written out plainly.
        first_row: dict[str, int] = {}
        for n, key in enumerate(earlier, start=2):
            first_row.setdefault(key, n)
        expected: list[tuple[object, ...] | None] = []
        met_now: dict[str, int] = {}
        for n, key in enumerate(now, start=2):
            if key in met_now:
                expected.append((key, met_now[key], journal.run_id))
            elif key in first_row:
                expected.append((key, n, journal.run_id - 1))
                met_now[key] = n
            else:
                expected.append(None)
                met_now[key] = n
        assert got == expected
        # And the journal now says which row holds each key, in this run.
        for key, row in met_now.items():
            record = journal.get(key)
            assert record is not None and (record.row, record.run_id) == (row, journal.run_id)
        journal.close()
