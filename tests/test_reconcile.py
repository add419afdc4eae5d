"""``bulksend reconcile``: unknown rows are looked up, never POSTed (issue 4)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import KEY, people, posix_signals, read_results, run_cli, write_contacts

from bulksend.sandbox import SandboxConfig, running_sandbox


@posix_signals
def test_reconcile_settles_rows_a_killed_run_left_in_flight(workdir: Path) -> None:
    write_contacts(workdir / "contacts.csv", people(6))
    # Every POST is created at once but answered 5 s later: the run is killed
    # while its POSTs are in flight, after the server made them.
    with running_sandbox(SandboxConfig(api_key=KEY, seed=3, slow_rate=1.0, slow_delay=5.0)) as sandbox:
        env = {**os.environ, "COLLECT_API_KEY": KEY}
        proc = subprocess.Popen(
            [sys.executable, "-m", "bulksend", "send", "contacts.csv", "-m", "mapping.yaml",
             "--results", "results.csv", "--api-url", sandbox.url, "--rate", "none",
             "--concurrency", "3", "--no-progress"],
            cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while sandbox.stats["created"] < 3:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        sandbox.set_faults(slow_rate=0.0)
        created = {c["email"]: c["_id"] for c in sandbox.created}
        posts_before = sum(sandbox.stats["post_request"].values())
        assert 1 <= len(created) < 6

        r = run_cli("reconcile", "results.csv", "--api-url", sandbox.url, cwd=workdir)

        assert r.code == 0, r.stderr
        assert f"{len(created)} found (sent)" in r.stdout
        assert sum(sandbox.stats["post_request"].values()) == posts_before  # nothing POSTed
        _, rows = read_results(workdir / "results.csv")
        by_key = {row["key"].split("|")[1]: row for row in rows}
        for email, request_id in created.items():
            assert by_key[email]["status"] == "sent"
            assert by_key[email]["request_id"] == request_id

        # The next send sends only what was never created, and nothing twice.
        r = run_cli("send", "contacts.csv", "-m", "mapping.yaml", "--results", "results.csv",
                    "--api-url", sandbox.url, "--rate", "none", cwd=workdir)
        assert r.code == 0, r.stderr
        emails = sorted(c["email"] for c in sandbox.created)
        assert emails == sorted(p["Email"] for p in people(6))


def test_reconcile_with_nothing_unknown(workdir: Path) -> None:
    write_contacts(workdir / "contacts.csv", people(3))
    with running_sandbox(SandboxConfig(api_key=KEY)) as sandbox:
        assert run_cli("send", "contacts.csv", "-m", "mapping.yaml", "-o", "results.csv",
                       "--api-url", sandbox.url, cwd=workdir).code == 0
        r = run_cli("reconcile", "results.csv", "--api-url", sandbox.url, cwd=workdir)
    assert r.code == 0 and "no unknown rows" in r.stdout


def test_reconcile_refuses_a_file_that_is_not_results(workdir: Path) -> None:
    write_contacts(workdir / "contacts.csv", people(2))
    r = run_cli("reconcile", "contacts.csv", "--api-url", "http://127.0.0.1:9/v1", cwd=workdir)
    assert r.code == 2
    assert r.stderr.startswith("bulksend: error: contacts.csv: not a bulksend results file")
