"""The README's first command ends in `bulksend demo`: it must run to the end."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from conftest import CONTRACT, read_results, run_cli

from bulksend.cli.main import cli


def test_demo_runs_end_to_end_without_a_key(tmp_path: Path) -> None:
    r = run_cli("demo", cwd=tmp_path, key=None)

    assert r.code == 0, r.stderr + r.stdout
    header, rows = read_results(tmp_path / "demo-results.csv")
    assert header[: len(CONTRACT)] == CONTRACT
    assert len(rows) == 31
    assert Counter(row["status"] for row in rows) == {"sent": 26, "invalid": 4, "duplicate": 1}
    assert "(the sandbox holds 26 requests: one per sent row)" in r.stdout
    assert "row 32 invalid   row has 1 more cell than the header" in r.stdout
    # Every sent row carries the id the sandbox gave it.
    assert all(row["request_id"] and row["portal_url"] for row in rows if row["status"] == "sent")
    # It ends with `status` on what it sent (issue 14): every sent row's status read.
    assert "demo-results.csv: 26 requests, read " in r.stdout
    assert all(row["request_status"] and row["status_read_at"] for row in rows if row["status"] == "sent")


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_every_command_help_teaches_with_an_example(command: str, tmp_path: Path) -> None:
    r = run_cli(command, "--help", cwd=tmp_path, key=None)
    assert r.code == 0
    assert "Example" in r.stdout and "bulksend " + command in r.stdout
