"""The sandbox against a real aiohttp client on 127.0.0.1, port 0.

Each test starts its own server inside ``asyncio.run`` (no pytest-asyncio) and
asserts what the server did: status, body, and what it recorded in ``created``
and ``stats``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import json
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from conftest import posix_signals

from bulksend.sandbox import (
    DEFAULT_API_KEY,
    DEMO_CAMPAIGN_ID,
    DEMO_ITEM_IDS,
    ONBOARDING_CAMPAIGN_ID,
    SEEDED_CONTACT_IDS,
    SEEDED_REQUEST_ID,
    Sandbox,
    SandboxConfig,
    running_sandbox,
)

T = TypeVar("T")
ID = re.compile(r"[A-Za-z0-9]{17}")
ISO_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def basic(key: str, user: str = "") -> str:
    # Built by hand: aiohttp's BasicAuth helper is deprecated.
    return "Basic " + base64.b64encode(f"{user}:{key}".encode()).decode()


AUTH = {"Authorization": basic(DEFAULT_API_KEY)}


def run(coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
    """Run one test body; it fails instead of hanging."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class Api:
    session: aiohttp.ClientSession
    url: str  # ends with /v1

    async def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> Reply:
        sent = dict(AUTH if headers is None else headers)
        if data is not None:
            sent.setdefault("Content-Type", "application/json")
        async with self.session.request(
            method, self.url + path, json=json_body, data=data, headers=sent, params=params
        ) as response:
            text = await response.text()
            body = json.loads(text) if text else None
            return Reply(response.status, body, dict(response.headers))

    async def post(self, path: str, body: Any, **kwargs: Any) -> Reply:
        return await self.call("POST", path, json_body=body, **kwargs)

    async def get(self, path: str, **params: str) -> Reply:
        return await self.call("GET", path, params=params or None)


@contextlib.asynccontextmanager
async def serving(
    config: SandboxConfig | None = None, *, client_timeout: float = 5, **kwargs: Any
) -> AsyncIterator[tuple[Sandbox, Api]]:
    sandbox = Sandbox(config, **kwargs)
    url = await sandbox.start()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=client_timeout))
    try:
        yield sandbox, Api(session, url)
    finally:
        await session.close()
        await sandbox.stop()


def with_api(body: Callable[[Sandbox, Api], Awaitable[T]], config: SandboxConfig | None = None) -> T:
    async def main() -> T:
        async with serving(config) as (sandbox, api):
            return await body(sandbox, api)

    return run(main())


def one(email: str = "elon@example.com", **extra: Any) -> dict[str, Any]:
    """A valid POST /request body (the §4 example)."""
    return {
        "campaignId": DEMO_CAMPAIGN_ID,
        "contact": {
            "email": email,
            "firstName": "Elon",
            "lastName": "Musk",
            "company": "Tesla",
            "data": {"brand": "Tesla", "model": "Roadster"},
        },
    } | extra


# --- auth (§1) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({}, "missing Authorization"),
        ({"Authorization": basic("wrong")}, "API key is wrong"),
        ({"Authorization": basic(DEFAULT_API_KEY, user="me")}, "user name must be empty"),
        ({"Authorization": basic("", user=DEFAULT_API_KEY)}, "user name must be empty"),
        ({"Authorization": "Bearer " + DEFAULT_API_KEY}, "Basic scheme"),
    ],
)
def test_bad_credentials_are_401_and_create_nothing(headers: dict[str, str], fragment: str) -> None:
    async def body(sandbox: Sandbox, api: Api) -> None:
        reply = await api.post("/request", one(), headers=headers)
        assert reply.status == 401
        assert fragment in reply.body["message"]
        assert DEFAULT_API_KEY not in reply.body["message"]
        assert (await api.call("GET", "/team", headers=headers)).status == 401
        assert sandbox.created == []
        assert sandbox.stats["post_request"]["401"] == 1

    with_api(body)


def test_right_key_and_custom_key() -> None:
    async def body(sandbox: Sandbox, api: Api) -> None:
        assert (await api.get("/team")).status == 401  # default key refused
        reply = await api.call("GET", "/team", headers={"Authorization": basic("k-123")})
        assert reply.status == 200
        assert reply.body["tz"] == "Europe/Paris"
        assert set(reply.body) == {"_id", "tz", "name", "plan"}
        lowercase = {"Authorization": "basic " + basic("k-123").split()[1]}
        assert (await api.call("GET", "/users", headers=lowercase)).status == 200

    with_api(body, SandboxConfig(api_key="k-123"))


# --- POST /request (§4) -----------------------------------------------------------------


def test_post_request_success_shape_and_record() -> None:
    async def body(sandbox: Sandbox, api: Api) -> None:
        sent = one(dueDate="2030-01-31", items=[DEMO_ITEM_IDS["ID card"]], sendMessage=False)
        reply = await api.post("/request", sent)
        assert reply.status == 200, reply.body
        assert reply.body["errors"] == []
        request = reply.body["request"]
        assert set(request) == {
            "_id",
            "campaignId",
            "createdAt",
            "portalUrl",
            "status",
            "dueDate",
            "privacy",
            "contact",
            "contributors",
            "branding",
        }
        assert ID.fullmatch(request["_id"])
        assert ISO_Z.fullmatch(request["createdAt"])
        assert re.fullmatch(
            rf"https://app\.usecollect\.com/portal/[A-Za-z0-9]{{17}}/{request['_id']}",
            request["portalUrl"],
        )
        assert request["campaignId"] == DEMO_CAMPAIGN_ID
        assert (request["status"], request["privacy"]) == ("pending", "private")
        assert request["dueDate"] == "2030-01-31T00:00:00Z"
        assert (request["contributors"], request["branding"]) == ([], {"useBranding": False})
        contact = request["contact"]
        assert ID.fullmatch(contact["_id"])
        assert (contact["email"], contact["firstName"], contact["lastName"]) == (
            "elon@example.com",
            "Elon",
            "Musk",
        )
        assert contact["company"] == "Tesla"
        assert contact["nbRequest"] == 1
        assert ISO_Z.fullmatch(contact["createdAt"]) and ISO_Z.fullmatch(contact["lastActivity"])

        [record] = sandbox.created
        assert record["received"] == sent  # exactly what the client sent
        assert (record["_id"], record["campaignId"]) == (request["_id"], DEMO_CAMPAIGN_ID)
        assert (record["contactId"], record["email"]) == (contact["_id"], "elon@example.com")
        served = await api.session.get(sandbox.admin_url + "/requests")
        async with served:
            assert await served.json() == sandbox.created
        assert sandbox.stats["post_request"]["200"] == 1

    with_api(body)


def test_every_optional_field_accepted() -> None:
    async def body(sandbox: Sandbox, api: Api) -> None:
        sent = one(
            contact={
                "email": "full@example.com",
                "tags": ["vip"],
                "customFields": [{"variable": "plate", "value": "AB-123-CD"}],
                "data": {"brand": "Renault"},
            },
            items=[DEMO_ITEM_IDS["ID card"], DEMO_ITEM_IDS["Vehicle details"]],
            esignDocs=[{"elementId": "x", "url": "https://example.com/a.pdf", "name": "a.pdf"}],
            esignTriggers=["x"],
            data={"ref": "R-1"},
            sample={"itemId": DEMO_ITEM_IDS["ID card"], "url": "https://example.com/id.png"},
            dueDate="2030-01-31T18:00:00+01:00",
            createdBy="yvsbMv2mRPfSPuRNv",
            assignedTo="assistant@sandbox.example",
            sendMessage=True,
            sendCompletionMessage=True,
            sendRejectionMessage=False,
            sendReopenMessage=False,
        )
        reply = await api.post("/request", sent)
        assert reply.status == 200, reply.body
        assert reply.body["request"]["dueDate"] == "2030-01-31T17:00:00Z"
        assert reply.body["request"]["contact"]["tag"] == ["vip"]
        detail = await api.get(f"/requests/{reply.body['request']['_id']}")
        assert detail.body["data"] == {"brand": "Renault", "ref": "R-1"}
        assert [d["itemId"] for d in detail.body["documents"]] == [DEMO_ITEM_IDS["ID card"]]
        assert [f["itemId"] for f in detail.body["forms"]] == [DEMO_ITEM_IDS["Vehicle details"]]
        assert detail.body["texts"] == [] and detail.body["pages"] == []

    with_api(body)


# Not an element of the campaign. (An element's itemId, e.g. the ID card's
# "TMjehMxdX2LeLW8SN", is accepted like its id: the docs call items "an array of
# itemId" and do not settle which one POST /request wants, issue 10 case 7.)
UNKNOWN_ITEM = "ZZZZZZZZZZZZZZZZZ"

INVALID_SINGLE: list[tuple[Any, int, str]] = [
    ({"contact": "xtPWKQqcAk8MJfoz5"}, 400, "campaignId is required"),
    ({"campaignId": 12, "contact": "xtPWKQqcAk8MJfoz5"}, 400, "campaignId must be"),
    ({"campaignId": "nope", "contact": "xtPWKQqcAk8MJfoz5"}, 404, "campaign nope not found"),
    ({"campaignId": DEMO_CAMPAIGN_ID}, 400, "contact is required"),
    (
        {"campaignId": DEMO_CAMPAIGN_ID, "contact": "zzzzzzzzzzzzzzzzz"},
        400,
        "contact zzzzzzzzzzzzzzzzz not found",
    ),
    ({"campaignId": DEMO_CAMPAIGN_ID, "contact": 7}, 400, "contact must be a contact id"),
    ({"campaignId": DEMO_CAMPAIGN_ID, "contact": {"firstName": "A"}}, 400, "contact.email is required"),
    ({"campaignId": DEMO_CAMPAIGN_ID, "contact": {"email": "no-at-sign"}}, 400, "not an email address"),
    ({"campaignId": DEMO_CAMPAIGN_ID, "contact": {"email": " a@b.co"}}, 400, "not an email address"),
    (
        {"campaignId": DEMO_CAMPAIGN_ID, "contact": {"email": "a@b.co", "phone": "+33"}},
        400,
        "unknown field 'phone'",
    ),
    ({"campaignId": DEMO_CAMPAIGN_ID, "contact": {"email": "a@b.co", "data": []}}, 400, "contact.data"),
    ({"campaignId": DEMO_CAMPAIGN_ID, "contact": {"email": "a@b.co", "firstName": None}}, 400, "firstName"),
    (one(items=[UNKNOWN_ITEM]), 400, f"{UNKNOWN_ITEM!r} is not an element id"),
    (one(items=DEMO_ITEM_IDS["ID card"]), 400, "items must be an array"),
    (one(items=[]), 400, "items must not be empty"),
    (one(dueDate="31/01/2030"), 400, "dueDate '31/01/2030' is not an ISO 8601"),
    (one(dueDate=20300131), 400, "dueDate must be"),
    (one(sendMessage="false"), 400, "sendMessage must be a boolean"),
    (one(data="x"), 400, "data must be an object"),
    (one(sample={"itemId": DEMO_ITEM_IDS["ID card"]}), 400, "sample.url is required"),
    (one(sample={"itemId": DEMO_ITEM_IDS["Vehicle details"], "url": "u"}), 400, "not a document"),
    (one(esignDocs=["a"]), 400, "esignDocs must be an array of objects"),
    (one(esignTriggers=[1]), 400, "esignTriggers must be an array of strings"),
    (one(createdBy=""), 400, "createdBy must be"),
    (one(priority="high"), 400, "unknown field 'priority'"),
    (one(contacts=[]), 400, "POST /request takes one `contact`"),
    (["not", "an", "object"], 400, "must be a JSON object"),
]


@pytest.mark.parametrize(("sent", "status", "fragment"), INVALID_SINGLE)
def test_post_request_validation(sent: Any, status: int, fragment: str) -> None:
    async def body(sandbox: Sandbox, api: Api) -> None:
        reply = await api.post("/request", sent)
        assert (reply.status, reply.body) == (status, {"message": reply.body["message"]})
        assert fragment in reply.body["message"]
        assert sandbox.created == []
        assert sandbox.stats["post_request"][str(status)] == 1

    with_api(body)


def test_invalid_json_and_content_type() -> None:
    async def body(sandbox: Sandbox, api: Api) -> None:
        reply = await api.call("POST", "/request", data=b'{"campaignId": ')
        assert reply.status == 400 and "not valid JSON" in reply.body["message"]
        text_plain = AUTH | {"Content-Type": "text/plain"}
        reply = await api.call("POST", "/request", data=json.dumps(one()).encode(), headers=text_plain)
        assert reply.status == 400 and "Content-Type" in reply.body["message"]
        assert sandbox.created == []

    with_api(body)


def test_inline_contacts_are_found_or_created_by_exact_email() -> None:
    async def body(sandbox: Sandbox, api: Api) -> None:
        first = (await api.post("/request", one("elon@example.com"))).body["request"]["contact"]
        again = (await api.post("/request", one("elon@example.com"))).body["request"]["contact"]
        other_case = (await api.post("/request", one("Elon@example.com"))).body["request"]["contact"]
        assert again["_id"] == first["_id"]
        assert (first["nbRequest"], again["nbRequest"]) == (1, 2)
        assert other_case["_id"] != first["_id"] and other_case["nbRequest"] == 1
        by_id = await api.post("/request", one(contact=SEEDED_CONTACT_IDS["jane.smith@example.com"]))
        assert by_id.body["request"]["contact"]["email"] == "jane.smith@example.com"
        assert len({r["_id"] for r in sandbox.created}) == 4

    with_api(body)


# --- POST /requests (§5) -----------------------------------------------------------------


def batch(contacts: Any, **extra: Any) -> dict[str, Any]:
    return {"campaignId": DEMO_CAMPAIGN_ID, "contacts": contacts} | extra


def test_batch_skips_bad_contacts_and_shuffles_the_rest() -> None:
    good = [{"email": f"person{i}@example.com", "firstName": f"P{i}"} for i in range(12)]
    bad: list[Any] = [{"email": "broken"}, "zzzzzzzzzzzzzzzzz", 42]
    sent = batch([bad[0], *good[:6], bad[1], *good[6:], bad[2]])

    async def body(sandbox: Sandbox, api: Api) -> list[str]:
        reply = await api.post("/requests", sent)
        assert reply.status == 200, reply.body
        emails = [r["contact"]["email"] for r in reply.body["requests"]]
        assert sorted(emails) == sorted(g["email"] for g in good)  # matched by email
        assert emails != [g["email"] for g in good]  # but not in input order
        assert [e["contact"] for e in reply.body["errors"]] == bad  # each entry echoed
        messages = [e["message"] for e in reply.body["errors"]]
        assert "not an email address" in messages[0]
        assert "not found" in messages[1] and "contact must be" in messages[2]
        assert {r["email"] for r in sandbox.created} == {g["email"] for g in good}
        assert all(r["received"] == sent and r["endpoint"] == "/requests" for r in sandbox.created)
        assert sandbox.stats["post_requests"]["200"] == 1
        return [r["_id"] for r in reply.body["requests"]]

    # Same seed, same ids in the same shuffled order; another seed, other ids.
    assert with_api(body) == with_api(body)
    assert set(with_api(body, SandboxConfig(seed=1))).isdisjoint(with_api(body))


@pytest.mark.parametrize(
    ("sent", "fragment"),
    [
        (batch([]), "1 to 50 entries, got 0"),
        (batch([f"c{i}@example.com" for i in range(51)]), "1 to 50 entries, got 51"),
        (batch("elon@example.com"), "contacts must be an array"),
        ({"campaignId": DEMO_CAMPAIGN_ID}, "contacts is required"),
        (batch(["WmTjsFknzHdmfs3Ra"], data={"a": 1}), "`data`"),
        (batch(["WmTjsFknzHdmfs3Ra"], createdBy="yvsbMv2mRPfSPuRNv"), "createdBy"),
        (batch(["WmTjsFknzHdmfs3Ra"], esignTriggers=[]), "esignTriggers"),
        (batch(["WmTjsFknzHdmfs3Ra"], contact="WmTjsFknzHdmfs3Ra"), "takes `contacts`"),
        (batch(["WmTjsFknzHdmfs3Ra"], samples={"itemId": "a", "url": "b"}), "samples must be an array"),
        (batch(["WmTjsFknzHdmfs3Ra"], items=["nope"]), "'nope' is not an element id"),
    ],
)
def test_batch_validation(sent: dict[str, Any], fragment: str) -> None:
    async def body(sandbox: Sandbox, api: Api) -> None:
        reply = await api.post("/requests", sent)
        assert reply.status == 400
        assert fragment in reply.body["message"]
        assert sandbox.created == []

    with_api(body)


def test_batch_unknown_campaign_is_404() -> None:
    async def body(sandbox: Sandbox, api: Api) -> None:
        reply = await api.post("/requests", {"campaignId": "xyz", "contacts": ["WmTjsFknzHdmfs3Ra"]})
        assert (reply.status, reply.body) == (404, {"message": "campaign xyz not found"})

    with_api(body)


# --- faults --------------------------------------------------------------------------------


def test_fail_rate_answers_500_and_503_and_creates_nothing() -> None:
    async def body(sandbox: Sandbox, api: Api) -> None:
        statuses = [(await api.post("/request", one())).status for _ in range(20)]
        assert set(statuses) == {500, 503}
        assert sandbox.created == []
        stats = sandbox.stats["post_request"]
        assert stats["500"] + stats["503"] == 20

    with_api(body, SandboxConfig(fail_rate=1.0))


def test_unavailable_rate_answers_503_alone_and_keeps_the_other_faults_pattern() -> None:
    async def body(sandbox: Sandbox, api: Api) -> list[int]:
        return [(await api.post("/request", one())).status for _ in range(40)]

    only_503 = with_api(body, SandboxConfig(seed=7, unavailable_rate=0.3))
    assert set(only_503) == {200, 503}
    # Its band comes after the others: a seed's fail_rate pattern is unchanged by it.
    assert with_api(body, SandboxConfig(seed=7, fail_rate=0.3)) == \
        with_api(body, SandboxConfig(seed=7, fail_rate=0.3, unavailable_rate=0.0))


def test_fault_pattern_is_reproducible_from_the_seed() -> None:
    async def body(sandbox: Sandbox, api: Api) -> list[int]:
        return [(await api.post("/request", one())).status for _ in range(30)]

    first = with_api(body, SandboxConfig(seed=7, fail_rate=0.5))
    assert first == with_api(body, SandboxConfig(seed=7, fail_rate=0.5))
    assert first != with_api(body, SandboxConfig(seed=8, fail_rate=0.5))
    assert {200, 500, 503} == set(first)


def test_drop_creates_nothing_and_ambiguous_creates_but_never_answers() -> None:
    async def body(sandbox: Sandbox, api: Api) -> None:
        sandbox.set_faults(drop_rate=1.0)
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await api.post("/request", one("dropped@example.com"))
        assert sandbox.created == []

        sandbox.set_faults(drop_rate=0.0, ambiguous_rate=1.0)
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await api.post("/request", one("ambiguous@example.com"))
        [record] = sandbox.created
        assert record["email"] == "ambiguous@example.com"
        # Reconciliation (§6) finds what the lost answer would have said.
        found = await api.get("/contacts", email="ambiguous@example.com")
        detail = await api.get(f"/contacts/{found.body[0]['_id']}")
        assert [r["_id"] for r in detail.body["requests"]] == [record["_id"]]
        # An invalid POST is answered normally even when the draw says ambiguous.
        assert (await api.post("/request", one(campaignId="nope"))).status == 404

        sandbox.set_faults(ambiguous_rate=0.0)
        assert (await api.post("/request", one())).status == 200
        stats = sandbox.stats["post_request"]
        assert (stats["dropped"], stats["ambiguous"], stats["404"], stats["200"]) == (1, 1, 1, 1)

    with_api(body)


def test_slow_requests_are_created_and_outlast_the_client_timeout() -> None:
    async def main() -> None:
        config = SandboxConfig(slow_rate=1.0, slow_delay=0.6)
        async with serving(config, client_timeout=0.2) as (sandbox, api):
            with pytest.raises(asyncio.TimeoutError):
                await api.post("/request", one())
            assert len(sandbox.created) == 1
            assert sandbox.stats["post_request"]["slow"] == 1

    run(main())


def test_latency_is_added_to_every_call_and_in_flight_is_counted() -> None:
    async def body(sandbox: Sandbox, api: Api) -> None:
        started = time.monotonic()
        replies = await asyncio.gather(*(api.get("/team") for _ in range(5)))
        assert time.monotonic() - started >= 0.15
        assert {r.status for r in replies} == {200}
        stats = sandbox.stats
        assert stats["max_in_flight"] == 5 and stats["in_flight"] == 0
        assert stats["get"] == {"200": 5} and stats["gets"] == 5

    with_api(body, SandboxConfig(latency=0.15))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limit_token_bucket_with_retry_after_seconds() -> None:
    clock = FakeClock()

    async def main() -> None:
        config = SandboxConfig(rate_limit=0.25, burst=2)
        async with serving(config, clock=clock) as (sandbox, api):
            assert (await api.get("/team")).status == 200
            assert (await api.post("/request", one())).status == 200  # the burst of 2
            limited = await api.post("/request", one())
            assert limited.status == 429
            assert limited.headers["Retry-After"] == "4"  # one token per 4 s
            assert "Slow down" in limited.body["message"]
            clock.now += 1
            assert (await api.get("/team")).headers["Retry-After"] == "3"
            clock.now += 3
            assert (await api.post("/request", one())).status == 200
            stats = sandbox.stats
            assert stats["post_request"]["429"] == 1 and stats["get"]["429"] == 1
            assert len(sandbox.created) == 2

    run(main())


def test_retry_after_rounds_up_to_at_least_one_second() -> None:
    async def body(sandbox: Sandbox, api: Api) -> None:
        assert (await api.get("/team")).status == 200
        limited = await api.get("/team")
        assert (limited.status, limited.headers["Retry-After"]) == (429, "1")

    with_api(body, SandboxConfig(rate_limit=50.0))


def test_retry_after_as_http_date_or_absent() -> None:
    async def body(sandbox: Sandbox, api: Api) -> None:
        await api.get("/team")
        limited = await api.get("/team")
        assert limited.status == 429
        when = email.utils.parsedate_to_datetime(limited.headers["Retry-After"])
        assert 0 < when.timestamp() - time.time() <= 12

        sandbox.set_faults(retry_after_format="none")
        limited = await api.get("/team")
        assert limited.status == 429 and "Retry-After" not in limited.headers

    with_api(body, SandboxConfig(rate_limit=0.1, retry_after_format="http-date"))


def test_faults_change_at_run_time_through_http_and_are_validated() -> None:
    async def body(sandbox: Sandbox, api: Api) -> None:
        async def admin(path: str, payload: Any) -> tuple[int, Any]:
            async with api.session.post(sandbox.admin_url + path, json=payload) as response:
                return response.status, await response.json()

        status, faults = await admin("/faults", {"fail_rate": 1.0})
        assert status == 200 and faults["fail_rate"] == 1.0
        assert (await api.post("/request", one())).status in {500, 503}
        status, error = await admin("/faults", {"fail_rate": 2})
        assert status == 400 and "fail_rate" in error["message"]
        status, error = await admin("/faults", {"api_key": "x"})
        assert status == 400 and "not a fault setting" in error["message"]
        with pytest.raises(ValueError, match="must not exceed 1"):
            sandbox.set_faults(drop_rate=0.5)  # 1.0 + 0.5
        assert (await admin("/faults", {"fail_rate": 0}))[0] == 200
        assert (await api.post("/request", one())).status == 200
        assert (await admin("/reset", {}))[0] == 200
        assert sandbox.created == []
        assert sandbox.stats["post_request"]["200"] == 0
        assert sandbox.faults["fail_rate"] == 0

    with_api(body)


def test_config_is_validated_up_front() -> None:
    with pytest.raises(ValueError, match=r"burst must be.*retry_after_format must be"):
        Sandbox(SandboxConfig(burst=0, retry_after_format="soon"))


# --- look-ups (§6, §7) ------------------------------------------------------------------------


def test_list_requests_of_a_campaign_with_search() -> None:
    async def body(sandbox: Sandbox, api: Api) -> None:
        assert (await api.get("/requests")).status == 400
        assert (await api.get("/requests", campaignId="nope")).status == 404
        await api.post("/request", one("elon@example.com"))
        await api.post(
            "/request", one("ada@example.com", contact={"email": "ada@example.com", "lastName": "Lovelace"})
        )
        await api.post("/request", one("x@example.com", campaignId=ONBOARDING_CAMPAIGN_ID))

        every = await api.get("/requests", campaignId=DEMO_CAMPAIGN_ID)
        emails = [r["contact"]["email"] for r in every.body]
        # Most recent first, and the seeded old request is there too (§6: filter on createdAt).
        assert emails == ["ada@example.com", "elon@example.com", "maincontact@example.com"]
        for needle, expected in [
            ("LOVELACE", ["ada@example.com"]),
            ("ELON@", ["elon@example.com"]),
            ("roadster", ["elon@example.com"]),  # a data value
            ("nobody", []),
        ]:
            found = await api.get("/requests", campaignId=DEMO_CAMPAIGN_ID, search=needle)
            assert [r["contact"]["email"] for r in found.body] == expected, needle
        completed = await api.get("/requests", campaignId=DEMO_CAMPAIGN_ID, filter="completed")
        assert [r["_id"] for r in completed.body] == [SEEDED_REQUEST_ID]
        page = await api.get("/requests", campaignId=DEMO_CAMPAIGN_ID, offset="1", limit="1")
        assert [r["contact"]["email"] for r in page.body] == ["elon@example.com"]
        assert (await api.get("/requests", campaignId=DEMO_CAMPAIGN_ID, limit="101")).status == 400
        assert (await api.get("/requests/zzzzzzzzzzzzzzzzz")).status == 404

    with_api(body)


def test_contacts_lookup_by_exact_email_and_embedded_requests() -> None:
    async def body(sandbox: Sandbox, api: Api) -> None:
        grace = await api.get("/contacts", email="Grace.Hopper@Example.com")
        assert [c["_id"] for c in grace.body] == [SEEDED_CONTACT_IDS["Grace.Hopper@Example.com"]]
        assert (await api.get("/contacts", email="grace.hopper@example.com")).body == []
        assert "requests" not in grace.body[0]
        searched = await api.get("/contacts", search="HOPPER")
        assert [c["email"] for c in searched.body] == ["Grace.Hopper@Example.com"]

        ids = [
            (await api.post("/request", one("many@example.com"))).body["request"]["_id"] for _ in range(52)
        ]
        contact_id = sandbox.created[0]["contactId"]
        detail = await api.get(f"/contacts/{contact_id}")
        assert detail.body["nbRequest"] == 52
        assert [r["_id"] for r in detail.body["requests"]] == ids[::-1][:50]
        assert set(detail.body["requests"][0]) == {
            "_id",
            "campaignId",
            "createdAt",
            "status",
            "privacy",
            "branding",
        }
        assert (await api.get("/contacts/zzzzzzzzzzzzzzzzz")).body == {
            "message": "contact zzzzzzzzzzzzzzzzz not found"
        }

    with_api(body)


def test_campaigns_users_and_catalogue_constants() -> None:
    async def body(sandbox: Sandbox, api: Api) -> None:
        listed = await api.get("/campaigns")
        assert [c["_id"] for c in listed.body] == [DEMO_CAMPAIGN_ID, ONBOARDING_CAMPAIGN_ID]
        assert listed.body[0]["count"]["request"] == 1  # the seeded one
        demo = (await api.get(f"/campaigns/{DEMO_CAMPAIGN_ID}")).body
        assert demo["name"] == "Vehicle documents"
        elements = {e["name"]: e for kind in ("documents", "forms", "texts", "pages") for e in demo[kind]}
        assert {name: e["id"] for name, e in elements.items()} == DEMO_ITEM_IDS
        assert all(ID.fullmatch(i) for i in DEMO_ITEM_IDS.values())
        for document in demo["documents"]:
            assert {
                "id",
                "itemId",
                "name",
                "order",
                "visibility",
                "mandatory",
                "multipleupload",
                "extensions",
            } <= set(document)
        missing = await api.get("/campaigns/xyz")
        assert (missing.status, missing.body) == (404, {"message": "campaign xyz not found"})
        users = (await api.get("/users")).body
        assert {u["role"] for u in users} == {"admin", "member"}
        unknown = await api.get("/nothing-here")
        assert unknown.status == 404 and "no such endpoint" in unknown.body["message"]

    with_api(body)


# --- running it -----------------------------------------------------------------------------


def test_running_sandbox_in_a_thread() -> None:
    with running_sandbox(SandboxConfig(seed=3)) as sandbox:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", sandbox.url)

        async def send() -> int:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
                reply = await Api(session, sandbox.url).post("/request", one())
                return reply.status

        assert run(send()) == 200
        sandbox.set_faults(fail_rate=1.0)  # from this thread, applied on the server's loop
        assert run(send()) in {500, 503}
        created, stats = sandbox.snapshot()
        assert len(created) == 1 and stats["post_request"]["200"] == 1


@posix_signals
def test_serve_until_sigterm(tmp_path: Path) -> None:
    script = (
        "from bulksend.sandbox import SandboxConfig, serve\n"
        "serve(SandboxConfig(), '127.0.0.1', 0, lambda url: print(url, flush=True))\n"
        "print('stopped', flush=True)\n"
    )
    root = Path(__file__).resolve().parents[1]
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", url), url

        async def team() -> int:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
                return (await Api(session, url).get("/team")).status

        assert run(team()) == 200
        process.terminate()
        out, _ = process.communicate(timeout=10)
        assert process.returncode == 0
        assert out.strip() == "stopped"
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
