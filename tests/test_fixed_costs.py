"""The calls before the first POST (issue 18): the preflight's GETs asked at
once, a first run's campaign listed once, and each of them still stopping the
run before anything is sent. The real CLI against the sandbox; what the server
received is asserted."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from conftest import KEY, read_results, run_cli

from bulksend.sandbox import DEMO_CAMPAIGN_ID, Sandbox, SandboxConfig, running_sandbox

EMAILS = [f"fixed{i}@example.com" for i in range(4)]


def work_dir(tmp_path: Path, campaign: str = DEMO_CAMPAIGN_ID) -> Path:
    (tmp_path / "mapping.yaml").write_text(
        f"campaignId: {{value: {campaign}}}\ncontact: {{email: Email, firstName: First Name}}\n",
        encoding="utf-8")
    with open(tmp_path / "contacts.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Email", "First Name"])
        writer.writerows([e, f"Name{i}"] for i, e in enumerate(EMAILS))
    return tmp_path


def send(work: Path, sandbox: Sandbox, *args: str, key: str = KEY) -> Any:
    return run_cli("send", "contacts.csv", "-m", "mapping.yaml", "-o", "out.csv", "--api-url", sandbox.url,
                   "--rate", "none", *args, cwd=work, key=key)


def test_a_first_run_lists_the_campaign_once_and_asks_the_listings_at_once(tmp_path: Path) -> None:
    """The demo campaign holds a request (of another contact): the listing
    that found it is matched against the rows, not made again. Old code: 2 +
    3 + 3 GETs, one at a time."""
    work = work_dir(tmp_path)
    with running_sandbox(SandboxConfig(api_key=KEY, seed=1, latency=0.3)) as sandbox:
        r = send(work, sandbox, "-c", "1")  # one POST at a time: only the listings overlap 3 calls
        assert r.code == 0, r.stderr
        stats = sandbox.stats
        assert stats["gets"] == 2 + 3, stats  # GET /team, GET /campaigns/{id}; 3 status listings
        assert stats["max_in_flight"] == 3, stats
        assert sorted(c["email"] for c in sandbox.created) == EMAILS
    assert "(3 calls): 0 already have one" in r.stderr
    _, rows = read_results(work / "out.csv")
    assert [row["status"] for row in rows] == ["sent"] * len(EMAILS)


def test_a_first_run_still_stops_on_a_contact_the_campaign_already_has(tmp_path: Path) -> None:
    """The one listing is the check: a contact it holds stops the run, nothing sent."""
    work = work_dir(tmp_path)
    with running_sandbox(SandboxConfig(api_key=KEY, seed=1)) as sandbox:
        first = send(work, sandbox, "--limit", "1")
        assert first.code == 0, first.stderr
        (work / "out.csv").unlink()
        for side in work.glob("out.csv.*"):
            side.unlink()  # a new results file: the journal is gone, the request is not
        again = send(work, sandbox)
        assert again.code == 2, again.stderr
        assert f"row 2 ({EMAILS[0]}: request" in again.stderr and "nothing was sent" in again.stderr
        assert [c["email"] for c in sandbox.created] == [EMAILS[0]]


def test_the_preflight_asks_at_once_and_refuses_a_bad_campaign_before_any_post(tmp_path: Path) -> None:
    work = work_dir(tmp_path, campaign="NoSuchCampaign01")
    with running_sandbox(SandboxConfig(api_key=KEY, seed=1, latency=0.3)) as sandbox:
        r = send(work, sandbox)
        stats = sandbox.stats
    assert r.code == 2, r.stderr
    assert "campaign 'NoSuchCampaign01' does not exist" in r.stderr and "nothing was sent" in r.stderr
    assert "Traceback" not in r.stderr
    assert stats["gets"] == 2 and stats["max_in_flight"] == 2, stats  # GET /team and the campaign at once
    assert sum(stats["post_request"].values()) == 0 and stats["created"] == 0


def test_a_refused_key_is_told_as_get_team_s_and_stops_before_any_post(tmp_path: Path) -> None:
    work = work_dir(tmp_path)
    with running_sandbox(SandboxConfig(api_key=KEY, seed=1, latency=0.2)) as sandbox:
        r = send(work, sandbox, key="wrong-key")
        stats = sandbox.stats
    assert r.code == 3, r.stderr
    assert "the API key was refused (HTTP 401 on GET /team); nothing was sent" in r.stderr
    assert "Traceback" not in r.stderr
    assert stats["get"] == {"401": 2}, stats  # the campaign's GET went with it; nothing else
    assert sum(stats["post_request"].values()) == 0 and stats["created"] == 0
