"""Exactly once against the local world (issue 11): links, lost journal files,
a full disk, outputs over inputs, very long cells, bad option values.

Each test drives the real CLI against the real sandbox on 127.0.0.1 and
asserts what the server received; each case failed on the code before the fix.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import KEY, linux_tmpfs, people, read_results, run_cli, write_contacts
from forked import ForkedProcess, spawn
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bulksend.common.outcome import Outcome
from bulksend.sandbox import Sandbox, SandboxConfig, running_sandbox
from bulksend.store.results import ResultsWriter
from bulksend.store.results import read_results as read_back
from bulksend.store.runlock import RunLock

OUT = "out.csv"


def send_args(sandbox: Sandbox, *extra: str, results: str = OUT) -> list[str]:
    return ["send", "contacts.csv", "-m", "mapping.yaml", "--results", results,
            "--api-url", sandbox.url, "--no-progress", *extra]


def per_email(sandbox: Sandbox) -> Counter[str]:
    return Counter(c["email"] for c in sandbox.created)


def no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr and "Exception in callback" not in stderr, stderr


_started: list[ForkedProcess | subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def _reap() -> Iterator[None]:
    """No background run outlives its test."""
    yield
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=15)


def start(workdir: Path, args: list[str]) -> ForkedProcess | subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "COLLECT_API_KEY"}
    env["COLLECT_API_KEY"] = KEY
    with open(workdir / "bg.err", "wb") as err:
        proc = spawn(args, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=err)
    _started.append(proc)
    return proc


def wait_for(what: str, predicate: Callable[[], bool], proc: ForkedProcess | subprocess.Popen[bytes],
             timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def slow_sandbox() -> Iterator[Sandbox]:
    """Every call takes 50 ms: a run of 60 rows at concurrency 2 lasts ~2 s."""
    with running_sandbox(SandboxConfig(api_key=KEY, seed=3, latency=0.05)) as sb:
        yield sb


# ---------------------------------------------------------------------------
# 1. two names for one results file
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
def test_a_second_name_for_a_results_file_in_use_sends_nothing(workdir: Path, slow_sandbox: Sandbox,
                                                               kind: str) -> None:
    write_contacts(workdir / "contacts.csv", people(60))
    first = start(workdir, send_args(slow_sandbox, "--concurrency", "2", "--rate", "none"))
    wait_for("the first requests", lambda: len(slow_sandbox.created) >= 5, first)
    link = workdir / "link.csv"
    if kind == "symlink":
        link.symlink_to(OUT)
    else:
        os.link(workdir / OUT, link)
    second = run_cli(*send_args(slow_sandbox, results="link.csv"), cwd=workdir)
    assert second.code == 2, second.stderr
    assert second.stderr.startswith("bulksend: error: link.csv: the results file "), second.stderr
    assert ("symbolic link" if kind == "symlink" else "has 2 names") in second.stderr
    no_traceback(second.stderr)
    if kind == "hardlink":
        link.unlink()
    assert first.wait(timeout=60) == 0, (workdir / "bg.err").read_text()
    assert per_email(slow_sandbox) == Counter({f"person{i}@example.com": 1 for i in range(60)})
    if kind == "symlink":
        assert link.is_symlink()  # never replaced by a plain file
    assert not (workdir / "link.csv.journal").exists()


def test_the_lock_holds_whatever_name_reaches_the_folder(workdir: Path, sandbox: Sandbox) -> None:
    """The same results file through a symlinked folder has the same side files:
    a run holding the lock blocks a run on the other path."""
    write_contacts(workdir / "contacts.csv", people(5))
    (workdir / "alias").symlink_to(workdir)
    lock = RunLock(workdir / OUT)
    lock.acquire()
    try:
        r = run_cli(*send_args(sandbox, results="alias/out.csv"), cwd=workdir)
    finally:
        lock.release()
    assert r.code == 2 and "another bulksend run is using this results file" in r.stderr, r.stderr
    assert sandbox.created == []


# ---------------------------------------------------------------------------
# 2. a journal that knows fewer rows than its results CSV
# ---------------------------------------------------------------------------


def test_an_emptied_journal_beside_a_complete_csv_resends_nothing(workdir: Path, sandbox: Sandbox) -> None:
    write_contacts(workdir / "contacts.csv", people(30))
    assert run_cli(*send_args(sandbox), cwd=workdir).code == 0
    assert len(sandbox.created) == 30
    (workdir / f"{OUT}.journal").write_bytes(b"")  # 0 bytes: an empty database to SQLite
    r = run_cli(*send_args(sandbox), cwd=workdir)
    assert r.code == 0, r.stderr
    assert len(sandbox.created) == 30, "rows the CSV records sent were sent again"
    assert "took 30 rows from out.csv (30 sent" in r.stderr
    _, rows = read_results(workdir / OUT)
    assert {r["status"] for r in rows} == {"sent"}
    assert {r["request_id"] for r in rows} == {c["_id"] for c in sandbox.created}


def test_an_older_journal_copy_takes_the_newer_rows_from_the_csv(workdir: Path, sandbox: Sandbox) -> None:
    write_contacts(workdir / "contacts.csv", people(20))
    assert run_cli(*send_args(sandbox), cwd=workdir).code == 0
    older = workdir / "older.journal"
    shutil.copy(workdir / f"{OUT}.journal", older)
    write_contacts(workdir / "contacts.csv", people(40))
    assert run_cli(*send_args(sandbox), cwd=workdir).code == 0
    assert len(sandbox.created) == 40
    shutil.copy(older, workdir / f"{OUT}.journal")  # restored from an older backup
    r = run_cli(*send_args(sandbox), cwd=workdir)
    assert r.code == 0, r.stderr
    assert per_email(sandbox) == Counter({f"person{i}@example.com": 1 for i in range(40)})
    assert "knew fewer rows than out.csv" in r.stderr


def test_killed_then_copied_without_the_wal_sends_each_row_once(workdir: Path, slow_sandbox: Sandbox) -> None:
    """The issue's case: kill -9 mid-run, copy out.csv and out.csv.journal but not
    out.csv.journal-wal, rerun from the copy. Rows the CSV records are taken from
    it; rows it does not (those in flight at the kill among them) are looked up
    before they are sent."""
    write_contacts(workdir / "contacts.csv", people(80))
    run = start(workdir, send_args(slow_sandbox, "--concurrency", "4", "--rate", "none"))
    wait_for("40 requests", lambda: len(slow_sandbox.created) >= 40, run)
    run.kill()
    run.wait(timeout=15)
    assert (workdir / f"{OUT}.journal-wal").exists()
    elsewhere = workdir / "elsewhere"
    elsewhere.mkdir()
    for name in ("contacts.csv", "mapping.yaml", OUT, f"{OUT}.journal"):
        shutil.copy(workdir / name, elsewhere / name)
    r = run_cli(*send_args(slow_sandbox, "--concurrency", "4", "--rate", "none"), cwd=elsewhere)
    assert r.code == 0, r.stderr
    assert per_email(slow_sandbox) == Counter({f"person{i}@example.com": 1 for i in range(80)})
    server = {c["email"]: c["_id"] for c in slow_sandbox.created}
    _, rows = read_results(elsewhere / OUT)
    assert all(row["status"] == "sent" and row["request_id"] == server[row["Email"]] for row in rows)
    # The look-ups are for this one run: the next one sends new rows straight away.
    write_contacts(elsewhere / "contacts.csv", people(82))
    before = lookups(slow_sandbox)
    assert run_cli(*send_args(slow_sandbox), cwd=elsewhere).code == 0
    assert len(slow_sandbox.created) == 82
    assert lookups(slow_sandbox) == before


def lookups(sandbox: Sandbox) -> int:
    """GET /requests calls (look-ups before a resend) the sandbox received."""
    return sum(n for path, n in sandbox.stats["get"].items() if "requests" in path)


# ---------------------------------------------------------------------------
# 3. a full disk
# ---------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs mounted for the test (root only; skipped where mount is refused).

    The tests fill it to a few hundred KiB, so where a run stops depends on
    what they leave, not on its size; the size is the room a resumed run has
    once the filler is gone. The journal's WAL is only folded back at the
    end of a run (journal.py: every ~40 MB), and a loaded machine makes more,
    smaller commits: a 400-row run wrote up to 920 KiB of WAL, so 1 MiB made
    the resume fail for want of room now and then."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path, leave: int) -> Path:
    filler = disk / "filler"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    filler.write_bytes(b"\0" * max(0, free - leave))
    return filler


def journal_marks(journal: Path) -> set[str]:
    """Emails of the keys the journal holds as attempted (committed state)."""
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        keys = [k for (k,) in db.execute("SELECT key FROM rows WHERE status != 'pending'")]
    except sqlite3.OperationalError:  # the disk was full before the journal had its table
        keys = []
    finally:
        db.close()
    return {k.split("|", 1)[1] for k in keys}


# 40 KiB: the journal cannot even be opened; 120 and 300 KiB: it fills mid-run.
@linux_tmpfs
@pytest.mark.parametrize("leave", [40 * 1024, 120 * 1024, 300 * 1024])
def test_a_full_disk_aborts_with_one_line_and_resumes(workdir: Path, sandbox: Sandbox, small_disk: Path,
                                                      leave: int) -> None:
    write_contacts(workdir / "contacts.csv", people(400))
    filler = fill(small_disk, leave)
    results = str(small_disk / OUT)
    summary = workdir / "last.json"
    r = run_cli(*send_args(sandbox, "--rate", "none", "--summary-json", str(summary), results=results),
                cwd=workdir)
    assert r.code == 3, (r.code, r.stderr)
    no_traceback(r.stderr)
    errors = [line for line in r.stderr.splitlines() if "No space left" in line or "full" in line]
    assert errors and all(f"{small_disk}/{OUT}" in line for line in errors), r.stderr
    assert json.loads(summary.read_text())["exit_code"] == 3
    assert len(sandbox.created) < 400
    filler.unlink()
    # Write-ahead failed closed: every request the server holds was on disk first.
    sent = {c["email"] for c in sandbox.created}
    assert sent <= journal_marks(small_disk / f"{OUT}.journal")
    again = run_cli(*send_args(sandbox, "--rate", "none", results=results), cwd=workdir)
    assert again.code == 0, again.stderr
    assert per_email(sandbox) == Counter({f"person{i}@example.com": 1 for i in range(400)})
    _, rows = read_results(small_disk / OUT)
    assert len(rows) == 400 and {row["status"] for row in rows} == {"sent"}


# ---------------------------------------------------------------------------
# 4. side files planted as links
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("side", [".lock", ".tmp", ".journal", ".journal-wal"])
@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
def test_a_side_file_planted_as_a_link_is_never_written_through(workdir: Path, sandbox: Sandbox,
                                                                side: str, kind: str) -> None:
    write_contacts(workdir / "contacts.csv", people(5))
    victim = workdir / "victim.txt"
    victim.write_text("precious\n", encoding="utf-8")
    planted = workdir / f"{OUT}{side}"
    if kind == "symlink":
        planted.symlink_to(victim)
    else:
        os.link(victim, planted)
    r = run_cli(*send_args(sandbox), cwd=workdir)
    assert r.code == 2, r.stderr
    assert r.stderr.startswith(f"bulksend: error: {OUT}{side}: "), r.stderr
    assert "link" in r.stderr.splitlines()[0] or "names" in r.stderr.splitlines()[0]
    no_traceback(r.stderr)
    assert victim.read_text(encoding="utf-8") == "precious\n"
    assert sandbox.created == []
    assert not (workdir / OUT).is_symlink()


def test_a_stale_tmp_file_from_a_killed_rewrite_is_replaced(workdir: Path, sandbox: Sandbox) -> None:
    write_contacts(workdir / "contacts.csv", people(5))
    (workdir / f"{OUT}.tmp").write_text("half a rewrite", encoding="utf-8")
    r = run_cli(*send_args(sandbox), cwd=workdir)
    assert r.code == 0, r.stderr
    assert len(read_results(workdir / OUT)[1]) == 5 and not (workdir / f"{OUT}.tmp").exists()


# ---------------------------------------------------------------------------
# 5. outputs over inputs
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["contacts", "contacts by a hard link", "contacts by ../",
                                    "mapping", "key file", "results", "journal"])
def test_an_output_that_is_an_input_is_refused(workdir: Path, sandbox: Sandbox, target: str) -> None:
    write_contacts(workdir / "contacts.csv", people(5))
    (workdir / "key.txt").write_text(KEY + "\n", encoding="utf-8")
    if target == "journal":  # a results file and journal from an earlier run
        assert run_cli(*send_args(sandbox, "--limit", "0"), cwd=workdir).code == 0
    if target == "contacts by a hard link":
        os.link(workdir / "contacts.csv", workdir / "last.json")
    path = {"contacts": "contacts.csv", "contacts by a hard link": "last.json",
            "contacts by ../": f"../{workdir.name}/contacts.csv", "mapping": "mapping.yaml",
            "key file": "key.txt", "results": OUT, "journal": f"{OUT}.journal"}[target]
    if target == "results":
        (workdir / OUT).write_text("", encoding="utf-8")
    before = {p.name: p.read_bytes() for p in workdir.iterdir() if p.is_file()}
    r = run_cli(*send_args(sandbox, "--summary-json", path, "--api-key-file", "key.txt"), cwd=workdir,
                key=None)
    assert r.code == 2, r.stderr
    assert "--summary-json is the same file as" in r.stderr and "refusing to overwrite it" in r.stderr
    no_traceback(r.stderr)
    assert sandbox.created == []
    assert {p.name: p.read_bytes() for p in workdir.iterdir() if p.is_file()} == before


# ---------------------------------------------------------------------------
# 6. results always read back, whatever the cells hold
# ---------------------------------------------------------------------------

LIMIT = 131_072  # csv.field_size_limit()'s default, and the input reader's cell limit

long_cell = st.builds(
    lambda start, size, tail: (start + "x" * size + tail)[: LIMIT * 2],
    st.sampled_from(["=", "+", "-", "@", "'=", "''+", "\t", "x", '"', ""]),
    st.sampled_from([LIMIT - 2, LIMIT - 1, LIMIT, LIMIT + 1]) | st.integers(0, LIMIT + 10),
    st.text(alphabet=',"\r\n=x', max_size=4),
)


@settings(max_examples=40, deadline=None)
@example(cell="=" + "x" * (LIMIT - 1))  # the cell: exactly 131,072 characters
@given(cell=long_cell)
def test_a_results_file_reads_back_whatever_the_cell_length(cell: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "results.csv"
        writer = ResultsWriter(path, None, ["Notes"])
        writer.open()
        writer.write(Outcome(row=2, key=cell, status="failed", error=cell, values={"Notes": cell}))
        writer.finish()
        (back,) = list(read_back(path))
        assert back["key"] == back["error"] == back["Notes"] == cell


def test_a_cell_of_131072_characters_starting_with_equals_survives_report_and_rebuild(
        workdir: Path, sandbox: Sandbox) -> None:
    rows = people(3)
    rows[1]["Last Name"] = "=" + "x" * (LIMIT - 1)
    write_contacts(workdir / "contacts.csv", rows)
    assert run_cli(*send_args(sandbox), cwd=workdir).code == 0
    report = run_cli("report", OUT, cwd=workdir)
    assert report.code == 0 and "sent" in report.stdout, report.stderr
    (workdir / f"{OUT}.journal").unlink()  # the journal is rebuilt from the CSV
    r = run_cli(*send_args(sandbox), cwd=workdir)
    assert r.code == 0, r.stderr
    no_traceback(r.stderr)
    assert len(sandbox.created) == 3
    back = list(read_back(workdir / OUT))
    assert [row["status"] for row in back] == ["sent"] * 3
    assert back[1]["Last Name"] == "=" + "x" * (LIMIT - 1)  # "'=…" on disk, neutralised
    assert b"'=" + b"x" * (LIMIT - 1) in (workdir / OUT).read_bytes()


# ---------------------------------------------------------------------------
# 7. bad --api-url and key files: one line, exit 2
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "http://evil.example\\@127.0.0.1/v1",  # urlsplit sees 127.0.0.1, aiohttp evil.example
    "http://evil.example@127.0.0.1/v1",
    "http://user:secret@127.0.0.1:8080/v1",
    "http://[::1/v1",
    "http://127.0.0.1:99999/v1",
    "http://127.0.0.1:port/v1",
    "https://exa mple.com/v1",
    "https://ex%61mple.com/v1",
    "https://xn--nxasmq6b.com:443/v1?debug=1",
    "http://10.0.0.1/v1",
])
def test_a_bad_api_url_is_one_line_and_exit_2(workdir: Path, url: str) -> None:
    write_contacts(workdir / "contacts.csv", people(2))
    r = run_cli("send", "contacts.csv", "-m", "mapping.yaml", "--api-url", url, cwd=workdir)
    assert r.code == 2, r.stderr
    assert r.stderr.startswith("bulksend: error: --api-url "), r.stderr
    assert len(r.stderr.splitlines()) == 2  # the error and its hint
    no_traceback(r.stderr)


@pytest.mark.parametrize(("content", "says"), [
    (b"\xff\xfek\x00e\x00y\x00", "is not UTF-8 text"),  # saved as UTF-16 by Notepad
    (b"caf\xe9-key", "is not UTF-8 text"),
    (b"\x00\x01\x02\x03binary", "a control or a non-ASCII character"),
    (b"", "is empty"),
    (b"\n\n  \n", "is empty"),
    (b"first-key\nsecond-key\n", "holds 2 lines"),
    (b"COLLECT_API_KEY=test-key-0123\n", "holds NAME=value"),
    (b"test key 0123", "a control or a non-ASCII character"),
    ("clé-unicode".encode(), "non-ASCII"),
    (b"k" * 5000, "over 4096 bytes"),
])
def test_a_bad_key_file_is_one_line_and_exit_2(workdir: Path, sandbox: Sandbox, content: bytes,
                                               says: str) -> None:
    write_contacts(workdir / "contacts.csv", people(2))
    (workdir / "key.txt").write_bytes(content)
    r = run_cli(*send_args(sandbox, "--api-key-file", "key.txt"), cwd=workdir, key=None)
    assert r.code == 2, r.stderr
    assert r.stderr.startswith("bulksend: error: key.txt: the API key file "), r.stderr
    assert says in r.stderr
    no_traceback(r.stderr)
    assert sandbox.created == []


def test_a_key_file_with_a_bom_and_a_newline_is_read(workdir: Path, sandbox: Sandbox) -> None:
    write_contacts(workdir / "contacts.csv", people(2))
    (workdir / "key.txt").write_bytes(b"\xef\xbb\xbf" + KEY.encode() + b"\r\n")
    r = run_cli(*send_args(sandbox, "--api-key-file", "key.txt"), cwd=workdir, key=None)
    assert r.code == 0, r.stderr
    assert len(sandbox.created) == 2


def test_a_multi_line_key_in_the_environment_is_refused(workdir: Path, sandbox: Sandbox) -> None:
    write_contacts(workdir / "contacts.csv", people(2))
    r = run_cli(*send_args(sandbox), cwd=workdir, key=KEY + "\nsecond")
    assert r.code == 2 and r.stderr.startswith("bulksend: error: COLLECT_API_KEY holds 2 lines"), r.stderr
    assert KEY not in r.stderr
    assert sandbox.created == []


def test_summary_json_on_the_results_path_is_refused_before_anything_is_sent(
        workdir: Path, sandbox: Sandbox) -> None:
    # Two outputs of a first run, neither existing yet: the summary would have
    # replaced the results file once the run ended (the record of what was sent).
    write_contacts(workdir / "contacts.csv", people(2))
    r = run_cli(*send_args(sandbox), "--summary-json", OUT, cwd=workdir)
    assert r.code == 2, r.stderr
    assert "--summary-json is the same file as the --results file" in r.stderr
    assert sandbox.created == [] and not (workdir / OUT).exists()


def test_a_summary_json_that_cannot_be_written_is_refused_before_anything_is_sent(
        workdir: Path, sandbox: Sandbox) -> None:
    write_contacts(workdir / "contacts.csv", people(2))
    r = run_cli(*send_args(sandbox), "--summary-json", "no-such-folder/summary.json", cwd=workdir)
    assert r.code == 2, r.stderr
    assert "--summary-json cannot be written there" in r.stderr
    assert sandbox.created == []
