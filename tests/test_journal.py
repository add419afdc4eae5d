"""The journal's batched claim answers exactly as one claim per key would
(a duplicate is a duplicate, a known key shows its earlier record), whatever
the batch boundaries and the keys met in earlier runs."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from bulksend.results import Journal

keys = st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), max_size=30)


def summary(record: object) -> tuple[object, ...] | None:
    if record is None:
        return None
    return (record.key, record.row, record.status, record.run_id)  # type: ignore[attr-defined]


@settings(max_examples=100, deadline=None)
@given(earlier=keys, now=keys, chunk=st.integers(1, 7))
def test_claim_many_equals_one_claim_per_key(earlier: list[str], now: list[str], chunk: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        one = Journal(Path(tmp) / "one.journal")
        many = Journal(Path(tmp) / "many.journal")
        for journal in (one, many):  # an earlier run met some keys
            for n, key in enumerate(earlier, start=2):
                journal.claim(key, n, "{}")
            journal.commit()
        one.close()
        many.close()
        one = Journal(Path(tmp) / "one.journal")
        many = Journal(Path(tmp) / "many.journal")

        single = [summary(one.claim(key, n, "{}")) for n, key in enumerate(now, start=2)]
        batched: list[tuple[object, ...] | None] = []
        items = [(key, n, None) for n, key in enumerate(now, start=2)]
        for i in range(0, len(items), chunk):
            batched += [summary(r) for r in many.claim_many(items[i:i + chunk], lambda _: "{}")]

        assert batched == single
        for key in set(now):
            assert summary(one.get(key)) == summary(many.get(key))
        one.close()
        many.close()
