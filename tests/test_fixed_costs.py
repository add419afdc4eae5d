"""The calls before the first POST (issue 18): the preflight's GETs asked at
once, a first run's campaign listed once, and each of them still stopping the
run before anything is sent. The real CLI against the sandbox; what the server
received is asserted."""

from __future__ import annotations

import csv
import json
import os
import pstats
import subprocess
import sys
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


def test_the_exit_without_teardown_keeps_the_status_the_output_and_the_journal(tmp_path: Path) -> None:
    """A run that ends with a row not sent (exit 1) leaves its whole summary on
    a pipe, its --summary-json, and a journal the rerun trusts (no POST again)."""
    work = work_dir(tmp_path)
    with open(work / "contacts.csv", "a", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerow(["not-an-email", "Bad"])
    with running_sandbox(SandboxConfig(api_key=KEY, seed=1)) as sandbox:
        r = send(work, sandbox, "--summary-json", "summary.json")
        assert r.code == 1, r.stderr
        assert "Traceback" not in r.stderr
        summary = json.loads((work / "summary.json").read_text(encoding="utf-8"))
        assert summary["exit_code"] == 1 and summary["counts"] == {"sent": 4, "invalid": 1}, summary
        assert "invalid" in r.stdout  # the summary's counts reached the pipe
        posts = sum(sandbox.stats["post_request"].values())
        again = send(work, sandbox)
        assert again.code == 1, again.stderr
        assert sum(sandbox.stats["post_request"].values()) == posts  # the journal knew every sent row


def test_a_profiled_run_still_writes_its_profile(tmp_path: Path) -> None:
    """cProfile (like coverage) writes its data after the program ends: the
    ordinary exit is kept under a profiler or tracer."""
    work = work_dir(tmp_path)
    with running_sandbox(SandboxConfig(api_key=KEY, seed=1)) as sandbox:
        env = {k: v for k, v in os.environ.items() if k != "COLLECT_API_KEY"}
        proc = subprocess.run(
            [sys.executable, "-m", "cProfile", "-o", "run.prof", "-m", "bulksend", "send", "contacts.csv",
             "-m", "mapping.yaml", "-o", "out.csv", "--api-url", sandbox.url, "--rate", "none"],
            cwd=work, env={**env, "COLLECT_API_KEY": KEY}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (work / "run.prof").exists(), proc.stderr
    pstats.Stats(str(work / "run.prof"))  # a profile, read back
