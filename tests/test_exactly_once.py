"""Exactly once, whatever happens to the run (issue 4).

Every test drives the real CLI (``python -m bulksend``) as a subprocess against
the real sandbox on 127.0.0.1, kills or signals it, reruns it, and then counts
what the *server* holds: one request per valid key, no more, no fewer, and the
results CSV naming the very request the server created for each row.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import KEY, MAPPING, people, posix_signals, read_results, run_cli, write_contacts
from forked import ForkedProcess, spawn

from bulksend.sandbox import DEMO_CAMPAIGN_ID, Sandbox, SandboxConfig, running_sandbox

CONTACTS = "contacts.csv"
RESULTS = "results.csv"


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


@dataclass
class Run:
    """A bulksend run started in the background; output goes to files so a
    chatty run can never block on a full pipe."""

    proc: ForkedProcess | subprocess.Popen[bytes]
    out_path: Path
    err_path: Path

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def kill(self) -> int:
        """SIGKILL and reap; the exit status (-9, or the code if it had finished)."""
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait(timeout=15)

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(encoding="utf-8", errors="replace")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(encoding="utf-8", errors="replace")


_started: list[Run] = []


@pytest.fixture(autouse=True)
def _reap_runs() -> Iterator[None]:
    """No run outlives its test, even when an assertion fails mid-way."""
    yield
    while _started:
        run = _started.pop()
        if run.proc.poll() is None:
            run.proc.kill()
        run.proc.wait(timeout=15)


def _rows_in_doubt(workdir: Path) -> int:
    """Rows a killed run left 'inflight' in the journal (read-only; -1 if unreadable)."""
    try:
        db = sqlite3.connect(f"file:{workdir / (RESULTS + '.journal')}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return -1
    try:
        return int(db.execute("SELECT count(*) FROM rows WHERE status='inflight'").fetchone()[0])
    except sqlite3.Error:
        return -1
    finally:
        db.close()


def send_args(sandbox: Sandbox, *extra: str, contacts: str = CONTACTS) -> list[str]:
    return ["send", contacts, "-m", "mapping.yaml", "--results", RESULTS, "--api-url", sandbox.url,
            "--no-progress", *extra]


def start(workdir: Path, args: list[str], tag: str) -> Run:
    env = {k: v for k, v in os.environ.items() if k != "COLLECT_API_KEY"}
    env["COLLECT_API_KEY"] = KEY
    out_path, err_path = workdir / f"{tag}.out", workdir / f"{tag}.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = spawn(args, cwd=workdir, env=env, stdout=out, stderr=err)
    run = Run(proc, out_path, err_path)
    _started.append(run)
    return run


def wait_for(what: str, predicate: Callable[[], bool], timeout: float, run: Run | None = None,
             ended_ok: bool = False) -> None:
    """Poll until predicate() holds; fail on timeout, or if ``run`` ends first
    (unless ``ended_ok``: then just stop waiting)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if run is not None and run.proc.poll() is not None:
            if ended_ok:
                return
            raise AssertionError(
                f"the run ended (exit {run.proc.returncode}) before {what}\n{run.stdout}\n{run.stderr}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def posts(sandbox: Sandbox) -> int:
    """POST /request calls the sandbox received, whatever their outcome."""
    counts: dict[str, int] = sandbox.stats["post_request"]
    return sum(counts.values())


def answered(sandbox: Sandbox) -> int:
    """POST /request calls that got past the rate limit."""
    counts: dict[str, int] = sandbox.stats["post_request"]
    return sum(counts.values()) - counts["429"]


def answered_at_least(sandbox: Sandbox, n: int) -> Callable[[], bool]:
    return lambda: answered(sandbox) >= n


def per_email(sandbox: Sandbox) -> Counter[str]:
    return Counter(c["email"] for c in sandbox.created)


def results_by_row(workdir: Path) -> dict[int, dict[str, str]]:
    _, rows = read_results(workdir / RESULTS)
    numbers = [int(r["row"]) for r in rows]
    assert len(numbers) == len(set(numbers)), f"a row has more than one line: {Counter(numbers)}"
    return {int(r["row"]): r for r in rows}


def assert_one_line_per_row(workdir: Path, n_rows: int) -> dict[int, dict[str, str]]:
    by_row = results_by_row(workdir)
    assert sorted(by_row) == list(range(2, n_rows + 2))
    return by_row


def assert_request_ids_match(workdir: Path, sandbox: Sandbox) -> None:
    """Each sent row names the request the server created for its contact."""
    server = {c["email"]: c["_id"] for c in sandbox.created}
    for row in results_by_row(workdir).values():
        if row["status"] == "sent":
            assert row["request_id"] == server[row["Email"].lower()], row
        else:
            assert row["request_id"] == "", row


# ---------------------------------------------------------------------------
# 1. kill -9 at random moments, then resume
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_killed_at_random_moments_then_resumed_sends_each_valid_row_exactly_once(workdir: Path) -> None:
    rng = random.Random(8)
    rows = people(150)
    invalid = {7, 33, 61}
    rows[7]["Email"] = "not-an-email"
    rows[33]["Email"] = ""
    rows[61]["First Name"] = ""  # required by the mapping
    duplicate = 90
    rows[duplicate]["Email"] = rows[12]["Email"].upper()  # same key as row 14
    write_contacts(workdir / CONTACTS, rows)
    valid = {r["Email"].lower() for i, r in enumerate(rows) if i not in invalid}
    assert len(valid) == 150 - len(invalid) - 1

    config = SandboxConfig(
        api_key=KEY, seed=11, rate_limit=60.0, burst=2, fail_rate=0.1, drop_rate=0.05,
        ambiguous_rate=0.05, slow_rate=0.02, slow_delay=3.0,
    )
    with running_sandbox(config) as sandbox:
        args = send_args(sandbox, "--rate", "200/s", "--concurrency", "8", "--timeout", "1")
        in_doubt: list[int] = []  # rows the journal held as in flight at each kill
        # Two runs in three are killed a random 0.05-1.5 s after they start; the
        # third as long after it began sending in earnest (3 POSTs past the rate
        # limit): a fresh run spends its first ~2 s starting up and in the pauses
        # its opening burst of 429s imposes (the sandbox's Retry-After is at least
        # 1 s), so counting from the start alone would seldom kill a run mid-send.
        kills = cycles = 0
        done = False
        while kills < 12 and cycles < 30 and not done:
            cycles += 1
            before = answered(sandbox)
            run = start(workdir, args, f"killed-{cycles}")
            if cycles % 3 == 0:
                wait_for("3 POSTs past the rate limit", answered_at_least(sandbox, before + 3),
                         timeout=30, run=run, ended_ok=True)
            try:
                code = run.wait(timeout=rng.uniform(0.05, 1.5))
            except subprocess.TimeoutExpired:
                run.kill()
                kills += 1
                in_doubt.append(_rows_in_doubt(workdir))
            else:
                # It finished before its kill (3: an outage it gave up on, resumable).
                assert code in (0, 1, 3), f"exit {code}\n{run.stderr[-3000:]}"
                done = code == 1 and answered(sandbox) == before
        assert kills >= 10, f"only {kills} kills in {cycles} runs"
        after_kills = len(sandbox.created)

        # Resume without killing, a bounded number of times, until every valid row is sent.
        code, reruns = -1, 0
        while reruns < 6:
            reruns += 1
            run = start(workdir, args, f"rerun-{reruns}")
            try:
                code = run.wait(timeout=90)
            except subprocess.TimeoutExpired:
                run.kill()
                pytest.fail(f"rerun {reruns} did not finish within 90s\n{run.stderr[-3000:]}")
            assert code in (0, 1, 3), f"rerun {reruns}: exit {code}\n{run.stderr[-3000:]}"
            statuses = {r["status"] for r in results_by_row(workdir).values()}
            if code == 1 and statuses <= {"sent", "invalid", "duplicate"}:
                break
        assert code == 1, f"not settled after {reruns} reruns: exit {code}"
        assert "Traceback" not in run.stderr, run.stderr

        created = sandbox.created
        stats = sandbox.stats["post_request"]
        refused_gets = sandbox.stats["get"].get("429", 0)

    # The storm happened, and the kills let requests through before landing.
    # (Its 429s may land on the look-ups: they pass the same gate, which may
    # have learned the limit from them before any POST was refused.)
    assert stats["429"] + refused_gets > 0 and stats["500"] + stats["503"] > 0, (stats, refused_gets)
    assert stats["dropped"] + stats["ambiguous"] + stats["slow"] > 0, stats
    assert after_kills >= 20, f"the kills let only {after_kills} requests through"
    # At least one kill caught a POST in flight (-1: the journal could not be read).
    assert max(in_doubt) != 0, f"no kill left a row in doubt: {in_doubt}"

    counts = Counter(c["email"] for c in created)
    duplicates = {email: n for email, n in counts.items() if n != 1}
    assert duplicates == {}, f"customers emailed more than once: {duplicates}"
    assert set(counts) == valid
    assert "not-an-email" not in counts and "person61@example.com" not in counts

    server = {c["email"]: c["_id"] for c in created}
    by_row = assert_one_line_per_row(workdir, len(rows))
    for i, row in enumerate(rows):
        line = by_row[i + 2]
        if i in invalid:
            assert line["status"] == "invalid", line
        elif i == duplicate:
            assert line["status"] == "duplicate" and "row 14" in line["error"], line
        else:
            assert line["status"] == "sent", line
            assert line["key"] == f"{DEMO_CAMPAIGN_ID}|{row['Email'].lower()}"
            assert line["request_id"] == server[row["Email"].lower()], line


# ---------------------------------------------------------------------------
# 2. Ctrl-C / SIGTERM: a clean, resumable stop
# ---------------------------------------------------------------------------


@posix_signals
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_cleanly_and_a_rerun_finishes_the_rest(workdir: Path, sig: int) -> None:
    rows = people(60)
    write_contacts(workdir / CONTACTS, rows)
    with running_sandbox(SandboxConfig(api_key=KEY, seed=2, latency=0.1)) as sandbox:
        args = send_args(sandbox, "--rate", "none", "--concurrency", "2")
        run = start(workdir, args, "signalled")
        wait_for("6 requests created", lambda: len(sandbox.created) >= 6, timeout=30, run=run)
        run.signal(sig)
        try:
            code = run.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail(f"no exit within 20s of {sig!r}\n{run.stderr}")

        assert code == 130, f"exit {code}\n{run.stdout}\n{run.stderr}"
        assert "Traceback" not in run.stderr, run.stderr
        assert "to resume: bulksend send contacts.csv" in run.stdout, run.stdout
        by_row = assert_one_line_per_row(workdir, len(rows))
        statuses = Counter(r["status"] for r in by_row.values())
        assert set(statuses) <= {"sent", "ready", "unknown"}, statuses
        assert 6 <= statuses["sent"] < len(rows), statuses
        assert_request_ids_match(workdir, sandbox)
        created_at_stop = len(sandbox.created)
        assert created_at_stop < len(rows)

        sandbox.set_faults(latency=0.0)
        r = run_cli(*args, cwd=workdir, timeout=60)

        assert r.code == 0, r.stderr
        counts = per_email(sandbox)
        assert counts == Counter(row["Email"] for row in rows)  # each exactly once
        assert_request_ids_match(workdir, sandbox)
    by_row = assert_one_line_per_row(workdir, len(rows))
    assert {r["status"] for r in by_row.values()} == {"sent"}


@posix_signals
@pytest.mark.slow
@pytest.mark.parametrize("n_rows", [20, 60], ids=["all-queued", "still-feeding"])
def test_the_graceful_stop_waits_no_longer_than_it_says(workdir: Path, n_rows: int) -> None:
    """SIGTERM says "waiting up to 10s for requests in flight": a stop must not
    wait for a late answer beyond that (a container runtime kills at 10 s), and
    the rows still in flight then get their line, as unknown. With 20 rows every
    row is queued before the first answer; with 60 the feeder is still waiting
    for room in the queue."""
    rows = people(n_rows)
    write_contacts(workdir / CONTACTS, rows)
    with running_sandbox(SandboxConfig(api_key=KEY, seed=9, slow_rate=1.0, slow_delay=25.0)) as sandbox:
        args = send_args(sandbox, "--rate", "none", "--concurrency", "4", "--timeout", "60")
        run = start(workdir, args, "term")
        wait_for("4 requests created", lambda: len(sandbox.created) >= 4, timeout=30, run=run)
        run.signal(signal.SIGTERM)
        wait_for("the stop to be acknowledged", lambda: "waiting up to" in run.stderr, timeout=10, run=run)
        grace = float(run.stderr.split("waiting up to", 1)[1].split("s", 1)[0])
        signalled = time.monotonic()
        try:
            code = run.wait(timeout=grace + 6)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still waiting {grace + 6:g}s after a stop that promised {grace:g}s\n{run.stderr}")
        waited = time.monotonic() - signalled

        assert code == 130, f"exit {code}\n{run.stdout}\n{run.stderr}"
        assert waited < grace + 6
        by_row = assert_one_line_per_row(workdir, len(rows))
        assert {r["status"] for r in by_row.values()} <= {"unknown", "ready"}, by_row
        created_at_stop = len(sandbox.created)
        before = posts(sandbox)

        sandbox.set_faults(slow_rate=0.0)
        r = run_cli(*args, cwd=workdir, timeout=60)

        assert r.code == 0, f"exit {r.code}\n{r.stdout}\n{r.stderr}"
        assert posts(sandbox) - before == len(rows) - created_at_stop  # in-doubt rows looked up
        assert per_email(sandbox) == Counter(row["Email"] for row in rows)
        assert_request_ids_match(workdir, sandbox)


@posix_signals
def test_a_stop_while_the_workers_wait_for_the_gate_does_not_wait_the_grace(workdir: Path) -> None:
    """At --rate 1/s the workers spend their time waiting for the gate, with no
    request on the wire: a SIGTERM has nothing to wait for. Each row gets its
    line (sent, or as it was: ready), and a rerun sends each row once."""
    rows = people(12)
    write_contacts(workdir / CONTACTS, rows)
    with running_sandbox(SandboxConfig(api_key=KEY, seed=9)) as sandbox:
        args = send_args(sandbox, "--rate", "1/s", "--concurrency", "4")
        run = start(workdir, args, "gate")
        wait_for("2 requests created", lambda: len(sandbox.created) >= 2, timeout=30, run=run)
        signalled = time.monotonic()
        run.signal(signal.SIGTERM)
        code = run.wait(timeout=30)
        waited = time.monotonic() - signalled

        assert code == 130, f"exit {code}\n{run.stderr}"
        assert waited < 3, f"waited {waited:.1f}s with nothing on the wire\n{run.stderr}"
        by_row = assert_one_line_per_row(workdir, len(rows))
        assert {r["status"] for r in by_row.values()} <= {"sent", "ready"}, by_row
        r = run_cli(*send_args(sandbox, "--rate", "none"), cwd=workdir, timeout=60)
        assert r.code == 0, r.stderr
        assert per_email(sandbox) == Counter(row["Email"] for row in rows)
        assert_request_ids_match(workdir, sandbox)


@posix_signals
def test_a_second_ctrl_c_stops_at_once_and_the_rerun_settles_what_was_in_flight(workdir: Path) -> None:
    """The first Ctrl-C waits for requests in flight and says "press Ctrl-C again
    to stop at once"; the second must stop at once, resumably (exit 130)."""
    rows = people(20)
    write_contacts(workdir / CONTACTS, rows)
    # Every answer comes 20 s late, so the graceful wait is still going when the
    # second Ctrl-C arrives.
    with running_sandbox(SandboxConfig(api_key=KEY, seed=8, slow_rate=1.0, slow_delay=20.0)) as sandbox:
        args = send_args(sandbox, "--rate", "none", "--concurrency", "4", "--timeout", "60")
        run = start(workdir, args, "twice")
        wait_for("4 requests created", lambda: len(sandbox.created) >= 4, timeout=30, run=run)
        run.signal(signal.SIGINT)
        wait_for("the first Ctrl-C to be acknowledged", lambda: "Ctrl-C again" in run.stderr,
                 timeout=10, run=run)
        run.signal(signal.SIGINT)
        try:
            code = run.wait(timeout=8)
        except subprocess.TimeoutExpired:
            pytest.fail(f"a second Ctrl-C did not stop the run at once\n{run.stderr}")

        assert code == 130, f"exit {code}\n{run.stdout}\n{run.stderr}"
        assert "Traceback" not in run.stderr, run.stderr
        assert "to resume: bulksend send contacts.csv" in run.stdout, run.stdout
        created_at_stop = len(sandbox.created)
        before = posts(sandbox)

        sandbox.set_faults(slow_rate=0.0)
        r = run_cli(*args, cwd=workdir, timeout=60)

        assert r.code == 0, f"exit {r.code}\n{r.stdout}\n{r.stderr}"
        # The rows in flight at the stop were looked up, not resent.
        assert posts(sandbox) - before == len(rows) - created_at_stop
        assert per_email(sandbox) == Counter(row["Email"] for row in rows)
        assert_request_ids_match(workdir, sandbox)
    assert_one_line_per_row(workdir, len(rows))


# ---------------------------------------------------------------------------
# 3. one run per results file; a killed run's lock does not outlive it
# ---------------------------------------------------------------------------


def test_a_second_run_on_the_same_results_is_refused_until_the_first_dies(workdir: Path) -> None:
    rows = people(30)
    write_contacts(workdir / CONTACTS, rows)
    # Every answer comes 30 s late: the first run (one worker) holds one POST in
    # flight and makes no other while the second run tries its luck.
    with running_sandbox(SandboxConfig(api_key=KEY, seed=3, slow_rate=1.0, slow_delay=30.0)) as sandbox:
        args = send_args(sandbox, "--rate", "none", "--concurrency", "1", "--timeout", "60")
        first = start(workdir, args, "first")
        wait_for("the first run's first request", lambda: len(sandbox.created) >= 1, timeout=30, run=first)
        posts_before = posts(sandbox)

        second = run_cli(*args, cwd=workdir, timeout=60)

        assert second.code == 2, f"exit {second.code}\n{second.stdout}\n{second.stderr}"
        assert "results.csv" in second.stderr and "another bulksend run" in second.stderr, second.stderr
        assert first.proc.poll() is None, "the first run should still be waiting for its answer"
        assert posts(sandbox) == posts_before  # the refused run sent nothing

        first.kill()
        sandbox.set_faults(slow_rate=0.0)
        third = run_cli(*args, cwd=workdir, timeout=60)

        assert third.code == 0, f"a killed run's lock blocked the next one:\n{third.stderr}"
        # The first run's request, in doubt when it was killed, was found, not resent.
        assert per_email(sandbox) == Counter(row["Email"] for row in rows)
        assert_request_ids_match(workdir, sandbox)
    assert_one_line_per_row(workdir, len(rows))


# ---------------------------------------------------------------------------
# 4. --only-failed sends the failed rows and nothing else
# ---------------------------------------------------------------------------


def test_only_failed_resends_failed_rows_and_leaves_the_others_alone(workdir: Path) -> None:
    rows = people(14)
    rows[6]["Email"] = "person6@example"  # invalid: never attempted
    write_contacts(workdir / CONTACTS, rows)
    with running_sandbox(SandboxConfig(api_key=KEY, seed=4)) as sandbox:
        base = send_args(sandbox, "--rate", "none", "--concurrency", "2", "--max-attempts", "2")
        # Rows 0-4 are sent.
        assert run_cli(*base, "--limit", "5", cwd=workdir, timeout=60).code == 1  # row 6 is invalid
        assert len(sandbox.created) == 5
        # The next three valid rows (5, 7, 8) fail for good: every POST answers 5xx.
        sandbox.set_faults(fail_rate=1.0)
        r = run_cli(*base, "--limit", "3", cwd=workdir, timeout=60)
        assert r.code == 1, r.stderr
        by_row = results_by_row(workdir)
        failed_rows = sorted(n for n, line in by_row.items() if line["status"] == "failed")
        assert failed_rows == [7, 9, 10], by_row
        assert len(sandbox.created) == 5

        # The file is fixed (the invalid email) and edited (a name); the server recovers.
        rows[6]["Email"] = "person6@example.com"
        rows[8]["First Name"] = "Renamed"
        write_contacts(workdir / CONTACTS, rows)
        sandbox.set_faults(fail_rate=0.0)
        before = posts(sandbox)

        r = run_cli(*base, "--only-failed", cwd=workdir, timeout=60)

        assert r.code == 0, f"exit {r.code}\n{r.stdout}\n{r.stderr}"
        assert posts(sandbox) - before == 3  # one POST per failed row, nothing else
        counts = per_email(sandbox)
        assert counts == Counter(f"person{i}@example.com" for i in (0, 1, 2, 3, 4, 5, 7, 8))
        renamed = next(c for c in sandbox.created if c["email"] == "person8@example.com")
        assert renamed["received"]["contact"]["firstName"] == "Renamed"  # the edited row's new text
        assert_request_ids_match(workdir, sandbox)
    by_row = assert_one_line_per_row(workdir, len(rows))
    for n in (7, 9, 10):
        assert by_row[n]["status"] == "sent", by_row[n]
    for n in (8, 11, 12, 13, 14, 15):  # never attempted: still not sent
        assert by_row[n]["status"] == "ready", by_row[n]
        assert by_row[n]["request_id"] == ""


# ---------------------------------------------------------------------------
# 5. an edited input resumes by key, not by position
# ---------------------------------------------------------------------------


def test_an_edited_input_sends_only_new_keys_and_a_changed_mapping_is_flagged(workdir: Path) -> None:
    first = people(20)
    write_contacts(workdir / CONTACTS, first)
    with running_sandbox(SandboxConfig(api_key=KEY, seed=5)) as sandbox:
        args = send_args(sandbox, "--rate", "none")
        assert run_cli(*args, cwd=workdir, timeout=60).code == 0
        assert len(sandbox.created) == 20
        before = posts(sandbox)

        # A re-export: five rows gone, the rest reordered, names edited, new contacts in the middle.
        kept = list(reversed(first[5:]))
        for row in kept[::4]:
            row["First Name"] = "Edited"
            row["Last Name"] = "Changed"
        new = people(5, start=20)
        edited = kept[:7] + new + kept[7:]
        write_contacts(workdir / CONTACTS, edited)

        r = run_cli(*args, cwd=workdir, timeout=60)

        assert r.code == 0, r.stderr
        assert posts(sandbox) - before == 5
        counts = per_email(sandbox)
        assert counts == Counter(row["Email"] for row in people(25))  # each exactly once
        assert {c["email"] for c in sandbox.created[20:]} == {row["Email"] for row in new}
        assert_request_ids_match(workdir, sandbox)
        by_row = assert_one_line_per_row(workdir, len(edited))
        for n, row in enumerate(edited, start=2):
            line = by_row[n]
            assert line["Email"] == row["Email"] and line["First Name"] == row["First Name"]
            assert line["status"] == "sent"
        assert "mapping.yaml changed" not in r.stdout + r.stderr  # it did not

        # The mapping changes: a warning says so, and nothing is sent again.
        (workdir / "mapping.yaml").write_text(MAPPING + "sendCompletionMessage: true\n", encoding="utf-8")
        before = posts(sandbox)

        r = run_cli(*args, cwd=workdir, timeout=60)

        assert r.code == 0, r.stderr
        assert posts(sandbox) == before
        warning = [line for line in (r.stdout + r.stderr).splitlines() if "mapping.yaml changed" in line]
        assert warning, r.stdout + r.stderr
        assert len(sandbox.created) == 25


# ---------------------------------------------------------------------------
# 6. a request whose answer was lost is looked up, never blindly resent
# ---------------------------------------------------------------------------


def test_every_answer_lost_each_row_is_looked_up_not_resent(workdir: Path) -> None:
    rows = people(12)
    write_contacts(workdir / CONTACTS, rows)
    with running_sandbox(SandboxConfig(api_key=KEY, seed=6, ambiguous_rate=1.0)) as sandbox:
        args = send_args(sandbox, "--rate", "none", "--concurrency", "4")
        r = run_cli(*args, cwd=workdir, timeout=90)
        stats = sandbox.stats

        assert r.code == 0, f"exit {r.code}\n{r.stdout}\n{r.stderr}"
        assert stats["post_request"]["ambiguous"] == len(rows)  # every answer was lost...
        assert sum(stats["post_request"].values()) == len(rows)  # ...and nothing was resent
        assert stats["get"].get("200", 0) >= len(rows)  # each row was looked up
        assert per_email(sandbox) == Counter(row["Email"] for row in rows)
        assert_request_ids_match(workdir, sandbox)

        # The rerun has nothing left to do.
        sandbox.set_faults(ambiguous_rate=0.0)
        assert run_cli(*args, cwd=workdir, timeout=60).code == 0
        assert sandbox.stats["post_request"] == stats["post_request"]
    by_row = assert_one_line_per_row(workdir, len(rows))
    assert {r["status"] for r in by_row.values()} == {"sent"}


@pytest.mark.parametrize("fault", ["ambiguous", "slow"])
def test_killed_while_answers_are_lost_the_rerun_looks_up_and_sends_nothing_twice(
    workdir: Path, fault: str
) -> None:
    """The run dies while every POST it made is in doubt (created, answer lost or
    late); faults off, the rerun settles those rows by look-up."""
    rows = people(24)
    write_contacts(workdir / CONTACTS, rows)
    if fault == "ambiguous":
        config = SandboxConfig(api_key=KEY, seed=7, ambiguous_rate=1.0, latency=0.1)
    else:
        config = SandboxConfig(api_key=KEY, seed=7, slow_rate=1.0, slow_delay=2.0)
    with running_sandbox(config) as sandbox:
        args = send_args(sandbox, "--rate", "none", "--concurrency", "4", "--timeout", "30")
        run = start(workdir, args, "doubtful")
        wait_for("4 requests created", lambda: len(sandbox.created) >= 4, timeout=30, run=run)
        run.kill()
        # POSTs the killed run had written are still being handled (latency, or
        # the late answer): let them end so the counts below are final.
        wait_for("the sandbox to finish the killed run's calls", lambda: sandbox.stats["in_flight"] == 0,
                 timeout=15)
        at_kill = sandbox.stats
        created_at_kill = len(sandbox.created)
        assert created_at_kill < len(rows)
        assert at_kill["post_request"][fault] >= 4

        sandbox.set_faults(ambiguous_rate=0.0, slow_rate=0.0, latency=0.0)
        r = run_cli(*args, cwd=workdir, timeout=60)
        stats = sandbox.stats

        assert r.code == 0, f"exit {r.code}\n{r.stdout}\n{r.stderr}"
        counts = per_email(sandbox)
        duplicates = {email: n for email, n in counts.items() if n != 1}
        assert duplicates == {}, f"resent blindly: {duplicates}"
        assert counts == Counter(row["Email"] for row in rows)
        # Rows created before the kill were found by look-up, not POSTed again.
        assert stats["gets"] > at_kill["gets"]
        new_posts = sum(stats["post_request"].values()) - sum(at_kill["post_request"].values())
        assert new_posts == len(rows) - created_at_kill
        assert_request_ids_match(workdir, sandbox)
    by_row = assert_one_line_per_row(workdir, len(rows))
    assert {r["status"] for r in by_row.values()} == {"sent"}
