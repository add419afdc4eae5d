"""Issue 27: after the send, round two. Commands that remember, hints that run,
records that add up. Each test runs the real CLI against the real sandbox on
loopback (tests/conftest.py) and reads what the server received, what the
person read, and what was written.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import click
import pytest
from conftest import KEY, MAPPING, linux_tmpfs, people, read_results, run_cli, write_contacts
from test_status_update import preload, write_results

from bulksend.cli.main import cli
from bulksend.sandbox import DEMO_CAMPAIGN_ID, ONBOARDING_CAMPAIGN_ID, Sandbox, SandboxConfig, running_sandbox

ROOT = Path(__file__).resolve().parent.parent
TRACK = ["request_status", "due_date", "status_read_at", "last_update", "updated_at"]
RESULTS = "contacts-results.csv"


def send(cwd: Path, *args: str, contacts: str = "contacts.csv", **kwargs: object) -> object:
    return run_cli("send", contacts, "-m", "mapping.yaml", *args, cwd=cwd, **kwargs)  # type: ignore[arg-type]


def options_of(command: str) -> set[str]:
    found: set[str] = set()
    for param in cli.commands[command].params:
        if isinstance(param, click.Option):
            found.update(n for n in [*param.opts, *param.secondary_opts] if n.startswith("--"))
    return found


# -- 1. the results file remembers its API URL ----------------------------------------


def test_status_update_and_reconcile_go_where_the_send_sent(workdir: Path, sandbox: Sandbox) -> None:
    write_contacts(workdir / "contacts.csv", people(3))
    assert send(workdir, "--api-url", sandbox.url).code == 0  # type: ignore[attr-defined]
    # No --api-url, no COLLECT_API_URL: the send's API, not the production address.
    status = run_cli("status", RESULTS, cwd=workdir)
    update = run_cli("update", RESULTS, "--rows", "3", "--status", "archived", "--yes", cwd=workdir)
    reconcile = run_cli("reconcile", RESULTS, cwd=workdir)
    assert status.code == 0, status.stderr
    assert status.stdout.startswith(f"{RESULTS}: 3 requests, read ") and "pending" in status.stdout
    assert update.code == 0, update.stdout + update.stderr
    assert [p["received"]["status"] for p in sandbox.patches] == ["archived"]
    assert reconcile.code == 0 and "no unknown rows" in reconcile.stdout, reconcile.stderr
    # The URL is remembered, never the key.
    kept = b"".join(p.read_bytes() for p in workdir.glob(f"{RESULTS}.journal*"))
    assert sandbox.url.encode() in kept and KEY.encode() not in kept
    # Told otherwise, it reads there and says plainly that the file was sent elsewhere.
    with running_sandbox(SandboxConfig(api_key=KEY)) as elsewhere:
        other = run_cli("status", RESULTS, "--api-url", elsewhere.url, cwd=workdir)
    assert other.code == 0, other.stderr
    assert f"{RESULTS} was sent to {sandbox.url}; reading {elsewhere.url} instead" in other.stderr
    assert f"not found (3): {elsewhere.url} has no request with their ids" in other.stdout


# -- 2. a resume keeps what status and update wrote ------------------------------------


def test_a_resume_keeps_the_columns_status_and_update_wrote(workdir: Path, sandbox: Sandbox) -> None:
    write_contacts(workdir / "contacts.csv", people(4))
    at = ("--api-url", sandbox.url)
    assert send(workdir, *at).code == 0  # type: ignore[attr-defined]
    assert run_cli("status", RESULTS, *at, cwd=workdir).code == 0
    changed = run_cli("update", RESULTS, "--rows", "2", "--due-date", "2099-12-31", "--yes", *at, cwd=workdir)
    assert changed.code == 0, changed.stdout + changed.stderr
    header, before = read_results(workdir / RESULTS)
    write_contacts(workdir / "contacts.csv", people(5))  # one new row at the end
    again = send(workdir, *at)
    assert again.code == 0, again.stderr  # type: ignore[attr-defined]
    assert "1 POSTs" in again.stdout  # type: ignore[attr-defined]
    after_header, after = read_results(workdir / RESULTS)
    assert after_header == header
    assert [{c: r[c] for c in TRACK} for r in after[:4]] == [{c: r[c] for c in TRACK} for r in before]
    assert after[0]["last_update"].startswith("dueDate -> 2099-12-31T23:59:00+01:00: done")
    assert all(r["request_status"] == "pending" and r["status_read_at"] for r in after[:4])
    assert after[4]["status"] == "sent" and not any(after[4][c] for c in TRACK)


# -- 3. an extended request is not overdue ----------------------------------------------


def test_status_after_update_due_date_does_not_list_the_extended_request_as_overdue(tmp_path: Path) -> None:
    records, rows = preload(DEMO_CAMPAIGN_ID, ["due", "due"],
                            due={0: "2026-01-15T21:59:00Z", 1: "2026-01-20T21:59:00Z"})
    write_results(tmp_path / "r.csv", rows)
    with running_sandbox(SandboxConfig(api_key=KEY, preload=records)) as sb:
        before = run_cli("status", "r.csv", "--api-url", sb.url, "--json", cwd=tmp_path)
        extended = run_cli("update", "r.csv", "--rows", "2", "--due-date", "2099-06-30", "--yes",
                           "--api-url", sb.url, cwd=tmp_path)
        after = run_cli("status", "r.csv", "--api-url", sb.url, "--json", cwd=tmp_path)
        text = run_cli("status", "r.csv", "--api-url", sb.url, cwd=tmp_path)
    assert extended.code == 0, extended.stdout + extended.stderr
    assert [r["row"] for r in json.loads(before.stdout)["overdue"]] == [2, 3]
    data = json.loads(after.stdout)
    assert [r["row"] for r in data["overdue"]] == [3]
    assert [r["row"] for r in data["extended"]] == [2]
    assert "overdue (1), most overdue first:" in text.stdout
    assert "due, but with a later due date now (1; extended): not overdue" in text.stdout


# -- 4. every printed command does what its comment says -------------------------------


def test_report_prints_the_real_command_and_it_sends_what_waits(workdir: Path, sandbox: Sandbox) -> None:
    write_contacts(workdir / "contacts.csv", people(10))
    assert send(workdir, "--limit", "3", "--api-url", sandbox.url).code == 0  # type: ignore[attr-defined]
    report = run_cli("report", RESULTS, cwd=workdir)
    assert "nothing to rerun" not in report.stdout
    lines = report.stdout.splitlines()
    at = lines.index("rerun the send: it sends the 7 rows not sent yet (ready); rows already sent are not "
                     "sent again:")
    command = lines[at + 1].strip()
    assert command == f"bulksend send contacts.csv -m mapping.yaml --results {RESULTS}"
    assert run_cli(*shlex.split(command)[1:], cwd=workdir).code == 0
    assert len(sandbox.created) == 10
    assert run_cli("report", RESULTS, cwd=workdir).stdout.rstrip().endswith("nothing to rerun.")


def test_send_the_rest_after_only_failed_and_go_live_after_a_limited_rehearsal(workdir: Path) -> None:
    write_contacts(workdir / "contacts.csv", people(6))
    with running_sandbox(SandboxConfig(api_key=KEY, script=["ok", "refused-200", "refused-200"])) as sb:
        first = send(workdir, "--limit", "4", "-c", "1", "--api-url", sb.url)
        assert first.code == 1, first.stdout  # type: ignore[attr-defined]
        retried = send(workdir, "--only-failed")
        rest = re.search(r"^to send the rest: (.*)$", retried.stdout, re.M)  # type: ignore[attr-defined]
        assert rest is not None, retried.stdout  # type: ignore[attr-defined]
        assert "--only-failed" not in rest[1]
        assert run_cli(*shlex.split(rest[1])[1:], cwd=workdir).code == 0
        assert len(sb.created) == 6
        # A rehearsal of one row: "then the rest" sends every row; the canary, five.
        write_contacts(workdir / "others.csv", people(4, start=100))
        rehearsal = send(workdir, "--sandbox", "--limit", "1", contacts="others.csv", key=None)
        steps = {why.strip(): cmd.strip() for cmd, why in re.findall(
            r"^  (bulksend send .*?)#(.*)$", rehearsal.stdout, re.M)}  # type: ignore[attr-defined]
        canary, then = steps["a canary: 5 real requests"], steps["then the rest; rerun the same to resume"]
        assert shlex.split(canary).count("--limit") == 1 and "--limit" not in shlex.split(then)
        live = run_cli(*shlex.split(then)[1:], cwd=workdir, env={"COLLECT_API_URL": sb.url})
        assert live.code == 0, live.stdout + live.stderr
        assert len(sb.created) == 10


# -- 5. whatever stops a run, the counts add up -----------------------------------------

LABELS = {"sent": "sent", "ready (not sent)": "ready", "failed": "failed", "unknown": "unknown",
          "invalid (not sent)": "invalid", "duplicate (not sent)": "duplicate",
          "not reached": "not-reached"}


def printed_counts(stdout: str) -> dict[str, int]:
    found = re.findall(r"^  (\S.*?) {2,}(\d+)$", stdout, re.M)
    return {LABELS[label]: int(n) for label, n in found if label in LABELS}


def complete_lines(path: Path) -> Counter[str]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        lines = list(csv.reader(fh))
    return Counter(cells[2] for cells in lines[1:] if len(cells) == len(lines[0]))


def assert_they_agree(stdout: str, summary: Path, results: Path, rows: int) -> None:
    data = json.loads(summary.read_text(encoding="utf-8"))
    assert data["rows"] == rows and sum(data["counts"].values()) == rows, data
    assert printed_counts(stdout) == data["counts"], stdout
    assert f": {rows} rows, " in stdout
    held = complete_lines(results)
    counted = rows - data["counts"].get("not-reached", 0)
    if sum(held.values()) < counted:
        assert f"{results.name} lists {sum(held.values())} of the {counted} rows counted above" in stdout
        assert all(held[status] <= data["counts"].get(status, 0) for status in held), (held, data)
    else:
        assert held == {s: n for s, n in data["counts"].items() if s != "not-reached"}, (held, data)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 200 KiB tmpfs (root only; skipped where mount is refused)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(disk)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@linux_tmpfs
def test_a_run_stopped_by_a_full_disk_counts_every_row_and_says_what_the_file_holds(
        workdir: Path, sandbox: Sandbox, tiny_disk: Path) -> None:
    write_contacts(workdir / "contacts.csv", people(1500))
    results = tiny_disk / "out.csv"
    r = send(workdir, "--api-url", sandbox.url, "--rate", "none", "--results", str(results),
             "--summary-json", "summary.json")
    assert r.code == 3, r.stdout + r.stderr  # type: ignore[attr-defined]
    assert 0 < len(sandbox.created) < 1500
    assert_they_agree(r.stdout, workdir / "summary.json", results, 1500)  # type: ignore[attr-defined]


def test_a_run_stopped_by_a_401_counts_every_row_in_all_three(workdir: Path) -> None:
    write_contacts(workdir / "contacts.csv", people(20))
    with running_sandbox(SandboxConfig(api_key=KEY, script=["ok"] * 3 + ["401"])) as sb:
        r = send(workdir, "--api-url", sb.url, "-c", "1", "--summary-json", "summary.json")
    assert r.code == 3, r.stdout + r.stderr  # type: ignore[attr-defined]
    assert_they_agree(r.stdout, workdir / "summary.json", workdir / RESULTS, 20)  # type: ignore[attr-defined]


# -- 6. update --due-date reads dates as the mapping did ---------------------------------


def due_world(folder: Path, due: str, cells: list[str]) -> Path:
    folder.mkdir()
    (folder / "mapping.yaml").write_text(MAPPING + f"dueDate: {due}\n", encoding="utf-8")
    with open(folder / "contacts.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Email", "First Name", "Last Name", "Documents", "Due"])
        writer.writerows([f"p{i}@example.com", f"P{i}", "", "", cell] for i, cell in enumerate(cells))
    return folder


def test_update_due_date_reads_the_date_as_the_mapping_did(tmp_path: Path) -> None:
    french = due_world(tmp_path / "fr", "{column: Due, format: '%d/%m/%Y'}", ["15/01/2099", "16/01/2099"])
    with running_sandbox(SandboxConfig(api_key=KEY, team_tz="America/New_York")) as sb:
        assert send(french, "--api-url", sb.url).code == 0  # type: ignore[attr-defined]
        ok = run_cli("update", RESULTS, "--rows", "2", "--due-date", "15/02/2099", "--yes", cwd=french)
        iso = run_cli("update", RESULTS, "--rows", "3", "--due-date", "2099-03-01", "--yes", cwd=french)
        compact = run_cli("update", RESULTS, "--rows", "3", "--due-date", "20991231", "--yes", cwd=french)
        patches = [p["received"]["dueDate"] for p in sb.patches]
    assert ok.code == 0 and iso.code == 0, ok.stderr + iso.stderr
    assert patches == ["2099-02-15T23:59:00-05:00", "2099-03-01T23:59:00-05:00"]
    assert compact.code == 2 and compact.stderr.startswith(
        "bulksend: error: --due-date '20991231': not a date in format %d/%m/%Y"), compact.stderr

    # An ISO mapping with no timezone: a time without an offset is the team's (UTC+14 here).
    kiribati = due_world(tmp_path / "ki", "{column: Due}", ["2099-01-15"])
    soon = datetime.now(UTC) + timedelta(hours=2)  # in two hours in UTC: half a day ago in UTC+14
    later = datetime.now(UTC) + timedelta(days=2)
    with running_sandbox(SandboxConfig(api_key=KEY, team_tz="Pacific/Kiritimati")) as sb:
        assert send(kiribati, "--api-url", sb.url).code == 0  # type: ignore[attr-defined]
        gone = run_cli("update", RESULTS, "--all", "--due-date", f"{soon:%Y-%m-%dT%H:%M:%S}", "--yes",
                       cwd=kiribati)
        naive = run_cli("update", RESULTS, "--all", "--due-date", f"{later:%Y-%m-%dT%H:%M:%S}", "--yes",
                        cwd=kiribati)
        patches = [p["received"]["dueDate"] for p in sb.patches]
    assert gone.code == 2 and "is in the past" in gone.stderr, gone.stderr
    assert naive.code == 0, naive.stdout + naive.stderr
    assert patches == [f"{later:%Y-%m-%dT%H:%M:%S}+14:00"]

    # A team zone that cannot be used: nothing is sent in UTC instead; update stops.
    with running_sandbox(SandboxConfig(api_key=KEY, team_tz="Not/AZone")) as sb:
        stop = run_cli("update", RESULTS, "--all", "--due-date", "2099-02-01", "--yes", "--api-url", sb.url,
                       cwd=kiribati)
        assert sb.patches == [] and sb.stats["gets"] == 1  # GET /team, nothing else
    assert stop.code == 3, stop.stdout + stop.stderr
    assert "GET /team names 'Not/AZone', no known zone: nothing was changed" in stop.stderr


# -- 7. hints name only options the command accepts --------------------------------------


def test_a_quota_during_status_and_update_names_only_their_own_options(tmp_path: Path) -> None:
    records, rows = preload(DEMO_CAMPAIGN_ID, ["pending"])
    more, more_rows = preload(ONBOARDING_CAMPAIGN_ID, ["pending"], prefix="Rz")
    records["requests"] = [*records["requests"], *more["requests"]]  # type: ignore[misc]
    write_results(tmp_path / "r.csv", [*rows, *more_rows])
    # One call, then a 429 asking to wait an hour: longer than --max-pause.
    with running_sandbox(SandboxConfig(api_key=KEY, preload=records, rate_limit=1 / 3600)) as sb:
        status = run_cli("status", "r.csv", "--api-url", sb.url, cwd=tmp_path)
        update = run_cli("update", "r.csv", "--all", "--status", "archived", "--yes", "--api-url", sb.url,
                         cwd=tmp_path)
    for command, r in (("status", status), ("update", update)):
        assert r.code == 3, (command, r.stdout, r.stderr)
        assert "--max-pause" in r.stderr, r.stderr
        named = set(re.findall(r"(--[a-z][a-z-]+)", r.stderr))
        assert named <= options_of(command), (command, named - options_of(command))


# -- 8. an overall patience with 429s ----------------------------------------------------


def test_a_server_answering_429_retry_after_0_forever_stops_after_the_patience(workdir: Path) -> None:
    write_contacts(workdir / "contacts.csv", people(5))
    with running_sandbox(SandboxConfig(api_key=KEY, quota_after=0, quota_retry_after=0)) as sb:
        started = time.monotonic()
        r = send(workdir, "--api-url", sb.url, "--patience", "1", "--summary-json", "summary.json")
        took = time.monotonic() - started
    assert r.code == 3, r.stdout + r.stderr  # type: ignore[attr-defined]
    assert took < 15, took
    assert "answered 429" in r.stdout and "--patience" in r.stdout  # type: ignore[attr-defined]
    assert_they_agree(r.stdout, workdir / "summary.json", workdir / RESULTS, 5)  # type: ignore[attr-defined]
    for command in ("send", "status", "update", "reconcile"):
        assert "--patience" in options_of(command)
    help_text = run_cli("send", "--help", cwd=workdir, key=None).stdout
    assert "--patience" in help_text and "120" in help_text


# -- 9. the demo's last lines, and status on a rehearsal ---------------------------------


def test_status_on_a_rehearsal_says_why_before_anything_else(workdir: Path) -> None:
    write_contacts(workdir / "contacts.csv", people(3))
    assert send(workdir, "--sandbox", key=None).code == 0  # type: ignore[attr-defined]
    r = run_cli("status", "contacts-sandbox-results.csv", cwd=workdir, key=None)
    assert r.code == 2 and "holds a sandbox rehearsal, not real sends" in r.stderr, r.stderr


def test_the_demo_suggests_nothing_that_needs_its_gone_sandbox(tmp_path: Path) -> None:
    r = run_cli("demo", cwd=tmp_path, key=None)
    assert r.code == 0, r.stderr
    assert "bulksend update" not in r.stdout
    assert "`bulksend report demo-results.csv` reads it" in r.stdout
    status = run_cli("status", "demo-results.csv", cwd=tmp_path)
    assert status.code == 2 and "holds a sandbox rehearsal" in status.stderr, status.stderr
    assert "`bulksend demo` runs it again" in run_cli("report", "demo-results.csv", cwd=tmp_path).stdout


# -- the README's quickstart, line by line ------------------------------------------------


def quickstart() -> list[list[str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Quickstart\n+```sh\n(.*?)```", text, re.S)
    assert block is not None
    return [shlex.split(line, comments=True) for line in block[1].splitlines() if line.strip()]


def test_the_readme_quickstart_runs_line_by_line_against_bulksend_sandbox(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLLECT_API_URL", raising=False)
    soon = date.today() + timedelta(days=20)
    with open(tmp_path / "contacts.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Email", "Prénom", "Nom", "Échéance"])
        writer.writerows([f"client{i}@example.com", f"C{i}", "Martin", f"{soon + timedelta(days=i):%d/%m/%Y}"]
                         for i in range(8))
    server = subprocess.Popen([sys.executable, "-m", "bulksend", "sandbox", "--port", "0", "--api-key", KEY],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None
        url = re.search(r"http://127\.0\.0\.1:\d+/v1", server.stdout.readline())
        assert url is not None
        key: str | None = None
        sent = False
        for args in quickstart():
            if args[0] == "export":
                key = KEY  # export COLLECT_API_KEY=...
                continue
            env = {}
            if args[1] == "send" and "--sandbox" not in args and not sent:
                env, sent = {"COLLECT_API_URL": url[0]}, True  # the first send only
            r = run_cli(*args[1:], cwd=tmp_path, key=key, env=env)
            assert r.code == 0, (args, r.stdout, r.stderr)
            if args[1] == "init":  # as the README says: the campaign's id in place of the stand-in
                mapping = tmp_path / "mapping.yaml"
                mapping.write_text(mapping.read_text(encoding="utf-8").replace(
                    "YOUR_CAMPAIGN_ID", DEMO_CAMPAIGN_ID), encoding="utf-8")
        assert sent
        assert r.stdout.startswith(f"{RESULTS}: 8 requests, read "), r.stdout
        assert "pending" in r.stdout
    finally:
        server.terminate()
        server.wait(timeout=10)
        if server.stdout is not None:
            server.stdout.close()
