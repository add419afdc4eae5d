"""Issue 14, the sandbox's side: PATCH /request, the listings and GET /requests/{id}
as collect-api.md §7 documents them, and requests that move on by themselves."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

import pytest
from conftest import KEY

from bulksend.sandbox import ONBOARDING_CAMPAIGN_ID, USER_IDS, Sandbox, SandboxConfig, running_sandbox

AUTH = "Basic " + base64.b64encode(f":{KEY}".encode()).decode()


def call(sb: Sandbox, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(sb.url + path, data=data, method=method,
                                     headers={"Authorization": AUTH, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def pending(n: int) -> dict[str, Any]:
    return {"requests": [{"_id": f"Pq{i:015d}", "campaignId": ONBOARDING_CAMPAIGN_ID,
                          "email": f"p{i}@example.com"} for i in range(n)]}


def listing(sb: Sandbox, extra: str = "") -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for offset in range(0, 10_000, 100):
        query = f"campaignId={ONBOARDING_CAMPAIGN_ID}&limit=100&offset={offset}{extra}"
        status, page = call(sb, "GET", f"/requests?{query}")
        assert status == 200
        rows += page
        if len(page) < 100:
            return rows
    raise AssertionError("too many pages")


def test_patch_takes_the_documented_statuses_and_spelling() -> None:
    with running_sandbox(SandboxConfig(api_key=KEY, preload=pending(3))) as sb:
        refused = call(sb, "PATCH", "/request", {"requestId": "Pq000000000000000", "status": "cancelled"})
        unknown = call(sb, "PATCH", "/request", {"requestId": "Pq000000000000000", "status": "closed"})
        field = call(sb, "PATCH", "/request", {"requestId": "Pq000000000000000", "state": "archived"})
        missing = call(sb, "PATCH", "/request", {"requestId": "Zz000000000000000", "status": "archived"})
        who = call(sb, "PATCH", "/request", {"requestId": "Pq000000000000000", "assignedTo": "x@y.z"})
        assert sb.patches == []
        ok = call(sb, "PATCH", "/request", {"requestId": "Pq000000000000000", "status": "canceled",
                                            "dueDate": "2099-12-31", "assignedTo": "owner@sandbox.example"})
        custom = call(sb, "PATCH", "/request", {"requestId": "Pq000000000000001", "status": "on-hold"})
        default = listing(sb)
        cancelled = listing(sb, "&filter=cancelled")
        one = call(sb, "GET", "/requests/Pq000000000000000")
        patches = sb.patches
    assert [answer[0] for answer in (refused, unknown, field, missing, who)] == [400, 400, 400, 404, 400]
    assert "canceled" in refused[1]["message"]
    assert ok[0] == 200 and ok[1]["errors"] == [] and ok[1]["request"]["status"] == "cancelled"
    assert ok[1]["request"]["dueDate"] == "2099-12-31T00:00:00Z"
    assert custom[1]["request"]["status"] == "on-hold"
    # Cancelled requests leave the default listing (§6.3) and show under filter=cancelled.
    assert {r["_id"] for r in default} == {"Pq000000000000001", "Pq000000000000002"}
    assert [r["_id"] for r in cancelled] == ["Pq000000000000000"]
    assert one[1]["status"] == "cancelled" and "documents" in one[1]
    assert [(p["before"], p["after"]) for p in patches] == [("pending", "cancelled"), ("pending", "on-hold")]
    assert patches[0]["received"]["assignedTo"] == "owner@sandbox.example"
    assert USER_IDS["owner@sandbox.example"]  # the email names a user of the team


def test_patch_sends_the_reopen_message_only_on_a_change_to_pending() -> None:
    with running_sandbox(SandboxConfig(api_key=KEY, preload=pending(1))) as sb:
        body = {"requestId": "Pq000000000000000", "status": "pending", "sendReopenMessage": True}
        call(sb, "PATCH", "/request", body)  # already pending: no change, no message
        sb.set_request_status("Pq000000000000000", "error")
        call(sb, "PATCH", "/request", body)
        patches = sb.patches
    assert [p["messages"] for p in patches] == [[], ["reopen"]]


def test_listings_page_100_at_a_time_most_recent_first() -> None:
    with running_sandbox(SandboxConfig(api_key=KEY, preload=pending(250))) as sb:
        rows = listing(sb)
        too_many = call(sb, "GET", f"/requests?campaignId={ONBOARDING_CAMPAIGN_ID}&limit=101")
        gets = sb.stats["gets"]
    assert len(rows) == 250 and gets == 3 + 1
    assert len({r["_id"] for r in rows}) == 250
    assert too_many[0] == 400


@pytest.mark.parametrize("rate", [0.0, 200.0])
def test_progress_rate_moves_open_requests_through_the_statuses(rate: float) -> None:
    with running_sandbox(SandboxConfig(api_key=KEY, preload=pending(200), progress_rate=rate)) as sb:
        listing(sb)
        time.sleep(0.1)
        seen = Counter(r["status"] for r in listing(sb) + listing(sb, "&filter=cancelled"))
    if rate == 0:
        assert seen == {"pending": 200}
    else:
        assert seen["pending"] < 100
        assert {"waiting", "completed", "due", "error"} <= set(seen)
        assert sum(seen.values()) == 200  # none of them cancelled or archived by itself


def test_progress_rate_can_be_turned_on_while_it_runs() -> None:
    with running_sandbox(SandboxConfig(api_key=KEY, preload=pending(50))) as sb:
        time.sleep(0.2)
        sb.set_faults(progress_rate=0.001)  # the time before does not count at the new rate
        before = Counter(r["status"] for r in listing(sb))
        with pytest.raises(ValueError, match="progress_rate"):
            sb.set_faults(progress_rate=-1)
    assert before == {"pending": 50}
