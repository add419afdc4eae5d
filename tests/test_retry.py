"""The one retry policy (collect/retry.py), on virtual time; and that update's,
status's and send's retries go through it.

The policy's rules are checked with an injected sleep and clock (nothing
waits); update and status run against the real sandbox on 127.0.0.1, whose
look-up fault answers 500, with the policy's sleep swapped for one that records
each wait and ends the fault after a given number of them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from conftest import KEY, read_results
from test_status_update import preload, request_id, write_results

from bulksend.collect.client import Ambiguous, NotSent
from bulksend.collect.retry import CALL_RETRY, RetryPolicy
from bulksend.common.errors import AbortError
from bulksend.common.progress import RecordingProgress
from bulksend.sandbox import DEMO_CAMPAIGN_ID, Sandbox, SandboxConfig, running_sandbox
from bulksend.sending.preflight import preflight_retry
from bulksend.store.updates import BEGUN, DONE, UpdateJournal
from bulksend.tasks.status import track_file
from bulksend.tasks.update import (
    Change,
    Selection,
    apply_plan,
    plan_update,
    update_session,
    updates_path,
)


class VirtualTime:
    """A clock that moves only when slept on; ``then(n, action)`` runs once ``n`` sleeps were made."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []
        self.actions: dict[int, Callable[[], None]] = {}

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        action = self.actions.pop(len(self.slept), None)
        if action is not None:
            action()

    def policy(self, start: RetryPolicy = CALL_RETRY, **changes: object) -> RetryPolicy:
        return dataclasses.replace(start, sleep=self.sleep, clock=self.clock, **changes)  # type: ignore[arg-type]


def failing(calls: list[float], vt: VirtualTime, exc: Exception) -> Callable[[], Awaitable[None]]:
    async def attempt() -> None:
        calls.append(vt.now)
        raise exc

    return attempt


# -- the policy ------------------------------------------------------------------------


def test_attempts_are_capped_and_the_steps_double() -> None:
    vt = VirtualTime()
    policy = vt.policy(RetryPolicy(), jitter=(1.0, 1.0))  # send's numbers, jitter at its top
    calls: list[float] = []
    with pytest.raises(NotSent):
        asyncio.run(policy.call(failing(calls, vt, NotSent("refused")), (NotSent,)))
    assert len(calls) == policy.max_attempts == 5
    assert vt.slept == [0.5, 1.0, 2.0, 4.0]  # base 0.5, doubled; no wait after the last try


def test_total_time_is_capped() -> None:
    vt = VirtualTime()
    policy = vt.policy(RetryPolicy(), max_attempts=100, max_time=10.0, base=1.0, jitter=(1.0, 1.0))
    calls: list[float] = []
    with pytest.raises(Ambiguous):
        asyncio.run(policy.call(failing(calls, vt, Ambiguous("lost")), (NotSent, Ambiguous)))
    # Tries at 0, 1, 3, 7 s; after the wait that follows, 15 s is past the 10 s cap: no try starts.
    assert calls == [0.0, 1.0, 3.0, 7.0] and vt.now == 15.0
    assert policy.exhausted(1, started=vt.now - 10.5) and not policy.exhausted(1, started=vt.now - 10.0)


def test_other_errors_are_not_retried() -> None:
    vt = VirtualTime()
    calls: list[float] = []
    with pytest.raises(AbortError):
        asyncio.run(vt.policy().call(failing(calls, vt, AbortError("no")), (NotSent, Ambiguous)))
    assert calls == [0.0] and vt.slept == []


def test_retry_after_is_honoured_and_capped() -> None:
    vt = VirtualTime()
    policy = vt.policy(RetryPolicy())  # cap 30 s
    assert policy.delay(1, retry_after=7.0) == 7.0
    assert policy.delay(4, retry_after=0.0) == 0.0  # "now" is an answer too (RFC 9110 §10.2.3)
    assert policy.delay(1, retry_after=3600.0) == 30.0  # one answer cannot park a worker for an hour
    assert policy.delay(1, retry_after=-5.0) == 0.0
    assert asyncio.run(policy.wait(1, retry_after=12.0)) == 12.0 and vt.slept == [12.0]
    # The preflight's cap is --max-pause.
    assert preflight_retry(max_pause=5.0).delay(1, retry_after=60.0) == 5.0


@pytest.mark.parametrize(("policy", "low", "high"), [
    (RetryPolicy(rng=random.Random(1)), 0.5, 1.0),
    (dataclasses.replace(CALL_RETRY, rng=random.Random(2)), 0.5, 1.5),
], ids=["send", "status-update"])
def test_jitter_stays_within_its_bounds(policy: RetryPolicy, low: float, high: float) -> None:
    for failures in range(1, 12):
        ceiling = min(policy.cap, policy.base * 2 ** (failures - 1))
        draws = [policy.backoff(failures) for _ in range(400)]
        assert all(ceiling * low <= d <= ceiling * high for d in draws), (failures, min(draws), max(draws))
        assert max(draws) - min(draws) > ceiling * (high - low) * 0.8  # it does spread


def test_the_numbers_are_those_each_caller_had() -> None:
    """One formula, the parameters each caller used before it: send's
    uniform(c/2, c) with c = min(30, 0.5 * 2**(n-1)); update's
    min(8, 0.5 * 2**n) * (0.5 + random()); the preflight's min(2**(n-1), max_pause)."""
    for n in range(1, 9):
        old, new = random.Random(n), random.Random(n)
        c = min(30.0, 0.5 * 2 ** (n - 1))
        assert RetryPolicy(rng=new).backoff(n) == pytest.approx(old.uniform(c / 2, c))
        old, new = random.Random(n), random.Random(n)
        assert dataclasses.replace(CALL_RETRY, rng=new).backoff(n) == pytest.approx(
            min(8.0, 0.5 * 2 ** n) * (0.5 + old.random()))
        assert preflight_retry(max_pause=60.0).backoff(n) == min(2.0 ** (n - 1), 60.0)


# -- update and status retry through it, against the sandbox ------------------------------


def begun_world(tmp_path: Path, n: int) -> tuple[dict[str, object], Path, Change]:
    """``n`` sent rows whose change is ``begun`` in the update journal (a kill
    after the PATCH left): update reads each request before sending again."""
    records, rows = preload(DEMO_CAMPAIGN_ID, ["pending"] * n)
    results = write_results(tmp_path / "r.csv", rows)
    change = Change(status="archived")
    journal = UpdateJournal(updates_path(results))
    for i in range(n):
        journal.begin(change.key, request_id(i), i + 2)
    journal.close()
    return records, results, change


def update_all(results: Path, change: Change, sandbox: Sandbox, policy: RetryPolicy) -> None:
    with update_session(results) as journal:
        plan = plan_update(results, journal, change, Selection(every=True))
        run = apply_plan(plan, journal, api_url=sandbox.url, api_key=KEY, timeout=5, rate=None,
                         concurrency=1, progress=RecordingProgress(), retry=policy)
    assert not run.interrupted and run.aborted is None


def states(results: Path, change: Change) -> list[str]:
    journal = UpdateJournal(updates_path(results))
    try:
        return [e.state for _, e in sorted(journal.entries(change.key).items())]
    finally:
        journal.close()


def test_update_retries_a_failed_check_through_the_policy(tmp_path: Path) -> None:
    records, results, change = begun_world(tmp_path, 1)
    vt = VirtualTime()
    with running_sandbox(SandboxConfig(api_key=KEY, preload=records, lookup_fault="500")) as sb:
        vt.actions[2] = lambda: sb.set_faults(lookup_fault=None)  # the server is back after two waits
        update_all(results, change, sb, vt.policy(jitter=(1.0, 1.0)))
        gets, patches = int(sb.stats["gets"]), sb.patches
    assert vt.slept == [1.0, 2.0]  # update's steps: 1, 2, 4, 8 s (times 0.5-1.5 unless pinned)
    assert gets == 3  # GET /requests/{id}: 500, 500, then 200
    assert [p["requestId"] for p in patches] == [request_id(0)]
    assert states(results, change) == [DONE]


def test_update_gives_up_when_the_policys_tries_are_spent(tmp_path: Path) -> None:
    records, results, change = begun_world(tmp_path, 1)
    vt = VirtualTime()
    with running_sandbox(SandboxConfig(api_key=KEY, preload=records, lookup_fault="500")) as sb:
        update_all(results, change, sb, vt.policy(max_attempts=3))
        gets, patches = int(sb.stats["gets"]), sb.patches
    assert len(vt.slept) == 2 and 0.5 <= vt.slept[0] <= 1.5 and 1.0 <= vt.slept[1] <= 3.0
    assert gets == 3 and patches == []  # never PATCHed blind: the change may already be there
    assert states(results, change) == [BEGUN]
    assert read_results(results)[1][0]["last_update"].startswith("status -> archived: not confirmed (")


def test_status_retries_a_failed_listing_through_the_policy(tmp_path: Path) -> None:
    records, rows = preload(DEMO_CAMPAIGN_ID, ["pending", "completed", "waiting"])
    results = write_results(tmp_path / "r.csv", rows)
    vt = VirtualTime()
    with running_sandbox(SandboxConfig(api_key=KEY, preload=records, lookup_fault="500")) as sb:
        vt.actions[1] = lambda: sb.set_faults(lookup_fault=None)
        run = track_file(results, api_url=sb.url, api_key=KEY, timeout=5, rate=None,
                         progress=RecordingProgress(), retry=vt.policy(jitter=(1.0, 1.0)))
    assert vt.slept == [1.0]
    assert run.calls == 2  # the first page, then the same page again
    assert [t.status for t in run.rows] == ["pending", "completed", "waiting"]


def test_status_stops_once_the_policys_tries_are_spent(tmp_path: Path) -> None:
    records, rows = preload(DEMO_CAMPAIGN_ID, ["pending"])
    results = write_results(tmp_path / "r.csv", rows)
    before = results.read_bytes()
    vt = VirtualTime()
    with running_sandbox(SandboxConfig(api_key=KEY, preload=records, lookup_fault="500")) as sb:
        with pytest.raises(AbortError, match="could not read the requests' statuses"):
            track_file(results, api_url=sb.url, api_key=KEY, timeout=5, rate=None,
                       progress=RecordingProgress(), retry=vt.policy())
        gets = int(sb.stats["gets"])
    assert gets == CALL_RETRY.max_attempts and len(vt.slept) == CALL_RETRY.max_attempts - 1
    assert results.read_bytes() == before  # nothing written
