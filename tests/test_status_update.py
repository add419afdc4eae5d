"""Issue 14: `bulksend status` and `bulksend update`, against the real sandbox and CLI.

What the server received is read from the sandbox (its GET counts, every PATCH
it applied); what the person reads, from the command's output; what was
written, from the results file.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import CONTRACT, KEY, people, posix_signals, read_results, run_cli, write_contacts

from bulksend.sandbox import (
    DEMO_CAMPAIGN_ID,
    ONBOARDING_CAMPAIGN_ID,
    Sandbox,
    SandboxConfig,
    running_sandbox,
)
from bulksend.store.updates import UpdateJournal
from bulksend.tasks.update import Change, updates_path

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz"
TRACK = ["request_status", "due_date", "status_read_at", "last_update", "updated_at"]


def request_id(n: int, prefix: str = "Rq") -> str:
    digits = ""
    for _ in range(15):
        n, d = divmod(n, len(ALPHABET))
        digits += ALPHABET[d]
    return prefix + digits


def write_results(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    """A results CSV as send writes it: (key, status, request_id) per row, rows from 2."""
    with open(path, "w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\r\n")
        writer.writerow([*CONTRACT, "Email"])
        for i, (key, status, rid) in enumerate(rows):
            portal = f"https://app.usecollect.com/portal/x/{rid}" if rid else ""
            writer.writerow([i + 2, key, status, rid, portal, "", "200" if rid else "400", "1",
                             "" if rid else "HTTP 400: bad", "", key.split("|")[-1]])
    return path


def preload(campaign: str, statuses: list[str], *, prefix: str = "Rq",
            due: dict[int, str] | None = None) -> tuple[dict[str, object], list[tuple[str, str, str]]]:
    """Requests that exist in the sandbox, one per status given, and the matching results rows."""
    requests, rows = [], []
    for i, status in enumerate(statuses):
        rid, email = request_id(i, prefix), f"client{i}@example.com"
        entry = {"_id": rid, "campaignId": campaign, "email": email, "status": status,
                 "createdAt": "2026-01-01T10:00:00Z"}
        if due and i in due:
            entry["dueDate"] = due[i]
        requests.append(entry)
        rows.append((f"{campaign}|{email}", "sent", rid))
    return {"contacts": [], "requests": requests}, rows


def gets(sandbox: Sandbox) -> int:
    return int(sandbox.stats["gets"])


def column(path: Path, name: str) -> list[str]:
    return [row[name] for row in read_results(path)[1]]


# -- status -------------------------------------------------------------------------


def test_status_of_1000_rows_takes_at_most_15_list_calls(tmp_path: Path) -> None:
    # 900 visible, 50 cancelled and 50 archived (hidden by the default listing, §6.3).
    statuses = (["pending"] * 500 + ["completed"] * 300 + ["waiting"] * 100
                + ["cancelled"] * 50 + ["archived"] * 50)
    records, rows = preload(ONBOARDING_CAMPAIGN_ID, statuses)
    results = write_results(tmp_path / "r.csv", rows)
    with running_sandbox(SandboxConfig(api_key=KEY, preload=records)) as sb:
        r = run_cli("status", str(results), "--api-url", sb.url, "--rate", "none", cwd=tmp_path)
        calls = gets(sb)
    assert r.code == 0, r.stderr
    assert calls <= 15, calls
    assert f"in {calls} calls" in r.stdout.splitlines()[0]
    assert column(results, "request_status") == statuses
    header = read_results(results)[0]
    assert header[:len(CONTRACT)] == CONTRACT and header[len(CONTRACT):len(CONTRACT) + 5] == TRACK
    assert header[-1] == "Email"


def test_status_sees_every_status_and_reads_like_a_summary(tmp_path: Path) -> None:
    statuses = ["pending", "completed", "due", "waiting", "archived", "cancelled", "error", "on-hold",
                "pending", "due"]
    due = {2: "2026-02-01T21:59:00Z", 9: "2026-01-15T21:59:00Z", 8: "2020-01-01T21:59:00Z"}
    records, rows = preload(DEMO_CAMPAIGN_ID, statuses, due=due)
    rows.append((f"{DEMO_CAMPAIGN_ID}|gone@example.com", "sent", request_id(99)))  # deleted since
    rows.append(("", "failed", ""))  # never sent: not read, not counted
    results = write_results(tmp_path / "r.csv", rows)
    with running_sandbox(SandboxConfig(api_key=KEY, preload=records)) as sb:
        r = run_cli("status", str(results), "--api-url", sb.url, cwd=tmp_path)
        failing = run_cli("status", str(results), "--api-url", sb.url, "--fail-on", "due,error", cwd=tmp_path)
        as_json = run_cli("status", str(results), "--api-url", sb.url, "--json", cwd=tmp_path)
    assert r.code == 0, r.stderr
    assert column(results, "request_status") == [*statuses, "not-found", ""]
    assert column(results, "due_date")[2] == "2026-02-01T21:59:00Z"
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"{results}: 11 requests, read ")
    # Counts with a bar, what needs someone first; custom statuses and not-found after.
    labels = [line.split()[0] for line in lines[1:10]]
    assert labels == ["due", "error", "pending", "waiting", "completed", "cancelled", "archived",
                      "on-hold", "not"]
    assert lines[1].split()[2:] == ["2", "█" * 30] and lines[3].split()[1:] == ["2", "█" * 30]
    assert lines[2].split()[1:] == ["1", "█" * 15]
    # Overdue first: due rows and the pending row whose date passed, most overdue first.
    at = lines.index("overdue (3), most overdue first:")
    assert [line.split()[1] for line in lines[at + 1:at + 4]] == ["10", "11", "4"]
    assert "error: Collect could not send these (1):" in lines
    assert f"bulksend update {results} --rows 8 --status pending --send-reopen-message" in r.stdout
    assert failing.code == 1 and "--fail-on due,error: 3 requests: exit 1" in failing.stdout
    data = json.loads(as_json.stdout)
    assert data["counts"]["due"] == 2 and data["counts"]["on-hold"] == 1 and data["counts"]["not-found"] == 1
    assert [row["row"] for row in data["overdue"]] == [10, 11, 4]
    assert as_json.code == 0


def test_status_finds_the_campaign_of_a_custom_key_with_one_get(tmp_path: Path) -> None:
    # Keys without the campaign and no send journal: one GET names the campaign, one listing does the rest.
    records, rows = preload(ONBOARDING_CAMPAIGN_ID, ["pending"] * 150 + ["completed"] * 50)
    results = write_results(tmp_path / "r.csv", [(key.split("|")[1], s, rid) for key, s, rid in rows])
    with running_sandbox(SandboxConfig(api_key=KEY, preload=records)) as sb:
        r = run_cli("status", str(results), "--api-url", sb.url, "--rate", "none", cwd=tmp_path)
        calls = gets(sb)
    assert r.code == 0, r.stderr
    assert column(results, "request_status") == ["pending"] * 150 + ["completed"] * 50
    assert calls == 1 + 2, calls  # GET /requests/{id}, then two pages


def test_status_output_leaves_the_results_file_as_it_was(tmp_path: Path) -> None:
    records, rows = preload(DEMO_CAMPAIGN_ID, ["waiting"])
    results = write_results(tmp_path / "r.csv", rows)
    before = results.read_bytes()
    with running_sandbox(SandboxConfig(api_key=KEY, preload=records)) as sb:
        r = run_cli("status", str(results), "--api-url", sb.url, "-o", "today.csv", cwd=tmp_path)
    assert r.code == 0, r.stderr
    assert results.read_bytes() == before
    assert column(tmp_path / "today.csv", "request_status") == ["waiting"]


@pytest.mark.parametrize(("args", "first_words"), [
    (["status", "contacts.csv"], "bulksend: error: contacts.csv: not a bulksend results file"),
    (["status", "nothing.csv"], "bulksend: error: nothing.csv: cannot read the results file"),
    (["status", "r.csv", "--fail-on", "late"], "bulksend: error: --fail-on: unknown status 'late'"),
    (["status", "bad.csv"], "bulksend: error: bad.csv: row 2: status sent but no request_id"),
])
def test_status_bad_input_is_one_line_and_exit_2(tmp_path: Path, sandbox: Sandbox, args: list[str],
                                                 first_words: str) -> None:
    write_contacts(tmp_path / "contacts.csv", people(2))
    write_results(tmp_path / "r.csv", preload(DEMO_CAMPAIGN_ID, ["pending"])[1])
    write_results(tmp_path / "bad.csv", [(f"{DEMO_CAMPAIGN_ID}|a@example.com", "sent", "")])
    r = run_cli(*args, "--api-url", sandbox.url, cwd=tmp_path)
    assert r.code == 2
    assert r.stderr.startswith(first_words), r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.splitlines()) <= 2
    assert gets(sandbox) == 0


# -- update -------------------------------------------------------------------------


def sent_world(tmp_path: Path, statuses: list[str]) -> tuple[dict[str, object], Path]:
    records, rows = preload(DEMO_CAMPAIGN_ID, statuses)
    return records, write_results(tmp_path / "r.csv", rows)


def test_update_changes_exactly_the_chosen_rows_once(tmp_path: Path) -> None:
    statuses = ["pending", "completed", "pending", "waiting", "due", "pending"]
    records, results = sent_world(tmp_path, statuses)
    with running_sandbox(SandboxConfig(api_key=KEY, preload=records)) as sb:
        assert run_cli("status", str(results), "--api-url", sb.url, cwd=tmp_path).code == 0
        r = run_cli("update", str(results), "--where", "status=pending,due", "--status", "cancelled",
                    "--api-url", sb.url, cwd=tmp_path, stdin="y\n")
        again = run_cli("update", str(results), "--where", "status=pending,due", "--status", "cancelled",
                        "--api-url", sb.url, "--yes", cwd=tmp_path)
        rows_too = run_cli("update", str(results), "--rows", "2,4,6", "--status", "canceled",
                           "--api-url", sb.url, "--yes", cwd=tmp_path)
        patches = sb.patches
    assert r.code == 0, r.stdout + r.stderr
    # The confirmation listed what will change, row by row, before anything did.
    assert f"{results}: 4 requests will change: status -> canceled" in r.stdout
    for row, who in ((2, "client0"), (4, "client2"), (6, "client4"), (7, "client5")):
        assert f"row {row:<6} {who}@example.com" in r.stdout
    assert "Make these changes? [y/N]" in r.stdout
    chosen = {request_id(i) for i, s in enumerate(statuses) if s in ("pending", "due")}
    assert [p["requestId"] for p in patches if p["requestId"] in chosen] == [p["requestId"] for p in patches]
    assert Counter(p["requestId"] for p in patches) == dict.fromkeys(chosen, 1)
    assert all(p["received"]["status"] == "canceled" for p in patches)  # the PATCH spelling (§7)
    assert column(results, "request_status") == ["cancelled", "completed", "cancelled", "waiting",
                                                 "cancelled", "cancelled"]
    assert column(results, "last_update")[0] == "status -> canceled: done"
    # Rerun: the statuses are now cancelled, nothing matches; --rows: the journal says made.
    assert again.code == 0 and "0 requests will change" in again.stdout
    assert rows_too.code == 0 and "3 more already have this change" in rows_too.stdout


def test_update_asks_and_no_answer_changes_nothing(tmp_path: Path) -> None:
    records, results = sent_world(tmp_path, ["pending", "pending"])
    with running_sandbox(SandboxConfig(api_key=KEY, preload=records)) as sb:
        declined = run_cli("update", str(results), "--all", "--due-date", "2099-12-31",
                           "--api-url", sb.url, cwd=tmp_path, stdin="n\n")
        silent = run_cli("update", str(results), "--all", "--due-date", "2099-12-31",
                         "--api-url", sb.url, cwd=tmp_path, stdin="")
        patches = sb.patches
    assert declined.code == 1 and declined.stdout.rstrip().endswith("nothing changed")
    assert silent.code == 2 and "not confirmed (no answer): nothing changed" in silent.stderr
    assert "--yes" in silent.stderr
    assert patches == []


def test_update_sets_due_date_assignee_and_message_flags(tmp_path: Path) -> None:
    records, results = sent_world(tmp_path, ["pending", "waiting", "pending"])
    with running_sandbox(SandboxConfig(api_key=KEY, preload=records)) as sb:
        r = run_cli("update", str(results), "--rows", "2,4", "--due-date", "2099-12-31",
                    "--assign", "owner@sandbox.example", "--send-reopen-message",
                    "--no-send-completion-message",
                    "--api-url", sb.url, "--yes", cwd=tmp_path)
        patches = sb.patches
    assert r.code == 0, r.stdout + r.stderr
    assert [p["received"] for p in patches] == [
        {"requestId": request_id(i), "dueDate": "2099-12-31T23:59:00+01:00",
         "assignedTo": "owner@sandbox.example",
         "sendCompletionMessage": False, "sendReopenMessage": True} for i in (0, 2)]


def test_a_bare_due_day_is_sent_as_the_end_of_that_day_in_the_teams_zone(tmp_path: Path) -> None:
    # As send does (issue 17): a bare 2099-07-01 is 23:59 that day in the team's
    # zone (GET /team), not a date the API may read as midnight UTC.
    records, results = sent_world(tmp_path, ["pending"])
    with running_sandbox(SandboxConfig(api_key=KEY, preload=records, team_tz="America/New_York")) as sb:
        r = run_cli("update", str(results), "--all", "--due-date", "2099-07-01", "--api-url", sb.url,
                    "--yes", cwd=tmp_path)
        patches = sb.patches
    assert r.code == 0, r.stdout + r.stderr
    assert [p["received"]["dueDate"] for p in patches] == ["2099-07-01T23:59:00-04:00"]
    assert "1 request will change" in r.stdout


@posix_signals
def test_update_killed_midway_and_rerun_changes_each_row_once(tmp_path: Path) -> None:
    statuses = ["pending"] * 40
    records, results = sent_world(tmp_path, statuses)
    args = [sys.executable, "-m", "bulksend", "update", str(results), "--all", "--status", "archived",
            "--yes", "--rate", "20/s", "-c", "2"]
    with running_sandbox(SandboxConfig(api_key=KEY, preload=records, latency=0.02)) as sb:
        env = {"COLLECT_API_KEY": KEY, "PATH": "/usr/bin:/bin"}
        proc = subprocess.Popen([*args, "--api-url", sb.url], cwd=tmp_path, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while len(sb.patches) < 12 and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        first = len(sb.patches)
        assert 12 <= first < 40
        r = run_cli("update", str(results), "--all", "--status", "archived", "--yes", "--rate", "20/s",
                    "--api-url", sb.url, cwd=tmp_path)
        patches = sb.patches
    assert r.code == 0, r.stdout + r.stderr
    assert Counter(p["requestId"] for p in patches) == {request_id(i): 1 for i in range(40)}
    assert column(results, "request_status") == ["archived"] * 40
    assert "already have this change" in r.stdout


def test_a_change_begun_before_a_kill_is_looked_at_before_it_is_sent_again(tmp_path: Path) -> None:
    # The kill's worst moments, exactly: row 2's PATCH was applied and its answer
    # lost; row 3's was journaled but never left. Both are "begun" in the journal.
    records, results = sent_world(tmp_path, ["pending", "pending"])
    journal = UpdateJournal(updates_path(results))
    change = Change(status="canceled")
    journal.begin(change.key, request_id(0), 2)
    journal.begin(change.key, request_id(1), 3)
    journal.close()
    with running_sandbox(SandboxConfig(api_key=KEY, preload=records)) as sb:
        sb.set_request_status(request_id(0), "cancelled")  # what the lost PATCH did
        r = run_cli("update", str(results), "--rows", "2-3", "--status", "canceled", "--yes",
                    "--api-url", sb.url, cwd=tmp_path)
        patches = sb.patches
    assert r.code == 0, r.stdout + r.stderr
    assert [p["requestId"] for p in patches] == [request_id(1)]  # row 2 was not changed twice
    assert column(results, "request_status") == ["cancelled", "cancelled"]


@pytest.mark.parametrize(("args", "first_words"), [
    (["contacts.csv", "--all", "--status", "archived"],
     "bulksend: error: contacts.csv: not a bulksend results"),
    (["r.csv", "--rows", "2,3", "--status", "archived"],
     "bulksend: error: r.csv: row 3: no request_id (status failed): nothing changed"),
    (["r.csv", "--rows", "9", "--status", "archived"], "bulksend: error: r.csv: no row 9"),
    (["r.csv", "--all", "--status", "cancled"], "bulksend: error: --status: unknown status 'cancled'"),
    (["r.csv", "--all", "--status", "due"], "bulksend: error: --status due: Collect sets due by itself"),
    (["r.csv", "--where", "status=pendng", "--status", "archived"],
     "bulksend: error: --where: unknown status 'pendng'"),
    (["r.csv", "--all", "--due-date", "31/12/2099"],
     "bulksend: error: --due-date '31/12/2099': not an ISO 8601 date"),
    (["r.csv", "--all", "--due-date", "2020-01-01"],
     "bulksend: error: --due-date '2020-01-01': is in the past"),
    (["r.csv", "--all"], "bulksend: error: nothing to change"),
    (["r.csv", "--status", "archived"], "bulksend: error: which rows? nothing chosen"),
    (["r.csv", "--rows", "4-2", "--status", "archived"], "bulksend: error: --rows '4-2'"),
])
def test_update_bad_input_is_one_line_exit_2_and_nothing_changed(tmp_path: Path, args: list[str],
                                                                first_words: str) -> None:
    write_contacts(tmp_path / "contacts.csv", people(2))
    records, rows = preload(DEMO_CAMPAIGN_ID, ["pending"])
    results = write_results(tmp_path / "r.csv", [*rows, ("k|b@example.com", "failed", "")])
    with running_sandbox(SandboxConfig(api_key=KEY, preload=records)) as sb:
        assert run_cli("status", "r.csv", "--api-url", sb.url, cwd=tmp_path).code == 0
        before = results.read_bytes()
        r = run_cli("update", *args, "--yes", "--api-url", sb.url, cwd=tmp_path)
        patches = sb.patches
    assert r.code == 2, r.stdout + r.stderr
    assert r.stderr.startswith(first_words), r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.splitlines()) <= 2
    assert patches == [] and results.read_bytes() == before


def test_send_rerun_after_status_and_update_resumes_and_sends_nothing_twice(workdir: Path) -> None:
    contacts = write_contacts(workdir / "contacts.csv", people(12))
    env = {"BULKSEND_CHECKPOINT_EVERY": "4"}
    with running_sandbox(SandboxConfig(api_key=KEY, seed=3, script=["ok"] * 5 + ["500"] * 2)) as sb:
        base = ["--api-url", sb.url, "--rate", "none"]
        first = run_cli("send", "contacts.csv", "-m", "mapping.yaml", "--max-attempts", "1", *base,
                        cwd=workdir, env=env)
        assert first.code == 1, first.stdout + first.stderr  # two rows failed (500)
        assert run_cli("status", "contacts-results.csv", *base, cwd=workdir).code == 0
        assert run_cli("update", "contacts-results.csv", "--rows", "2-4", "--status", "archived", "--yes",
                       *base, cwd=workdir).code == 0
        header = read_results(workdir / "contacts-results.csv")[0]
        assert header[len(CONTRACT):len(CONTRACT) + 5] == TRACK
        write_contacts(contacts, people(15))  # three new contacts at the end
        again = run_cli("send", "contacts.csv", "-m", "mapping.yaml", *base, cwd=workdir, env=env)
        created = sb.created
    assert again.code == 0, again.stdout + again.stderr
    per_email = Counter(c["email"] for c in created)
    assert per_email == {f"person{i}@example.com": 1 for i in range(15)}
    _, rows = read_results(workdir / "contacts-results.csv")
    assert [r["status"] for r in rows] == ["sent"] * 15


def test_a_refused_key_stops_status_and_update_with_exit_3(tmp_path: Path) -> None:
    records, results = sent_world(tmp_path, ["pending", "pending"])
    before = results.read_bytes()
    with running_sandbox(SandboxConfig(api_key=KEY, preload=records)) as sb:
        status = run_cli("status", str(results), "--api-url", sb.url, cwd=tmp_path, key="wrong-key")
        update = run_cli("update", str(results), "--all", "--status", "archived", "--yes",
                         "--api-url", sb.url, cwd=tmp_path, key="wrong-key")
        patches = sb.patches
    assert status.code == 3 and status.stderr.startswith("bulksend: error: the API key was refused")
    assert update.code == 3 and "the API key was refused" in update.stderr
    assert patches == []
    assert column(results, "request_status") == ["", ""]
    assert results.read_bytes() != before  # update wrote each row's outcome: not confirmed
    # Each row whose PATCH left says it may not be made: the rerun reads it back first.
    assert set(column(results, "last_update")) <= {
        "", "status -> archived: not confirmed (stopped before its answer); rerun the same command"}
    assert column(results, "last_update") != ["", ""]
