"""Exactly once, round three (issue 23): a row is its key, every unsent row is
checked, and ``update`` never repeats a change.

Each test drives the real CLI against the real sandbox on 127.0.0.1 (the strict
profile where it matters) and asserts what the server received: the requests it
created (``Sandbox.created``) and the PATCHes it applied (``Sandbox.patches``).
"""

from __future__ import annotations

import base64
import contextlib
import csv
import json
import random
import signal
import sqlite3
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import KEY, people, read_results, run_cli, write_contacts
from test_exactly_once import _reap_runs, start, wait_for  # noqa: F401 - _reap_runs: kills stray runs
from test_status_update import column, preload, request_id, write_results

from bulksend.sandbox import DEMO_CAMPAIGN_ID, Sandbox, SandboxConfig, running_sandbox
from bulksend.store.updates import UpdateJournal
from bulksend.tasks.update import Change, updates_path

MAPPING = f"""\
campaignId: {{value: {DEMO_CAMPAIGN_ID}}}
contact:
  email: Email
  firstName: First Name
"""


def contacts(path: Path, emails: list[str], extra: dict[str, list[str]] | None = None) -> Path:
    columns = ["Email", "First Name", *(extra or {})]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for i, email in enumerate(emails):
            writer.writerow([email, f"Name{i}", *((extra or {})[c][i] for c in extra or {})])
    return path


def send(work: Path, sandbox: Sandbox, *args: str, mapping: str = "mapping.yaml") -> Any:
    return run_cli("send", "contacts.csv", "-m", mapping, "-o", "out.csv", "--api-url", sandbox.url,
                   "--no-progress", *args, cwd=work)


def lines(work: Path, name: str = "out.csv") -> list[dict[str, str]]:
    return read_results(work / name)[1]


def strict(**overrides: Any) -> SandboxConfig:
    """The strict profile without its random faults (each test scripts its own)."""
    quiet = {"created_5xx_rate": 0.0, "odd_200_rate": 0.0, "fail_rate": 0.0, "drop_rate": 0.0,
             "ambiguous_rate": 0.0}
    return SandboxConfig.strict(api_key=KEY, seed=1, **(quiet | overrides))


# -- case 6: contradictory options --------------------------------------------------


def test_case6_skip_existing_and_send_anyway_together_are_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "mapping.yaml").write_text(MAPPING, encoding="utf-8")
    contacts(tmp_path / "contacts.csv", ["a@example.com", "b@example.com"])
    preload = {"requests": [{"_id": "PreexistingReqA01", "campaignId": DEMO_CAMPAIGN_ID,
                             "email": "a@example.com", "createdAt": "2026-01-05T10:00:00Z"}]}
    with running_sandbox(strict(preload=preload)) as sb:
        for flags in (["--skip-existing", "--send-anyway"], ["--send-anyway", "--skip-existing"]):
            r = send(tmp_path, sb, *flags)
            assert r.code == 2, r.stdout + r.stderr
            assert "--skip-existing and --send-anyway contradict each other" in r.stderr
            assert "Traceback" not in r.stderr
        created = sb.created
        gets = sb.stats["gets"]
    assert created == [] and gets == 0
    assert not (tmp_path / "out.csv").exists()


# -- the pre-send check: a row is its key (cases 1 and 10), every unsent row is checked (2) ---

KEYED = MAPPING + """\
data:
  model: Model
key: [campaignId, contact.email, data.model]
"""


def earlier(rid: str, email: str, created: str, **extra: Any) -> dict[str, Any]:
    return {"_id": rid, "campaignId": DEMO_CAMPAIGN_ID, "email": email, "createdAt": created, **extra}


def crowd(n: int) -> list[dict[str, Any]]:
    """``n`` requests of one other contact: a campaign too long to list for a few rows,
    so the check looks each row up instead (per-contact mode)."""
    return [earlier(f"Crowd{i:013d}", "crowd@example.com", "2025-06-01T10:00:00Z") for i in range(n)]


MODES = {"listing": 0, "per-contact": 700}  # 700 others: 9 listing calls, more than 3 per row


@pytest.mark.parametrize("mode", MODES)
def test_case1_the_check_matches_the_rows_key_not_its_contact(tmp_path: Path, mode: str) -> None:
    (tmp_path / "mapping.yaml").write_text(KEYED, encoding="utf-8")
    contacts(tmp_path / "contacts.csv", ["dup@example.com", "dup@example.com"], {"Model": ["Clio", "Zoe"]})
    clio = earlier("PreexistingClio01", "dup@example.com", "2026-01-05T10:00:00Z", data={"model": "Clio"})
    with running_sandbox(strict(preload={"requests": [clio, *crowd(MODES[mode])]})) as sb:
        stopped = send(tmp_path, sb)
        assert stopped.code == 2, stopped.stdout + stopped.stderr
        assert "1 row(s) new to this results file already have a request" in stopped.stderr
        assert "row 2 (dup@example.com: request PreexistingClio01" in stopped.stderr
        assert "row 3" not in stopped.stderr
        assert sb.created == []
        skipped = send(tmp_path, sb, "--skip-existing")
        created = sb.created
    assert skipped.code == 0, skipped.stdout + skipped.stderr
    # Zoe got her own request; Clio's row holds the one she had; no id on two rows.
    assert [(c["email"], c["received"]["data"]) for c in created] == [("dup@example.com", {"model": "Zoe"})]
    clio_row, zoe_row = lines(tmp_path)
    assert clio_row["status"] == "sent" and clio_row["request_id"] == "PreexistingClio01", clio_row
    assert zoe_row["status"] == "sent" and zoe_row["request_id"] == created[0]["_id"], zoe_row


@pytest.mark.parametrize("mode", MODES)
def test_case10_skip_existing_records_the_oldest_of_two_earlier_requests(tmp_path: Path, mode: str) -> None:
    (tmp_path / "mapping.yaml").write_text(MAPPING, encoding="utf-8")
    contacts(tmp_path / "contacts.csv", ["two@example.com", "new@example.com"])
    older_one = earlier("OlderRequest00001", "two@example.com", "2026-01-02T10:00:00Z", status="cancelled")
    newer_one = earlier("NewerRequest00001", "two@example.com", "2026-01-09T10:00:00Z")
    with running_sandbox(strict(preload={"requests": [newer_one, older_one, *crowd(MODES[mode])]})) as sb:
        r = send(tmp_path, sb, "--skip-existing")
        created, gets = sb.created, sb.stats["gets"]
    assert r.code == 0, r.stdout + r.stderr
    assert (gets > 2 + 9) == (mode == "per-contact"), gets  # the preflight's 2, then the check's
    two, new = lines(tmp_path)
    assert two["request_id"] == "OlderRequest00001", two
    assert [c["email"] for c in created] == ["new@example.com"] and new["request_id"] == created[0]["_id"]


def test_case2_a_failed_row_is_checked_again_before_it_is_resent(tmp_path: Path) -> None:
    (tmp_path / "mapping.yaml").write_text(MAPPING, encoding="utf-8")
    contacts(tmp_path / "contacts.csv", ["a@example.com", "b@example.com"])
    # Run 1: a's POST is answered 200 with errors and no request: failed, nothing created.
    with running_sandbox(strict(script=["refused-200", "ok"])) as sb:
        first = send(tmp_path, sb, "-c", "1")
        assert first.code == 1, first.stdout + first.stderr
        assert [line["status"] for line in lines(tmp_path)] == ["failed", "sent"]
        # A colleague then sends a@example.com a request from the Collect app.
        sb.set_faults(preload={"requests": [earlier("FromTheAppA000001", "a@example.com",
                                                    "2026-01-05T10:00:00Z")]})
        for args in ([], ["--only-failed"]):
            again = send(tmp_path, sb, "-c", "1", *args)
            assert again.code == 2, again.stdout + again.stderr
            assert "row 2 (a@example.com: request FromTheAppA000001" in again.stderr
        skipped = send(tmp_path, sb, "--skip-existing")
        created = sb.created
    assert skipped.code == 0, skipped.stdout + skipped.stderr
    assert Counter(c["email"] for c in created) == {"b@example.com": 1}  # a's only POST created nothing
    a, _ = lines(tmp_path)
    assert a["status"] == "sent" and a["request_id"] == "FromTheAppA000001", a
    assert a["attempts"] == "1"  # the one POST of run 1, none since


# -- case 7: a campaign longer than a listing may be read ------------------------------------


def test_case7_a_campaign_of_more_than_20000_requests_is_checked_row_by_row(tmp_path: Path) -> None:
    (tmp_path / "mapping.yaml").write_text(MAPPING, encoding="utf-8")
    emails = [f"new{i}@example.com" for i in range(68)]  # 3 calls each: more than 200 pages
    contacts(tmp_path / "contacts.csv", emails)
    many = crowd(20_001)
    with running_sandbox(SandboxConfig(api_key=KEY, preload={"requests": many})) as sb:
        r = send(tmp_path, sb, "--rate", "none", "-c", "8")
        created, gets = sb.created, sb.stats["gets"]
        sb.set_faults(lookup_fault="500")
        contacts(tmp_path / "contacts.csv", [*emails, "late@example.com"])
        refused = send(tmp_path, sb, "--rate", "none", "--max-attempts", "1")
    assert r.code == 0, r.stdout + r.stderr
    assert Counter(c["email"] for c in created) == dict.fromkeys(emails, 1)
    # The preflight's 2, one listing given up at 200 pages (with the two hidden
    # statuses' first pages), then 3 look-ups a row: the campaign is not listed twice.
    assert gets <= 2 + 202 + 3 * len(emails), gets
    # A check that cannot be made stops the run, and never points to the unchecked way out.
    assert refused.code == 3, refused.stdout + refused.stderr
    assert "nothing was sent" in refused.stderr and "--send-anyway" not in refused.stderr


# -- update: what was sent, and whether it may have been applied --------------------------


def changes_table(results: Path) -> list[tuple[str, str]]:
    """(request id, state) of every change the update journal holds, read only."""
    path = updates_path(results)
    if not path.exists():
        return []
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return []
    try:
        return [(str(r), str(s)) for r, s in db.execute("SELECT request_id, state FROM changes")]
    except sqlite3.Error:
        return []
    finally:
        db.close()


def patches_left(results: Path) -> int:
    """How many PATCHes the update journal says left (each is written right before
    it does): ``sent`` (a journal from before issue 23 knew only ``begun``, written
    right before its PATCH too)."""
    rows = changes_table(results)
    if not rows:
        return 0
    db = sqlite3.connect(f"file:{updates_path(results)}?mode=ro", uri=True, timeout=5)
    try:
        new_schema = any(c[1] == "seq" for c in db.execute("PRAGMA table_info(changes)"))
    finally:
        db.close()
    return sum(state == ("sent" if new_schema else "begun") for _, state in rows)


@contextlib.contextmanager
def noting_proxy(target: str) -> Iterator[str]:
    """A loopback proxy in front of the sandbox (``target``: its /v1 URL) that adds
    a note to every PATCH /request answer's ``errors`` beside its request, as §7's
    ``{errors, request}`` allows. Yields the proxy's /v1 URL."""
    import asyncio

    from aiohttp import ClientSession, web

    async def forward(request: web.Request) -> web.Response:
        async with ClientSession() as session, session.request(
                request.method, target.removesuffix("/v1") + request.path_qs, data=await request.read(),
                headers={k: v for k, v in request.headers.items() if k.lower() in ("authorization",
                                                                                     "content-type")}) as got:
            body = await got.read()
            if request.method == "PATCH" and got.status == 200:
                answer = json.loads(body)
                answer["errors"] = [{"message": "the reopen message is queued (note)"}]
                body = json.dumps(answer).encode()
            return web.Response(status=got.status, body=body, content_type=got.content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.run_until_complete(runner.cleanup())
        loop.close()


def update_args(results: Path, sb: Sandbox, *extra: str) -> list[str]:
    return ["update", str(results), *extra, "--yes", "--api-url", sb.url]


REOPEN = ["--all", "--status", "pending", "--send-reopen-message", "--rate", "none"]


def killed_after_the_patch_left(results: Path, sb: Sandbox, rows: list[int], change: Change) -> None:
    """What a run killed right after these rows' PATCHes left leaves, exactly:
    the journal says each was sent, and the server applied each (the PATCH the
    run sent, sent here over HTTP), whose answer no one read."""
    journal = UpdateJournal(updates_path(results))
    try:
        for i in rows:
            journal.begin(change.key, request_id(i), i + 2)
            journal.sending(change.key, request_id(i), "error")
    finally:
        journal.close()
    for i in rows:
        body = json.dumps({"requestId": request_id(i), **change.fields()}).encode()
        call = urllib.request.Request(f"{sb.url}/request", data=body, method="PATCH", headers={
            "Authorization": "Basic " + base64.b64encode(f":{KEY}".encode()).decode(),
            "Content-Type": "application/json"})
        with urllib.request.urlopen(call, timeout=10) as answer:
            assert answer.status == 200


REOPENED = Change(status="pending", flags=(("sendReopenMessage", True),))


def test_case3_a_change_that_may_have_been_applied_is_not_sent_again_after_the_client_moved(
        tmp_path: Path) -> None:
    records, rows = preload(DEMO_CAMPAIGN_ID, ["error", "error"])
    results = write_results(tmp_path / "r.csv", rows)
    with running_sandbox(strict(preload=records)) as sb:
        killed_after_the_patch_left(results, sb, [0, 1], REOPENED)
        sb.set_request_status(request_id(0), "waiting")  # its client then submits; the other's did not
        again = run_cli(*update_args(results, sb, *REOPEN), cwd=tmp_path)
        after_rerun, first, second = sb.patches, *column(results, "last_update")
        asked = run_cli(*update_args(results, sb, "--rows", "2", "--status", "pending",
                                     "--send-reopen-message", "--again"), cwd=tmp_path)
        patches = sb.patches
    assert again.code == 1, again.stdout + again.stderr
    # One PATCH and one reopen message each: the rerun sent nothing, though row 2's status shows waiting.
    assert [(p["requestId"], p["messages"]) for p in after_rerun] == [
        (request_id(0), ["reopen"]), (request_id(1), ["reopen"])]
    assert "1 changed, 0 failed, 1 not confirmed (1 may have been applied)" in again.stdout, again.stdout
    assert first == ("status -> pending, sendReopenMessage=true: may have been applied (a PATCH left; the "
                     "request shows status waiting now): not sent again, --again sends it"), first
    assert second == "status -> pending, sendReopenMessage=true: done", second
    # --again sends it: the person asked, knowing.
    assert asked.code == 0, asked.stdout + asked.stderr
    assert [p["requestId"] for p in patches] == [request_id(0), request_id(1), request_id(0)]


def test_case4_an_undo_of_an_undo_is_a_new_change(tmp_path: Path) -> None:
    records, rows = preload(DEMO_CAMPAIGN_ID, ["pending", "pending"])
    results = write_results(tmp_path / "r.csv", rows)
    with running_sandbox(strict(preload=records)) as sb:
        codes = [run_cli(*update_args(results, sb, "--all", "--status", status), cwd=tmp_path)
                 for status in ("canceled", "pending", "canceled")]
        patches = sb.patches
    statuses = [p["after"] for p in patches]
    for r in codes:
        assert r.code == 0, r.stdout + r.stderr
    assert "2 requests will change: status -> canceled" in codes[2].stdout, codes[2].stdout
    assert Counter(p["requestId"] for p in patches) == {request_id(0): 3, request_id(1): 3}
    assert statuses[-2:] == ["cancelled", "cancelled"]
    assert column(results, "request_status") == ["cancelled", "cancelled"]


def test_case5_status_update_and_reconcile_refuse_a_rehearsals_results(workdir: Path) -> None:
    write_contacts(workdir / "contacts.csv", people(3))
    rehearsal = run_cli("send", "contacts.csv", "-m", "mapping.yaml", "--sandbox", "--no-progress",
                        cwd=workdir, key=None)
    assert rehearsal.code == 0, rehearsal.stdout + rehearsal.stderr
    results = workdir / "contacts-sandbox-results.csv"
    assert [line["status"] for line in read_results(results)[1]] == ["sent"] * 3
    before = results.read_bytes()
    with running_sandbox(SandboxConfig(api_key=KEY, seed=1)) as sb:
        answers = [run_cli(*args, "--api-url", sb.url, cwd=workdir) for args in (
            ["update", str(results), "--all", "--status", "canceled", "--yes"],
            ["status", str(results)],
            ["reconcile", str(results)],
        )]
        patches, gets = sb.patches, sb.stats["gets"]
    for r in answers:
        assert r.code == 2, r.stdout + r.stderr
        assert "holds a sandbox rehearsal, not real sends" in r.stderr and "Traceback" not in r.stderr
    assert patches == [] and gets == 0
    assert results.read_bytes() == before


def test_case5_update_never_patches_a_request_of_another_contact(tmp_path: Path) -> None:
    records, rows = preload(DEMO_CAMPAIGN_ID, ["pending", "pending"])
    # Row 3 names intruder@example.com, but its request id is client1's.
    rows[1] = (f"{DEMO_CAMPAIGN_ID}|intruder@example.com", "sent", request_id(1))
    results = write_results(tmp_path / "r.csv", rows)
    with running_sandbox(strict(preload=records)) as sb:
        r = run_cli(*update_args(results, sb, "--all", "--status", "canceled"), cwd=tmp_path)
        patches = sb.patches
    assert r.code == 1, r.stdout + r.stderr
    assert [p["requestId"] for p in patches] == [request_id(0)]
    assert column(results, "last_update")[1] == (
        f"status -> canceled: the server says request {request_id(1)} is client1@example.com's, "
        "not this row's (intruder@example.com): not changed")


def test_case8_a_run_stopped_by_a_quota_does_not_keep_an_earlier_runs_done(tmp_path: Path) -> None:
    records, rows = preload(DEMO_CAMPAIGN_ID, ["pending", "pending"])
    results = write_results(tmp_path / "r.csv", rows)
    cancel = ["--all", "--status", "canceled"]
    with running_sandbox(strict(preload=records)) as sb:
        assert run_cli(*update_args(results, sb, *cancel), cwd=tmp_path).code == 0
        for i in range(2):
            sb.set_request_status(request_id(i), "pending")  # reopened in the app since
        sb.set_faults(rate_limit=0.005, burst=1)  # one call, then a 429 asking for 200 s: a quota
        stopped = run_cli(*update_args(results, sb, *cancel, "--again"), cwd=tmp_path)
        patches = sb.patches
    assert stopped.code == 3, stopped.stdout + stopped.stderr
    assert len(patches) == 2  # run 1's
    # Neither row says "done": the server does not show the change, and this run did not make it.
    assert column(results, "last_update") == [
        "status -> canceled: not confirmed (stopped before its answer); rerun the same command"] * 2


def test_case8_a_note_with_the_request_is_kept(tmp_path: Path) -> None:
    records, rows = preload(DEMO_CAMPAIGN_ID, ["pending"])
    results = write_results(tmp_path / "r.csv", rows)
    with running_sandbox(strict(preload=records)) as sb, noting_proxy(sb.url) as url:
        r = run_cli("update", str(results), "--all", "--status", "canceled", "--yes", "--api-url", url,
                    cwd=tmp_path)
        patches = sb.patches
    assert r.code == 0, r.stdout + r.stderr
    assert len(patches) == 1
    assert column(results, "last_update") == [
        "status -> canceled: done; the server also said: the reopen message is queued (note)"]


def test_case8_the_summary_counts_patches_cut_by_a_second_ctrl_c(tmp_path: Path) -> None:
    records, rows = preload(DEMO_CAMPAIGN_ID, ["pending"] * 12)
    results = write_results(tmp_path / "r.csv", rows)
    with running_sandbox(strict(preload=records, latency=0.5)) as sb:
        run = start(tmp_path, update_args(results, sb, "--all", "--status", "archived", "--rate", "none",
                                          "-c", "4"), "stopped")
        wait_for("four PATCHes applied", lambda: len(sb.patches) >= 4, timeout=30, run=run)
        wait_for("four more on the wire", lambda: sum(s == "sent" for _, s in changes_table(results)) >= 4,
                 timeout=10, run=run)
        run.signal(signal.SIGINT)
        time.sleep(0.1)
        run.signal(signal.SIGINT)  # the second: at once, PATCHes on the wire cut
        code = run.wait(timeout=20)
        time.sleep(1.0)  # the server finishes what it received
        applied = len(sb.patches)
    assert code == 130, run.stdout + run.stderr
    summary = next(line for line in run.stdout.splitlines() if line.startswith("update: "))
    changed, not_confirmed = int(summary.split()[1]), int(summary.split(", ")[2].split()[0])
    last = column(results, "last_update")
    # The summary counts what the file records: the PATCHes cut by the second
    # Ctrl-C are "not confirmed" in both, and said to have maybe been applied.
    assert sum(v == "status -> archived: done" for v in last) == changed
    assert sum("not confirmed" in v or "may have been applied" in v for v in last) == not_confirmed >= 1
    assert f"({not_confirmed} may have been applied)" in summary, summary
    assert changed <= applied <= changed + not_confirmed, (summary, applied)


def test_case9_after_a_corrupt_journal_is_moved_away_each_request_is_read_back(tmp_path: Path) -> None:
    records, rows = preload(DEMO_CAMPAIGN_ID, ["error", "error", "error"])
    results = write_results(tmp_path / "r.csv", rows)
    with running_sandbox(strict(preload=records)) as sb:
        assert run_cli(*update_args(results, sb, *REOPEN), cwd=tmp_path).code == 0
        sb.set_request_status(request_id(2), "waiting")  # a client submitted since
        journal = updates_path(results)
        for extra in ("-wal", "-shm"):
            journal.with_name(journal.name + extra).unlink(missing_ok=True)
        journal.write_bytes(b"not a database at all" * 100)
        corrupt = run_cli(*update_args(results, sb, *REOPEN), cwd=tmp_path)
        journal.rename(journal.with_name("r.csv.updates.corrupt"))  # as the hint says
        again = run_cli(*update_args(results, sb, *REOPEN), cwd=tmp_path)
        patches, gets = sb.patches, sb.stats["gets"]
    assert corrupt.code == 2 and "move it away" in corrupt.stderr, corrupt.stderr
    assert again.code == 1, again.stdout + again.stderr
    assert Counter(p["requestId"] for p in patches) == {request_id(i): 1 for i in range(3)}
    assert gets >= 3  # each request read back before any PATCH
    last = column(results, "last_update")
    assert last[:2] == ["status -> pending, sendReopenMessage=true: done"] * 2
    assert "may have been applied" in last[2]


# -- the kill-at-random-moments property, for update ----------------------------------------


@pytest.mark.slow
def test_update_killed_at_random_moments_while_statuses_move_never_makes_a_change_twice(
        tmp_path: Path) -> None:
    rng = random.Random(23)
    n = 60
    records, rows = preload(DEMO_CAMPAIGN_ID, ["error", "waiting", "completed"] * (n // 3))
    results = write_results(tmp_path / "r.csv", rows)
    with running_sandbox(strict(preload=records, latency=0.05)) as sb:
        args = update_args(results, sb, *REOPEN, "-c", "4")
        kills = cycles = 0
        while kills < 5 and cycles < 12:
            cycles += 1
            run = start(tmp_path, args, f"update-{cycles}")
            try:
                code = run.wait(timeout=rng.uniform(0.05, 0.5))
            except subprocess.TimeoutExpired:
                run.kill()
                kills += 1
            else:
                assert code in (0, 1), f"exit {code}\n{run.stdout}\n{run.stderr}"
            # Between runs the server moves on: clients submit, the team validates.
            for i in rng.sample(range(n), 6):
                sb.set_request_status(request_id(i), rng.choice(["waiting", "completed"]))
        assert kills >= 3, f"only {kills} kills in {cycles} runs"
        finals = [run_cli(*args, cwd=tmp_path) for _ in range(2)]
        patches = sb.patches
    for final in finals:
        assert final.code in (0, 1), final.stdout + final.stderr
        assert "Traceback" not in final.stderr
    per_request = Counter(p["requestId"] for p in patches)
    assert {rid: k for rid, k in per_request.items() if k != 1} == {}, "a change made twice"
    reopened = Counter(p["requestId"] for p in patches if "reopen" in p["messages"])
    assert set(reopened.values()) <= {1}
    # Honest records: done only where the server received the change; every
    # request it received says done or "may have been applied", never more.
    for i, said in enumerate(column(results, "last_update")):
        outcome = said.removeprefix("status -> pending, sendReopenMessage=true: ")
        if outcome == "done":
            assert per_request[request_id(i)] == 1, (i, said)
        elif per_request[request_id(i)]:
            assert outcome.startswith("may have been applied"), (i, said)
        else:
            assert outcome.startswith("may have been applied"), (i, said)  # sent, cut before the server


# -- a kill while a POST is on the wire leaves "inflight, attempts 0" -----------------------


@pytest.mark.parametrize("flag", ["", "--send-anyway"])
def test_inflight_with_no_attempt_counted_may_still_have_created_its_request(
        tmp_path: Path, flag: str) -> None:
    """The journal counts a row's attempts with its outcome, so a run killed
    while a POST is on the wire leaves the row ``inflight`` with attempts 0,
    exactly as a row queued but never POSTed. Such a row is settled by look-up
    as this run's own: sent with the request its POST created, never stopped
    for as "already had a request", never POSTed again (not even with
    --send-anyway: the request is not a colleague's)."""
    (tmp_path / "mapping.yaml").write_text(MAPPING, encoding="utf-8")
    contacts(tmp_path / "contacts.csv", ["a@example.com"])
    with running_sandbox(strict(script=["slow"], slow_delay=60.0)) as sb:
        args = ["send", "contacts.csv", "-m", "mapping.yaml", "-o", "out.csv", "--api-url", sb.url,
                "--no-progress", "-c", "1", "--rate", "none"]
        run = start(tmp_path, args, "killed")
        wait_for("the POST to be created", lambda: len(sb.created) == 1, 30, run)
        run.proc.kill()
        run.proc.wait(timeout=15)
        db = sqlite3.connect(tmp_path / "out.csv.journal")
        try:
            state = db.execute("SELECT status, attempts FROM rows").fetchall()
        finally:
            db.close()
        assert state == [("inflight", 0)]  # the state a never-sent row has too
        again = send(tmp_path, sb, *([flag] if flag else []))
        created = sb.created
    assert again.code == 0, again.stdout + again.stderr
    assert len(created) == 1, created  # one request, made by the killed run's POST
    (a,) = lines(tmp_path)
    assert a["status"] == "sent" and a["request_id"] == created[0]["_id"], a


# -- round three, follow-ups: the row's contact, and a change that never went out -------


def test_update_checks_the_email_of_a_key_with_a_field_after_it_and_refuses_an_unknown_contact(
        tmp_path: Path) -> None:
    # No send journal beside the file, key [campaignId, contact.email, data.model]: the
    # contact is the key's email, not its last part ("M1"), and a key with no email tells none.
    records, _ = preload(DEMO_CAMPAIGN_ID, ["pending", "pending", "pending"])
    results = write_results(tmp_path / "copy.csv", [
        (f"{DEMO_CAMPAIGN_ID}|intruder@example.com|M1", "sent", request_id(0)),
        (f"{DEMO_CAMPAIGN_ID}|M2|Zoe", "sent", request_id(1)),
        (f"{DEMO_CAMPAIGN_ID}|client2@example.com|M3", "sent", request_id(2)),
    ])
    with running_sandbox(strict(preload=records)) as sb:
        r = run_cli(*update_args(results, sb, "--all", "--status", "canceled"), cwd=tmp_path)
        patches = sb.patches
    assert r.code == 1, r.stdout + r.stderr
    assert "intruder@example.com" in r.stdout and "M1 " not in r.stdout, r.stdout
    assert [p["requestId"] for p in patches] == [request_id(2)]
    first, second, third = column(results, "last_update")
    assert first == (f"status -> canceled: the server says request {request_id(0)} is client0@example.com's, "
                     "not this row's (intruder@example.com): not changed"), first
    assert second.startswith("status -> canceled: cannot tell this row's contact from the results"), second
    assert third == "status -> canceled: done", third


def test_status_and_update_refuse_a_copy_of_a_rehearsals_results_without_its_journal(workdir: Path) -> None:
    write_contacts(workdir / "contacts.csv", people(2))
    rehearsal = run_cli("send", "contacts.csv", "-m", "mapping.yaml", "--sandbox", "--no-progress",
                        cwd=workdir, key=None)
    assert rehearsal.code == 0, rehearsal.stdout + rehearsal.stderr
    copy = workdir / "copy-of-contacts-sandbox-results.csv"
    copy.write_bytes((workdir / "contacts-sandbox-results.csv").read_bytes())
    with running_sandbox(SandboxConfig(api_key=KEY, seed=1)) as sb:
        answers = [run_cli(*args, "--api-url", sb.url, cwd=workdir) for args in (
            ["update", str(copy), "--all", "--status", "canceled", "--yes"], ["status", str(copy)])]
        patches, gets = sb.patches, sb.stats["gets"]
    for r in answers:
        assert r.code == 2, r.stdout + r.stderr
        assert "holds a sandbox rehearsal, not real sends" in r.stderr
    assert patches == [] and gets == 0


def test_a_change_stopped_before_its_patch_left_is_sent_on_the_rerun(tmp_path: Path) -> None:
    records, rows = preload(DEMO_CAMPAIGN_ID, ["pending"])
    results = write_results(tmp_path / "r.csv", rows)
    with running_sandbox(strict(preload=records)) as sb:
        assert run_cli(*update_args(results, sb, "--all", "--status", "waiting"), cwd=tmp_path).code == 0
        sb.set_faults(rate_limit=0.001, retry_after_format="none")
        team = urllib.request.Request(f"{sb.url}/team", headers={
            "Authorization": "Basic " + base64.b64encode(f":{KEY}".encode()).decode()})
        with urllib.request.urlopen(team, timeout=10):
            pass  # the one call the rate allows: the next read of the request is a 429
        stopped = run_cli(*update_args(results, sb, "--all", "--status", "pending", "--patience", "2"),
                          cwd=tmp_path)
        journaled = changes_table(results)
        sb.set_faults(rate_limit=None)
        rerun = run_cli(*update_args(results, sb, "--all", "--status", "pending"), cwd=tmp_path)
        patches = sb.patches
    assert stopped.code == 3, stopped.stdout + stopped.stderr
    assert sorted(journaled) == [(request_id(0), "begun"), (request_id(0), "done")]  # pending: no PATCH left
    assert rerun.code == 0, rerun.stdout + rerun.stderr
    assert [p["after"] for p in patches] == ["waiting", "pending"]
    assert column(results, "last_update") == ["status -> pending: done"]
