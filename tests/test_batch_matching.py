"""Batch answers are matched by contact, never by position, and a contact the
answer leaves out is looked up before it is ever sent again (issue 5, item 2).

These run the real BatchSender against the real sandbox; only the batch answer
under test is written by hand, to show the cases the sandbox never produces."""

from __future__ import annotations

import asyncio
from typing import Any

from conftest import KEY

from bulksend.collect.client import Answer, Client
from bulksend.collect.rategate import RateGate
from bulksend.collect.retry import RetryPolicy as Policy
from bulksend.common.outcome import FAILED, SENT, Outcome
from bulksend.common.progress import RecordingProgress
from bulksend.sandbox import DEMO_CAMPAIGN_ID, SandboxConfig, running_sandbox
from bulksend.sending.sender import BatchSender, Job, Sender


def job(email: str, row: int) -> Job:
    payload = {"campaignId": DEMO_CAMPAIGN_ID, "contact": {"email": email}}
    return Job(Outcome(row=row, key=f"{DEMO_CAMPAIGN_ID}|{email}"), payload)


async def with_sender(url: str, body: Any) -> Any:
    progress = RecordingProgress()
    async with Client(url, KEY, timeout=5, concurrency=2) as client:
        sender = Sender(client, RateGate(None, progress=progress), None, Policy(), progress)
        return await body(client, sender, progress)


def test_answers_in_any_order_follow_their_contact() -> None:
    with running_sandbox(SandboxConfig(api_key=KEY, seed=9)) as sandbox:
        jobs = [job(f"b{i}@example.com", i + 2) for i in range(3)]

        async def body(client: Client, sender: Sender, progress: RecordingProgress) -> list[Outcome]:
            answer = Answer(200, {"requests": [
                {"_id": "REQ2", "portalUrl": "u2", "contact": {"_id": "C2", "email": "B2@example.com"}},
                {"_id": "REQ0", "portalUrl": "u0", "contact": {"_id": "C0", "email": "b0@example.com"}},
            ], "errors": [{"contact": {"email": "b1@example.com"}, "message": "bad contact"}]}, None)
            return await BatchSender(sender)._match(jobs, answer, "2026-01-01T00:00:00Z")

        outcomes = asyncio.run(with_sender(sandbox.url, body))
        by_row = {o.row: o for o in outcomes}
        assert (by_row[2].status, by_row[2].request_id, by_row[2].contact_id) == (SENT, "REQ0", "C0")
        assert (by_row[4].status, by_row[4].request_id) == (SENT, "REQ2")  # case-insensitive email
        assert by_row[3].status == FAILED and "bad contact" in by_row[3].error
        assert sandbox.created == []  # matching alone never POSTs


def test_a_contact_missing_from_the_answer_is_looked_up_then_sent_only_if_absent() -> None:
    with running_sandbox(SandboxConfig(api_key=KEY, seed=9)) as sandbox:
        jobs = [job(f"m{i}@example.com", i + 2) for i in range(3)]

        async def body(client: Client, sender: Sender, progress: RecordingProgress) -> list[Outcome]:
            since = "2020-01-01T00:00:00Z"
            # m1 was in fact created by the batch: the server made it, the answer lost it.
            made = await client.call("POST", "/request", jobs[1].payload)
            assert made.status == 200
            answer = Answer(200, {"requests": [
                {"_id": "REQ0", "portalUrl": "u0", "contact": {"_id": "C0", "email": "m0@example.com"}},
            ], "errors": []}, None)
            return await BatchSender(sender)._match(jobs, answer, since)

        outcomes = asyncio.run(with_sender(sandbox.url, body))
        created = sandbox.created
        by_row = {o.row: o for o in outcomes}
        # m1: found by look-up, not resent; m2: not found, so sent once, alone.
        assert by_row[3].status == SENT and by_row[3].request_id == next(
            c["_id"] for c in created if c["email"] == "m1@example.com")
        assert by_row[4].status == SENT
        assert sorted(c["email"] for c in created) == ["m1@example.com", "m2@example.com"]
        assert sandbox.stats["gets"] >= 2  # the look-ups happened
