"""Exactly once against the Collect API as documented, not as our sandbox used
to behave (issue 10). Each test runs the real CLI against the sandbox with one
documented-but-unfriendly behaviour switched on, and asserts what the server
holds: how many requests it created, for whom, and what each row says."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import KEY, posix_signals, read_results, run_cli

from bulksend.sandbox import DEMO_CAMPAIGN_ID, Sandbox, SandboxConfig, running_sandbox

EMAILS = ["a@example.com", "b@example.com", "c@example.com"]
MAPPING = f"""\
campaignId: {{value: {DEMO_CAMPAIGN_ID}}}
contact:
  email: Email
  firstName: First Name
"""


def contacts(path: Path, emails: list[str] = EMAILS, extra: dict[str, list[str]] | None = None) -> Path:
    columns = ["Email", "First Name", *(extra or {})]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for i, email in enumerate(emails):
            writer.writerow([email, f"Name{i}", *((extra or {})[c][i] for c in extra or {})])
    return path


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "mapping.yaml").write_text(MAPPING, encoding="utf-8")
    contacts(tmp_path / "contacts.csv")
    return tmp_path


def send(work: Path, sandbox: Sandbox, *args: str, timeout: float = 120) -> Any:
    return run_cli("send", "contacts.csv", "-m", "mapping.yaml", "-o", "out.csv", "--api-url", sandbox.url,
                   *args, cwd=work, timeout=timeout)


def lines(work: Path) -> dict[str, dict[str, str]]:
    """The results file's lines by email."""
    _, rows = read_results(work / "out.csv")
    return {r["Email"]: r for r in rows}


def per_email(sandbox: Sandbox) -> Counter[str]:
    return Counter(c["email"].lower() for c in sandbox.created)


def config(**faults: Any) -> SandboxConfig:
    return SandboxConfig(api_key=KEY, seed=1, **faults)


def assert_each_sent_once(work: Path, sandbox: Sandbox, emails: list[str] = EMAILS) -> None:
    created = sandbox.created
    assert per_email(sandbox) == Counter(e.lower() for e in emails), created
    server = {c["email"].lower(): c["_id"] for c in created}
    for email, line in lines(work).items():
        assert line["status"] == "sent", line
        assert line["request_id"] == server[email.lower()], line


# 1. A 5xx other than 503 can come after the request was created ----------------

@pytest.mark.parametrize("fate", ["created-500", "created-502", "created-504"])
def test_a_5xx_after_creation_is_looked_up_not_resent(work: Path, fate: str) -> None:
    with running_sandbox(config(script=[fate] * 3)) as sandbox:
        r = send(work, sandbox)
        assert r.code == 0, r.stderr
        assert_each_sent_once(work, sandbox)
        assert "checking before any resend" in r.stderr


def test_a_503_is_retried_as_not_created(work: Path) -> None:
    with running_sandbox(config(script=["503"] * 3)) as sandbox:
        r = send(work, sandbox)
        assert r.code == 0, r.stderr
        assert_each_sent_once(work, sandbox)
        assert sandbox.stats["post_request"]["503"] == 3


# 2. A 200 is not proof of creation ------------------------------------------------

@pytest.mark.parametrize("fate", ["empty-200", "html-200"])
def test_a_2xx_without_a_request_is_looked_up(work: Path, fate: str) -> None:
    with running_sandbox(config(script=[fate] * 3)) as sandbox:
        r = send(work, sandbox)
        assert r.code == 0, r.stderr
        assert_each_sent_once(work, sandbox)


def test_a_2xx_with_errors_and_no_request_is_failed_with_the_servers_text(work: Path) -> None:
    with running_sandbox(config(script=["refused-200"] * 3)) as sandbox:
        r = send(work, sandbox)
        assert r.code == 1, r.stderr
        assert sandbox.created == []
        for line in lines(work).values():
            assert line["status"] == "failed" and line["request_id"] == "", line
            assert "sandbox fault" in line["error"], line
        # The next run retries them, and they go out once.
        assert send(work, sandbox).code == 0
        assert_each_sent_once(work, sandbox)


def test_a_2xx_with_a_request_and_errors_is_sent_and_the_errors_are_kept(work: Path) -> None:
    with running_sandbox(config(script=["warned-200"] * 3)) as sandbox:
        r = send(work, sandbox)
        assert r.code == 0, r.stderr
        assert_each_sent_once(work, sandbox)
        for line in lines(work).values():
            assert line["error"].startswith("sent; the server also said:"), line
        report = run_cli("report", "out.csv", cwd=work)
        assert "sent; the server also said" in report.stdout


# 3. Look-ups that must read every page, every status, whatever the order -----------

def test_a_contact_with_more_than_50_requests_is_found_past_the_embedded_cap(work: Path) -> None:
    with running_sandbox(config()) as probe:
        campaigns = [c["_id"] for c in _get(probe, "/v1/campaigns")]
    other = next(c for c in campaigns if c != DEMO_CAMPAIGN_ID)  # the 60 earlier requests are there
    contact_id = "PreloadedContact1"
    preload = {
        "contacts": [{"_id": contact_id, "email": "busy@example.com", "firstName": "Busy"}],
        "requests": [{"campaignId": other, "contactId": contact_id, "status": "completed",
                      "createdAt": f"2025-01-{1 + i % 28:02d}T10:00:00Z"} for i in range(60)],
    }
    (work / "mapping.yaml").write_text(f"campaignId: {{value: {DEMO_CAMPAIGN_ID}}}\ncontact: Contact\n")
    (work / "contacts.csv").write_text(f"Contact\n{contact_id}\n")
    with running_sandbox(config(preload=preload, embedded_order="oldest", script=["ambiguous"])) as sandbox:
        r = send(work, sandbox)
        assert r.code == 0, r.stderr
        created = sandbox.created
        assert len(created) == 1, created
        _, rows = read_results(work / "out.csv")
        assert rows[0]["status"] == "sent" and rows[0]["request_id"] == created[0]["_id"]


def test_a_request_cancelled_since_and_past_the_first_page_still_counts_as_created(work: Path) -> None:
    # Run 1: a's answer is lost and the look-up cannot be made: a stays unknown.
    with running_sandbox(config(script=["ambiguous"], lookup_fault="500")) as sandbox:
        r = send(work, sandbox, "-c", "1", "--send-anyway", "--max-attempts", "2")
        assert r.code == 1, r.stderr
        assert lines(work)["a@example.com"]["status"] == "unknown"
        ours = next(c["_id"] for c in sandbox.created if c["email"] == "a@example.com")
        # Since then: 150 newer requests whose contacts' emails contain
        # "a@example.com" (search is a substring match), and ours was cancelled.
        sandbox.set_faults(lookup_fault=None)
        for i in range(150):
            _post(sandbox, {"campaignId": DEMO_CAMPAIGN_ID, "contact": {"email": f"x{i}a@example.com"}})
        sandbox.set_request_status(ours, "cancelled")
        r = send(work, sandbox)
        assert r.code == 0, r.stderr
        assert per_email(sandbox)["a@example.com"] == 1
        assert lines(work)["a@example.com"]["request_id"] == ours


# 4. The email as the sheet writes it ---------------------------------------------------

def test_the_email_is_sent_as_written_and_no_second_contact_is_made(work: Path) -> None:
    contacts(work / "contacts.csv", ["Grace.Hopper@Example.com"])
    with running_sandbox(config(case_sensitive_emails=True)) as sandbox:
        before = len(_get(sandbox, "/v1/contacts", limit="100"))
        r = send(work, sandbox, "--send-anyway")
        assert r.code == 0, r.stderr
        assert [c["email"] for c in sandbox.created] == ["Grace.Hopper@Example.com"]
        assert len(_get(sandbox, "/v1/contacts", limit="100")) == before
        line = lines(work)["Grace.Hopper@Example.com"]
        assert line["key"] == f"{DEMO_CAMPAIGN_ID}|grace.hopper@example.com"


# 5. A quota-sized Retry-After -------------------------------------------------------------

def test_a_retry_after_longer_than_max_pause_stops_the_run_at_once(work: Path) -> None:
    with running_sandbox(config(quota_after=0, quota_retry_after=3600)) as sandbox:
        started = time.monotonic()
        r = send(work, sandbox, "-c", "1", "--summary-json", "summary.json")
        assert time.monotonic() - started < 30
        assert r.code == 3, r.stderr
        assert "--max-pause" in r.stdout + r.stderr and "3,600s" in r.stdout + r.stderr
        assert sandbox.created == []
        by_email = lines(work)
        assert len(by_email) == 3
        for line in by_email.values():
            assert line["status"] != "unknown", line  # a 429 created nothing; unsent rows stay as they were
        assert sum(1 for line in by_email.values() if line["attempts"] != "0") == 1
        assert json.loads((work / "summary.json").read_text())["exit_code"] == 3


def test_a_quota_sized_retry_after_on_a_look_up_stops_the_run_at_once(work: Path) -> None:
    # The rows are left unknown (created, then the answers lost; the look-ups
    # answer 500), so the next run's first calls after the preflight are GETs.
    with running_sandbox(config(script=["ambiguous"] * 3, lookup_fault="500")) as sandbox:
        r = send(work, sandbox, "--send-anyway", "--max-attempts", "2")
        assert {line["status"] for line in lines(work).values()} == {"unknown"}, r.stderr
        # A limit of one call an hour: the preflight's two calls use the burst,
        # the first look-up is refused with a Retry-After of about an hour.
        sandbox.set_faults(lookup_fault=None, rate_limit=1 / 3600, burst=2)
        gets_before = sum(sandbox.stats["get"].values())
        started = time.monotonic()
        r = send(work, sandbox, "--summary-json", "summary.json", timeout=60)
        assert time.monotonic() - started < 30, "waited the Retry-After out"
        assert r.code == 3, r.stderr
        assert "--max-pause" in r.stdout + r.stderr, r.stderr
        assert len(sandbox.created) == 3  # nothing resent
        assert {line["status"] for line in lines(work).values()} == {"unknown"}
        assert sum(sandbox.stats["get"].values()) - gets_before <= 3  # the preflight's, and one refused
        assert json.loads((work / "summary.json").read_text())["exit_code"] == 3


@posix_signals
def test_sigterm_while_waiting_out_a_quota_leaves_unsent_rows_as_they_were(work: Path) -> None:
    with running_sandbox(config(quota_after=0, quota_retry_after=3600)) as sandbox:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bulksend", "send", "contacts.csv", "-m", "mapping.yaml", "-o", "out.csv",
             "--api-url", sandbox.url, "--max-pause", "7200", "-c", "1"],
            cwd=work, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while sandbox.stats["post_request"]["quota-429"] < 1:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
            time.sleep(0.3)
            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
            # Nothing is on the wire while every worker waits out the pause:
            # nothing to wait for (it waited the whole 10 s grace).
            assert time.monotonic() - signalled < 5, err
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 130, err
        for line in lines(work).values():
            assert line["status"] != "unknown", line
            if line["attempts"] == "0":
                assert line["status"] not in ("failed", "unknown"), line


# 6. Requests that exist outside the journal ------------------------------------------------

def _preloaded_b(status: str = "cancelled") -> dict[str, Any]:
    return {"requests": [{"_id": "PreexistingReqB01", "campaignId": DEMO_CAMPAIGN_ID,
                          "email": "b@example.com", "status": status,
                          "createdAt": "2026-01-05T10:00:00Z"}]}


def test_a_contact_that_already_has_a_request_stops_the_run_before_sending(work: Path) -> None:
    with running_sandbox(config(preload=_preloaded_b())) as sandbox:
        r = send(work, sandbox)
        assert r.code == 2, r.stderr
        assert "1 row(s) new to this results file already have a request" in r.stderr
        assert "row 3 (b@example.com: request PreexistingReqB01, cancelled)" in r.stderr
        assert "--skip-existing" in r.stderr and "Traceback" not in r.stderr
        assert sandbox.created == []


def test_skip_existing_records_the_existing_request_and_sends_the_rest(work: Path) -> None:
    with running_sandbox(config(preload=_preloaded_b("archived"))) as sandbox:
        r = send(work, sandbox, "--skip-existing")
        assert r.code == 0, r.stderr
        assert per_email(sandbox) == Counter({"a@example.com": 1, "c@example.com": 1})
        b = lines(work)["b@example.com"]
        assert b["status"] == "sent" and b["request_id"] == "PreexistingReqB01", b
        assert "--skip-existing" in b["error"] and b["attempts"] == "0"
        # A nightly rerun over a journal that knows every row makes no call
        # beyond the preflight's two (GET /team, GET /campaigns/{id}).
        gets = sandbox.stats["gets"]
        r = send(work, sandbox, "--skip-existing")
        assert r.code == 0, r.stderr
        assert sandbox.stats["gets"] == gets + 2
        assert len(sandbox.created) == 2


def test_send_anyway_sends_a_new_request(work: Path) -> None:
    with running_sandbox(config(preload=_preloaded_b("pending"))) as sandbox:
        r = send(work, sandbox, "--send-anyway")
        assert r.code == 0, r.stderr
        assert_each_sent_once(work, sandbox)
        assert lines(work)["b@example.com"]["request_id"] != "PreexistingReqB01"


# 7. Items named by their itemId -----------------------------------------------------------

def test_items_by_item_id_are_accepted_and_sent_as_written(work: Path) -> None:
    with running_sandbox(config()) as sandbox:
        campaign = _get(sandbox, f"/v1/campaigns/{DEMO_CAMPAIGN_ID}")
        element = next(e for e in campaign["documents"] if e.get("itemId") and e["itemId"] != e["id"])
        (work / "mapping.yaml").write_text(MAPPING + "items: {column: Items, split: ';'}\n")
        contacts(work / "contacts.csv", EMAILS[:1], {"Items": [element["itemId"]]})
        r = send(work, sandbox)
        assert r.code == 0, r.stderr
        assert sandbox.created[0]["received"]["items"] == [element["itemId"]]


# 8. Redirects are never followed ---------------------------------------------------------

@pytest.mark.parametrize("fate", ["redirect-302", "redirect-307"])
def test_a_redirect_is_a_failure_naming_its_location_and_is_never_followed(work: Path, fate: str) -> None:
    with running_sandbox(config()) as elsewhere, \
            running_sandbox(config(script=[fate], redirect_to=elsewhere.url)) as sandbox:
        r = send(work, sandbox, "-c", "1")
        assert r.code == 1, r.stderr
        redirected = [line for line in lines(work).values() if line["status"] == "failed"]
        assert len(redirected) == 1 and elsewhere.url in redirected[0]["error"], redirected
        assert "redirected to" in redirected[0]["error"]
        assert sum(elsewhere.stats["post_request"].values()) == elsewhere.stats["gets"] == 0
        assert elsewhere.created == [] and len(sandbox.created) == 2


# 9. A look-up that is not understood never means "not created" ------------------------

@pytest.mark.parametrize("fault", ["html", "object", "404", "500"])
def test_a_look_up_not_understood_leaves_the_row_unknown(work: Path, fault: str) -> None:
    with running_sandbox(config(lookup_fault=fault)) as sandbox:
        # The pre-send check is a look-up too: not understood, nothing is sent.
        r = send(work, sandbox)
        assert r.code == 3, r.stderr
        assert "could not check the campaign's existing requests" in r.stderr and sandbox.created == []
        sandbox.set_faults(script=["ambiguous"] * 3)
        # --max-attempts 2: each look-up is tried twice, not five times, with backoff.
        r = send(work, sandbox, "--send-anyway", "--max-attempts", "2")
        assert r.code == 1, r.stderr
        assert len(sandbox.created) == 3
        assert {line["status"] for line in lines(work).values()} == {"unknown"}
        r = send(work, sandbox, "--max-attempts", "2")  # still not understood: still nothing resent
        assert r.code == 1, r.stderr
        assert len(sandbox.created) == 3
        sandbox.set_faults(lookup_fault=None)
        r = send(work, sandbox)
        assert r.code == 0, r.stderr
        assert_each_sent_once(work, sandbox)


def test_a_server_clock_ten_minutes_behind_does_not_hide_the_request(work: Path) -> None:
    with running_sandbox(config(script=["ambiguous"] * 3, clock_skew=-600)) as sandbox:
        r = send(work, sandbox)
        assert r.code == 0, r.stderr
        assert_each_sent_once(work, sandbox)


# 10. Custom keys: a look-up matches every key field the server returns ------------------

def test_a_look_up_matches_the_keys_due_date_and_never_gives_one_id_to_two_rows(work: Path) -> None:
    (work / "mapping.yaml").write_text(MAPPING + "dueDate: {column: Due, type: datetime}\n"
                                       "key: [campaignId, contact.email, dueDate]\n")
    contacts(work / "contacts.csv", ["a@example.com", "a@example.com"],
             {"Due": ["2030-01-10T12:00:00+00:00", "2030-02-10T12:00:00+00:00"]})
    with running_sandbox(config(script=["ok", "dropped"])) as sandbox:
        r = send(work, sandbox, "-c", "1", "--send-anyway")
        assert r.code == 0, r.stderr
        created = sandbox.created
        assert len(created) == 2, created
        _, rows = read_results(work / "out.csv")
        assert len({row["request_id"] for row in rows}) == 2, rows


def test_a_key_field_the_server_does_not_return_leaves_the_row_unknown_saying_why(work: Path) -> None:
    (work / "mapping.yaml").write_text(MAPPING + "sendMessage: {column: Notify, type: bool}\n"
                                       "key: [campaignId, contact.email, sendMessage]\n")
    contacts(work / "contacts.csv", ["a@example.com", "a@example.com"], {"Notify": ["true", "false"]})
    with running_sandbox(config(script=["ok", "ambiguous"])) as sandbox:
        r = send(work, sandbox, "-c", "1", "--send-anyway")
        assert r.code == 1, r.stderr
        _, rows = read_results(work / "out.csv")
        assert rows[1]["status"] == "unknown", rows
        assert "sendMessage" in rows[1]["error"] and "do not return" in rows[1]["error"]
        assert len(sandbox.created) == 2


# 11. A 401 in the middle of a run ---------------------------------------------------------

def test_a_401_mid_run_gives_every_row_its_line_and_count(work: Path) -> None:
    with running_sandbox(config(script=["ok", "401"])) as sandbox:
        r = send(work, sandbox, "-c", "1", "--summary-json", "summary.json")
        assert r.code == 3, r.stderr
        by_email = lines(work)
        assert set(by_email) == set(EMAILS)
        assert by_email["a@example.com"]["status"] == "sent"
        assert by_email["b@example.com"]["status"] == "failed" and "401" in by_email["b@example.com"]["error"]
        c = by_email["c@example.com"]
        assert c["status"] != "unknown" and c["attempts"] == "0", c
        counts = json.loads((work / "summary.json").read_text())["counts"]
        assert sum(counts.values()) == 3, counts


# 12. --batch says how many rows it batched -------------------------------------------------

def test_batch_says_how_many_rows_went_alone_and_why(work: Path) -> None:
    emails = [f"p{i}@example.com" for i in range(6)]
    (work / "mapping.yaml").write_text(MAPPING + "dueDate: {column: Due, type: datetime}\n")
    contacts(work / "contacts.csv", emails,
             {"Due": ["2030-01-10T12:00:00+00:00"] * 3 + [f"2030-02-1{i}T12:00:00+00:00" for i in range(3)]})
    with running_sandbox(config()) as sandbox:
        r = send(work, sandbox, "--batch")
        assert r.code == 0, r.stderr
        assert "--batch: 3 rows in 1 POST /requests call(s), 3 alone" in r.stdout, r.stdout
        assert "dueDate" in r.stdout


# helpers ------------------------------------------------------------------------------------

def _env() -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if k != "COLLECT_API_KEY"}
    env["COLLECT_API_KEY"] = KEY
    return env


def _auth() -> dict[str, str]:
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f":{KEY}".encode()).decode()}


def _get(sandbox: Sandbox, path: str, **params: str) -> Any:
    import urllib.parse
    import urllib.request

    base = sandbox.url.removesuffix("/v1")
    url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(urllib.request.Request(url, headers=_auth()), timeout=10) as resp:
        return json.loads(resp.read())


def _post(sandbox: Sandbox, body: dict[str, Any]) -> Any:
    import urllib.request

    request = urllib.request.Request(sandbox.url + "/request", data=json.dumps(body).encode(),
                                     headers={**_auth(), "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())
