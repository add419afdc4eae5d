"""Resuming a killed --batch run costs what may actually have left (issue 11,
case 8): only rows whose call was on the wire are in doubt, they are settled
with a few listings, and those found absent go back into batches."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from conftest import KEY, people, read_results, write_contacts
from test_exactly_once import (  # noqa: F401 - _reap_runs: the autouse fixture that kills stray runs
    CONTACTS,
    RESULTS,
    _reap_runs,
    _rows_in_doubt,
    send_args,
    start,
    wait_for,
)

from bulksend.sandbox import Sandbox, SandboxConfig, running_sandbox


def batch_calls(sandbox: Sandbox) -> int:
    return sum(sandbox.stats["post_requests"].values())


def test_a_killed_batch_run_leaves_only_calls_on_the_wire_in_doubt_and_resumes_in_batches(
        workdir: Path) -> None:
    n = 1500
    write_contacts(workdir / CONTACTS, people(n))
    # Each call takes 0.4 s: a kill lands with calls on the wire and many rows queued.
    with running_sandbox(SandboxConfig(api_key=KEY, seed=3, latency=0.4)) as sandbox:
        args = send_args(sandbox, "--batch", "--concurrency", "4", "--rate", "none")
        run = start(workdir, args, "killed")
        wait_for("4 batch calls answered", lambda: len(sandbox.created) >= 200, timeout=60, run=run)
        run.kill()
        in_doubt = _rows_in_doubt(workdir)
        # At most the 4 workers' calls of 50 rows: not the queue's thousands.
        assert 0 <= in_doubt <= 4 * 50, in_doubt
        sandbox.set_faults(latency=0.0)
        created_before = len(sandbox.created)
        singles_before = sum(sandbox.stats["post_request"].values())
        calls_before = batch_calls(sandbox)
        gets_before = sandbox.stats["gets"]
        started = time.monotonic()
        rerun = start(workdir, args, "rerun")
        assert rerun.wait(timeout=120) == 0, rerun.stderr
        elapsed = time.monotonic() - started
        created = sandbox.created
        singles = sum(sandbox.stats["post_request"].values()) - singles_before
        calls = batch_calls(sandbox) - calls_before
        gets = sandbox.stats["gets"] - gets_before

    assert Counter(c["email"] for c in created).most_common(1)[0][1] == 1, "a contact got two requests"
    assert len(created) == n
    # The rest went out in batches, not one by one, and the rows in doubt were
    # settled with a few listings, not three look-ups each.
    assert singles <= 5, singles
    assert calls <= (n - created_before) // 50 + 8, calls
    assert gets <= 30 + (n // 100) * 3, gets
    assert elapsed < 30, elapsed
    _, lines = read_results(workdir / RESULTS)
    assert {line["status"] for line in lines} == {"sent"}
