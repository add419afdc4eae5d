"""Resuming a long run skips, unread, the rows earlier runs settled (issue 5,
item 3; bulksend/store/checkpoints.py) -- and gives exactly what a full read gives.

Each test runs the real CLI against the real sandbox. The yardstick is a full
read: the same command after the checkpoints are deleted from the journal
must send nothing more and write a byte-identical results CSV.
"""

from __future__ import annotations

import csv
import json
import random
import re
import shutil
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

from conftest import KEY, people, read_results, run_cli, write_contacts

from bulksend.sandbox import Sandbox
from bulksend.store.checkpoints import INTERVAL

SKIPPED = re.compile(r"resume:? ([\d,]+) rows up to row (\d+) were settled by earlier runs")


def send(workdir: Path, sandbox: Sandbox, *extra: str,
         env: dict[str, str] | None = None) -> tuple[int, str, dict[str, object]]:
    r = run_cli("send", "contacts.csv", "-m", "mapping.yaml", "--results", "results.csv",
                "--api-url", sandbox.url, "--rate", "none", "--no-progress",
                "--summary-json", "summary.json", *extra, cwd=workdir, key=KEY, timeout=300, env=env)
    summary = json.loads((workdir / "summary.json").read_text(encoding="utf-8"))
    return r.code, r.stdout + r.stderr, summary


def skipped_upto(stderr: str) -> int | None:
    found = SKIPPED.search(stderr)
    return None if found is None else int(found.group(2))


def append_rows(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "a", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["Email", "First Name", "Last Name", "Documents"])
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in writer.fieldnames})


def drop_checkpoints(workdir: Path) -> None:
    db = sqlite3.connect(workdir / "results.csv.journal")
    db.execute("DELETE FROM meta WHERE name='checkpoints'")
    db.commit()
    db.close()


def assert_same_as_full_read(workdir: Path, sandbox: Sandbox, summary: dict[str, object]) -> None:
    """The same command reading every row: the same results and counts, and no
    POST but the failed rows' new attempts (whose lines then differ)."""
    _, before = read_results(workdir / "results.csv")
    kept = (workdir / "results.csv").read_bytes()
    posts = sum(sandbox.stats["post_request"].values())
    drop_checkpoints(workdir)
    _, err, full = send(workdir, sandbox)
    assert skipped_upto(err) is None, err
    failed = [r["row"] for r in before if r["status"] == "failed"]
    assert sum(sandbox.stats["post_request"].values()) == posts + len(failed)
    assert full["counts"] == summary["counts"] and full["rows"] == summary["rows"]
    if not failed:
        assert (workdir / "results.csv").read_bytes() == kept
    _, after = read_results(workdir / "results.csv")
    assert [r for r in after if r["row"] not in failed] == [r for r in before if r["row"] not in failed]


def test_appended_rows_are_the_only_rows_read_again(workdir: Path, sandbox: Sandbox) -> None:
    rows = people(30)
    rows[4]["Email"] = "not-an-email"  # row 6: invalid
    rows[12]["Email"] = rows[2]["Email"]  # row 14: duplicate of row 4
    write_contacts(workdir / "contacts.csv", rows)
    code, err, first = send(workdir, sandbox)
    assert code == 1, err  # invalid and duplicate rows
    assert len(sandbox.created) == 28

    new = people(4, start=100)
    new[1]["Email"] = rows[7]["Email"]  # row 33: the key of row 9, a skipped row
    new[2]["Email"] = "also bad"  # row 34: invalid
    append_rows(workdir / "contacts.csv", new)

    code, err, summary = send(workdir, sandbox)

    assert code == 1, err
    assert skipped_upto(err) == 31, err  # header + 30 rows, none of them read again
    assert Counter(c["email"] for c in sandbox.created) == Counter(
        [r["Email"] for i, r in enumerate(rows) if i not in (4, 12)]
        + [new[0]["Email"], new[3]["Email"]]
    )
    assert summary["rows"] == 34
    assert summary["counts"] == {"sent": 30, "invalid": 2, "duplicate": 2}
    _, results = read_results(workdir / "results.csv")
    assert [r["row"] for r in results] == [str(n) for n in range(2, 36)]
    by_row = {int(r["row"]): r for r in results}
    assert by_row[33]["status"] == "duplicate" and "same key as row 9" in by_row[33]["error"]
    assert by_row[14]["status"] == "duplicate" and by_row[6]["status"] == "invalid"
    assert first["counts"] == {"sent": 28, "invalid": 1, "duplicate": 1}
    # The summary still names the invalid row it did not read again.
    assert "row 6: invalid" in err

    assert_same_as_full_read(workdir, sandbox, summary)


def test_an_edited_row_is_read_again_and_sent(workdir: Path, sandbox: Sandbox) -> None:
    rows = people(20)
    write_contacts(workdir / "contacts.csv", rows)
    assert send(workdir, sandbox)[0] == 0
    rows[9]["Email"] = "edited@example.com"  # row 11
    write_contacts(workdir / "contacts.csv", rows)

    code, err, summary = send(workdir, sandbox)

    assert code == 0, err
    assert skipped_upto(err) is None, err  # the only checkpoint (row 21) no longer matches
    assert [c["email"] for c in sandbox.created].count("edited@example.com") == 1
    assert len(sandbox.created) == 21
    assert_same_as_full_read(workdir, sandbox, summary)


def test_a_results_file_changed_by_hand_is_rebuilt(workdir: Path, sandbox: Sandbox) -> None:
    write_contacts(workdir / "contacts.csv", people(12))
    assert send(workdir, sandbox)[0] == 0
    results = workdir / "results.csv"
    good = results.read_bytes()
    results.write_bytes(good.replace(b"Person3,", b"Persox3,"))  # e.g. saved from a spreadsheet
    append_rows(workdir / "contacts.csv", people(1, start=50))

    code, err, _ = send(workdir, sandbox)

    assert code == 0, err
    assert skipped_upto(err) is None, err
    assert len(sandbox.created) == 13
    text = results.read_text(encoding="utf-8-sig")
    assert "Persox3" not in text and "Person3," in text and "person50@example.com" in text


def test_checkpoints_stop_before_a_failed_row(workdir: Path, sandbox: Sandbox) -> None:
    # Checkpoints every 64 records, so that one request at a time stays short
    # (test_a_key_moved_off_a_skipped_row_is_not_taken_for_it runs at INTERVAL).
    every = 64
    env = {"BULKSEND_CHECKPOINT_EVERY": str(every)}
    n = 2 * every + 100
    rows = people(n)
    failing = every + 30  # index; row number failing + 2
    write_contacts(workdir / "contacts.csv", rows)
    # The API answers that row's POST with a redirect (final for the row: failed).
    # One request in flight at a time, so the POSTs reach the sandbox in file order.
    # (An item the campaign does not have no longer fails at the API: the row is
    # invalid before sending, issue 15.)
    sandbox.set_faults(script=["ok"] * failing + ["redirect-302"], redirect_to="http://127.0.0.1:9/v1")
    code, err, _ = send(workdir, sandbox, "--concurrency", "1", env=env)
    assert code == 1, err
    assert len(sandbox.created) == n - 1
    append_rows(workdir / "contacts.csv", people(1, start=n + 10))
    posts = sum(sandbox.stats["post_request"].values())

    code, err, summary = send(workdir, sandbox, env=env)

    assert code == 0, err
    # The last checkpoint below the failed row; the failed row is tried again (and goes).
    assert skipped_upto(err) == every, err
    assert sum(sandbox.stats["post_request"].values()) == posts + 2
    assert len(sandbox.created) == n + 1
    assert summary["counts"] == {"sent": n + 1}
    assert_same_as_full_read(workdir, sandbox, summary)


def test_a_key_moved_off_a_skipped_row_is_not_taken_for_it(workdir: Path, sandbox: Sandbox) -> None:
    """Run 1 sends every row; run 2 reads from the first checkpoint (row 4096)
    because row 5000 was edited; run 3 appends the old email of row 5000. That
    key was sent (run 1): it is carried as sent, not reported as a duplicate of
    row 5000, which now holds another key."""
    n = 2 * INTERVAL + 50
    rows = people(n)
    write_contacts(workdir / "contacts.csv", rows)
    assert send(workdir, sandbox, "--concurrency", "16")[0] == 0
    moved = rows[4998]["Email"]  # row 5000
    rows[4998]["Email"] = "edited@example.com"
    write_contacts(workdir / "contacts.csv", rows)
    code, err, _ = send(workdir, sandbox)
    assert code == 0, err
    assert skipped_upto(err) == INTERVAL, err
    assert len(sandbox.created) == n + 1
    append_rows(workdir / "contacts.csv", [{**rows[0], "Email": moved}])

    code, err, summary = send(workdir, sandbox)

    assert code == 0, err
    assert skipped_upto(err) == n + 1, err  # every row up to the last was settled
    assert len(sandbox.created) == n + 1  # nothing sent: that key was sent in run 1
    _, results = read_results(workdir / "results.csv")
    assert results[-1]["Email"] == moved and results[-1]["status"] == "sent"
    assert summary["counts"] == {"sent": n + 1}
    assert_same_as_full_read(workdir, sandbox, summary)


def test_random_edits_resume_exactly_as_a_full_read(workdir: Path, sandbox: Sandbox,
                                                     tmp_path_factory: Any) -> None:
    """Rounds of edits a real export sees (rows appended, edited, removed,
    inserted, duplicated, broken, a removed contact back), with checkpoints
    every 7 records. After each round: every valid contact exists exactly once
    on the server, and a full read of a copy of the same state sends nothing
    and writes the same bytes. (With this seed, a run without
    Journal.forget_stale fails: checked.)"""
    rng = random.Random(13)
    env = {"BULKSEND_CHECKPOINT_EVERY": "7"}
    rows = people(40)
    fresh = iter(range(1000, 100000))
    skipped_somewhere = False
    gone: list[str] = []  # emails edited or removed away
    for round_no in range(10):
        if round_no:
            for _ in range(rng.randint(1, 3)):
                op = rng.choice(["append", "append", "edit", "remove", "insert", "duplicate", "break",
                                 "back"])
                i = rng.randrange(len(rows))
                if op in ("edit", "remove"):
                    gone.append(rows[i]["Email"])
                if op == "back" and gone:
                    rows.append({**rows[i], "Email": gone.pop(rng.randrange(len(gone)))})
                elif op == "append":
                    rows += people(rng.randint(1, 9), start=next(fresh))
                elif op == "edit":
                    rows[i] = {**rows[i], "Email": f"edited{next(fresh)}@example.com"}
                elif op == "remove":
                    del rows[i]
                elif op == "insert":
                    rows.insert(i, people(1, start=next(fresh))[0])
                elif op == "duplicate":
                    rows.append({**rows[rng.randrange(len(rows))], "First Name": "Again"})
                else:
                    rows[i] = {**rows[i], "Email": "broken"}
        write_contacts(workdir / "contacts.csv", rows)
        r = run_cli("send", "contacts.csv", "-m", "mapping.yaml", "--results", "results.csv",
                    "--api-url", sandbox.url, "--rate", "none", "--no-progress", cwd=workdir, env=env)
        assert r.code in (0, 1), r.stderr
        skipped_somewhere |= skipped_upto(r.stderr) is not None
        per_email = Counter(c["email"] for c in sandbox.created)
        valid = {row["Email"] for row in rows if row["Email"] != "broken"}
        assert valid <= set(per_email) and max(per_email.values()) == 1, (round_no, r.stderr)

        copy = tmp_path_factory.mktemp(f"full{round_no}")
        for name in ("contacts.csv", "mapping.yaml", "results.csv", "results.csv.journal"):
            shutil.copy(workdir / name, copy / name)
        drop_checkpoints(copy)
        posts = sum(sandbox.stats["post_request"].values())
        full = run_cli("send", "contacts.csv", "-m", "mapping.yaml", "--results", "results.csv",
                       "--api-url", sandbox.url, "--rate", "none", "--no-progress", cwd=copy, env=env)
        assert full.code == r.code, full.stderr
        assert sum(sandbox.stats["post_request"].values()) == posts
        assert (copy / "results.csv").read_bytes() == (workdir / "results.csv").read_bytes(), round_no
    assert skipped_somewhere
