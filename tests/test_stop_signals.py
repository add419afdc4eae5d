"""Ctrl-C and SIGTERM stop ``bulksend update`` and ``bulksend status`` through
send's signal handling (sending/stop.py). ``update``: the first starts no new
change and waits for the PATCHes on the wire, so every change the server
applied is recorded done; a rerun finishes the rest and changes nothing twice.
``status`` changes nothing, so it has nothing to wait for: it stops at once,
writes nothing and leaves the results file free.

The real CLI, as a process of its own, against the real sandbox on 127.0.0.1;
the test signals it as a person or a container runtime would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import KEY, posix_signals, read_results, run_cli
from forked import spawn
from test_status_update import preload, request_id, write_results

from bulksend.sandbox import DEMO_CAMPAIGN_ID, SandboxConfig, running_sandbox
from bulksend.store.updates import DONE, UpdateJournal
from bulksend.tasks.update import Change, updates_path

ROWS = 40
pytestmark = posix_signals  # every test here signals a run


def journal_states(results: Path, change: Change) -> Counter[str]:
    journal = UpdateJournal(updates_path(results))
    try:
        return Counter(entry.state for entry in journal.entries(change.key).values())
    finally:
        journal.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_update_gracefully_and_a_rerun_finishes_the_rest(tmp_path: Path, sig: int) -> None:
    records, rows = preload(DEMO_CAMPAIGN_ID, ["pending"] * ROWS)
    results = write_results(tmp_path / "r.csv", rows)
    change = Change(status="archived")
    # Each call takes 0.3 s inside the server: four PATCHes are on the wire at any moment.
    with running_sandbox(SandboxConfig(api_key=KEY, preload=records, latency=0.3)) as sb:
        args = ["update", str(results), "--all", "--status", "archived", "--yes", "--rate", "none",
                "-c", "4", "--api-url", sb.url]
        env = {k: v for k, v in os.environ.items() if k != "COLLECT_API_KEY"} | {"COLLECT_API_KEY": KEY}
        err_path = tmp_path / "update.err"
        with open(tmp_path / "update.out", "wb") as out, open(err_path, "wb") as err:
            proc = spawn(args, cwd=tmp_path, env=env, stdout=out, stderr=err)
        try:
            deadline = time.monotonic() + 30
            while len(sb.patches) < 6 and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.01)
            proc.send_signal(sig)
            code = proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=15)
        stderr = err_path.read_text(encoding="utf-8", errors="replace")
        stdout = (tmp_path / "update.out").read_text(encoding="utf-8", errors="replace")
        applied = [p["requestId"] for p in sb.patches]

        assert code == 130, f"exit {code}\n{stdout}\n{stderr}"
        assert "Traceback" not in stderr, stderr
        name = "Ctrl-C" if sig == signal.SIGINT else "SIGTERM"
        assert f"{name}: no new changes; waiting up to 10s for PATCHes in flight" in stderr, stderr
        assert "rerun the same command to finish" in stdout, stdout
        assert 6 <= len(applied) < ROWS
        # The PATCHes on the wire got their answers: every change the server
        # applied is recorded done, none left "not confirmed".
        assert journal_states(results, change) == {DONE: len(applied)}
        done = [r for r in read_results(results)[1] if r["last_update"] == "status -> archived: done"]
        assert len(done) == len(applied)

        r = run_cli(*args, cwd=tmp_path, timeout=60)
        patches = sb.patches
    assert r.code == 0, r.stdout + r.stderr
    assert f"{len(applied)} more already have this change" in r.stdout
    assert Counter(p["requestId"] for p in patches) == {request_id(i): 1 for i in range(ROWS)}
    assert journal_states(results, change) == {DONE: ROWS}


def test_a_signal_stops_status_at_once_and_writes_nothing(tmp_path: Path) -> None:
    records, rows = preload(DEMO_CAMPAIGN_ID, ["pending", "completed"])
    results = write_results(tmp_path / "r.csv", rows)
    before = results.read_bytes()
    # Every call takes 5 s inside the server: the signal comes while the first is on the wire.
    with running_sandbox(SandboxConfig(api_key=KEY, preload=records, latency=5.0)) as sb:
        args = ["status", str(results), "--api-url", sb.url]
        env = {k: v for k, v in os.environ.items() if k != "COLLECT_API_KEY"} | {"COLLECT_API_KEY": KEY}
        err_path = tmp_path / "status.err"
        with open(err_path, "wb") as err:
            proc = spawn(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + 30
            while sb.stats["in_flight"] < 1 and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.01)
            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=20)
            waited = time.monotonic() - signalled
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=15)
        stderr = err_path.read_text(encoding="utf-8", errors="replace")
        assert code == 130, f"exit {code}\n{stderr}"
        assert waited < 4, f"waited {waited:.1f}s for a read whose answer nothing needs\n{stderr}"
        assert stderr.startswith("bulksend: error: SIGTERM: stopped before every status was read; "
                                 "nothing was written"), stderr
        assert results.read_bytes() == before
        sb.set_faults(latency=0.0)
        again = run_cli(*args, cwd=tmp_path, timeout=60)  # the lock was released
    assert again.code == 0, again.stdout + again.stderr
    assert [r["request_status"] for r in read_results(results)[1]] == ["pending", "completed"]
