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
