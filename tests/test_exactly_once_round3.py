"""Exactly once, round three (issue 23): a row is its key, every unsent row is
checked, and ``update`` never repeats a change.

Each test drives the real CLI against the real sandbox on 127.0.0.1 (the strict
profile where it matters) and asserts what the server received: the requests it
created (``Sandbox.created``) and the PATCHes it applied (``Sandbox.patches``).
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import KEY, read_results, run_cli

from bulksend.sandbox import DEMO_CAMPAIGN_ID, Sandbox, SandboxConfig, running_sandbox

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
    a, b = lines(tmp_path)
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
        created = sb.created
        sb.set_faults(lookup_fault="500")
        contacts(tmp_path / "contacts.csv", [*emails, "late@example.com"])
        refused = send(tmp_path, sb, "--rate", "none", "--max-attempts", "1")
    assert r.code == 0, r.stdout + r.stderr
    assert Counter(c["email"] for c in created) == dict.fromkeys(emails, 1)
    # A check that cannot be made stops the run, and never points to the unchecked way out.
    assert refused.code == 3, refused.stdout + refused.stderr
    assert "nothing was sent" in refused.stderr and "--send-anyway" not in refused.stderr
