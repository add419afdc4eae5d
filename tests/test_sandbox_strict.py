"""The sandbox's documented-worst behaviours (issue 10, "The sandbox").

Each option is shown against the running sandbox (aiohttp on 127.0.0.1, port 0):
what it answered, and what it created (``Sandbox.created``, which holds every
request created through the API, whatever the answer said).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from bulksend.sandbox import (
    DEFAULT_API_KEY,
    DEMO_CAMPAIGN_ID,
    LOOKUP_FAULTS,
    SCRIPT_FATES,
    SEEDED_CONTACT_IDS,
    Sandbox,
    SandboxConfig,
    config_problems,
)

T = TypeVar("T")
AUTH = {"Authorization": "Basic " + base64.b64encode(f":{DEFAULT_API_KEY}".encode()).decode()}
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Reply:
    status: int
    text: str
    headers: dict[str, str]

    @property
    def body(self) -> Any:
        return json.loads(self.text)

    @property
    def is_html(self) -> bool:
        return self.headers.get("Content-Type", "").startswith("text/html") and "<html" in self.text


@dataclass
class Api:
    session: aiohttp.ClientSession
    url: str  # ends with /v1

    async def call(self, method: str, path: str, body: Any = None, **params: str) -> Reply:
        async with self.session.request(
            method, self.url + path, json=body, headers=AUTH, params=params or None, allow_redirects=False
        ) as response:
            return Reply(response.status, await response.text(), dict(response.headers))

    async def post(self, path: str, body: Any) -> Reply:
        return await self.call("POST", path, body)

    async def get(self, path: str, **params: str) -> Reply:
        return await self.call("GET", path, **params)


@contextlib.asynccontextmanager
async def serving(config: SandboxConfig | None = None) -> AsyncIterator[tuple[Sandbox, Api]]:
    sandbox = Sandbox(config)
    url = await sandbox.start()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
    try:
        yield sandbox, Api(session, url)
    finally:
        await session.close()
        await sandbox.stop()


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 10))


def with_api(body: Callable[[Sandbox, Api], Awaitable[T]], config: SandboxConfig | None = None) -> T:
    async def main() -> T:
        async with serving(config) as (sandbox, api):
            return await body(sandbox, api)

    return run(main())


def one(email: str = "a@example.com", **extra: Any) -> dict[str, Any]:
    return {"campaignId": DEMO_CAMPAIGN_ID, "contact": {"email": email, "firstName": "A"}} | extra


def batch(*emails: str) -> dict[str, Any]:
    return {"campaignId": DEMO_CAMPAIGN_ID, "contacts": [{"email": e} for e in emails]}


# --- 5xx after creation (§9) ----------------------------------------------------------------


def test_created_5xx_creates_then_answers_500_502_504() -> None:
    async def body(sandbox: Sandbox, api: Api) -> None:
        sandbox.set_faults(script=["created-500", "created-502", "created-504", "created-504"])
        replies = [await api.post("/request", one(f"{n}@example.com")) for n in "abc"]
        assert [r.status for r in replies] == [500, 502, 504]
        assert "message" in replies[0].body  # the API's own JSON error
        assert replies[1].is_html and "502 Bad Gateway" in replies[1].text  # a gateway's page
        assert replies[2].is_html and "504 Gateway Time-out" in replies[2].text
        batch_reply = await api.post("/requests", batch("d@example.com", "e@example.com"))
        assert batch_reply.status == 504
        # Every one of them was created, and the record says how it was answered.
        assert [(r["email"], r["fate"]) for r in sandbox.created] == [
            ("a@example.com", "created-500"),
            ("b@example.com", "created-502"),
            ("c@example.com", "created-504"),
            ("d@example.com", "created-504"),
            ("e@example.com", "created-504"),
        ]
        stats = sandbox.stats
        assert (stats["post_request"]["created-502"], stats["post_requests"]["created-504"]) == (1, 1)

    with_api(body)


def test_created_5xx_rate_draws_all_three_statuses_reproducibly() -> None:
    async def body(sandbox: Sandbox, api: Api) -> list[int]:
        statuses = [(await api.post("/request", one())).status for _ in range(12)]
        assert len(sandbox.created) == 12  # all created, none answered 200
        return statuses

    first = with_api(body, SandboxConfig(seed=4, created_5xx_rate=1.0))
    assert set(first) == {500, 502, 504}
    assert first == with_api(body, SandboxConfig(seed=4, created_5xx_rate=1.0))


# --- 200s that are not {request, errors: []} (§9) ------------------------------------------


def test_odd_200s_on_post_request() -> None:
    async def body(sandbox: Sandbox, api: Api) -> None:
        sandbox.set_faults(script=["refused-200", "empty-200", "html-200", "warned-200"])
        refused = await api.post("/request", one("refused@example.com"))
        empty = await api.post("/request", one("empty@example.com"))
        html = await api.post("/request", one("html@example.com"))
        warned = await api.post("/request", one("warned@example.com"))
        assert {r.status for r in (refused, empty, html, warned)} == {200}
        assert refused.body["request"] is None
        assert re.fullmatch(r".+ \(sandbox fault\)", refused.body["errors"][0]["message"])
        assert empty.body == {}
        assert html.is_html
        assert warned.body["request"]["contact"]["email"] == "warned@example.com"
        assert warned.body["errors"] and warned.body["errors"][0]["message"]
        # refused-200 created nothing; the three others did.
        created = sandbox.created
        assert [r["email"] for r in created] == [
            "empty@example.com",
            "html@example.com",
            "warned@example.com",
        ]
        assert warned.body["request"]["_id"] == created[2]["_id"]

    with_api(body)


def test_odd_200s_on_post_requests() -> None:
    async def body(sandbox: Sandbox, api: Api) -> None:
        sandbox.set_faults(script=["refused-200", "empty-200", "html-200", "warned-200"])
        refused = await api.post("/requests", batch("r1@example.com", "r2@example.com"))
        empty = await api.post("/requests", batch("e1@example.com"))
        html = await api.post("/requests", batch("h1@example.com"))
        warned = await api.post("/requests", batch("w1@example.com", "w2@example.com"))
        assert refused.body["requests"] == [] and refused.body["errors"]
        assert empty.body == {} and html.is_html
        assert sorted(r["contact"]["email"] for r in warned.body["requests"]) == [
            "w1@example.com",
            "w2@example.com",
        ]
        assert warned.body["errors"]
        assert sorted(r["email"] for r in sandbox.created) == [
            "e1@example.com",
            "h1@example.com",
            "w1@example.com",
            "w2@example.com",
        ]

    with_api(body)


def test_odd_200_rate_draws_the_four_kinds() -> None:
    async def body(sandbox: Sandbox, api: Api) -> None:
        for _ in range(16):
            await api.post("/request", one())
        stats = sandbox.stats["post_request"]
        kinds = ("refused-200", "empty-200", "html-200", "warned-200")
        assert all(stats[kind] > 0 for kind in kinds) and sum(stats[k] for k in kinds) == 16
        assert len(sandbox.created) == 16 - stats["refused-200"]

    with_api(body, SandboxConfig(seed=1, odd_200_rate=1.0))


# --- the script ----------------------------------------------------------------------------


def test_script_is_consumed_in_order_and_keeps_the_random_draw() -> None:
    async def statuses(sandbox: Sandbox, api: Api) -> list[int]:
        return [(await api.post("/request", one())).status for _ in range(12)]

    plain = with_api(statuses, SandboxConfig(seed=7, fail_rate=0.5))
    scripted = with_api(statuses, SandboxConfig(seed=7, fail_rate=0.5, script=["503", "quota-429", "401"]))
    assert scripted[:3] == [503, 429, 401]
    assert scripted[3:] == plain[3:]  # the draw still happened once per scripted POST
    assert set(plain) == {200, 500, 503}


def test_script_through_set_faults_and_the_admin_endpoint() -> None:
    async def body(sandbox: Sandbox, api: Api) -> None:
        sandbox.set_faults(script=["ok", "503", "ok"])
        assert (await api.post("/request", one())).status == 200
        assert sandbox.faults["script"] == ["503", "ok"]  # what remains
        async with api.session.post(sandbox.admin_url + "/faults", json={"script": ["created-500"]}) as resp:
            assert resp.status == 200 and (await resp.json())["script"] == ["created-500"]
        assert (await api.post("/request", one())).status == 500  # the new script replaced the old
        assert (await api.post("/request", one())).status == 200  # then the (zero) rates
        assert [r["fate"] for r in sandbox.created] == ["ok", "created-500", "ok"]
        async with api.session.post(sandbox.admin_url + "/faults", json={"script": ["soon"]}) as resp:
            assert resp.status == 400 and "unknown fate 'soon'" in (await resp.json())["message"]
        with pytest.raises(ValueError, match="unknown fate"):
            sandbox.set_faults(script=["ok", "teapot"])

    with_api(body)


def test_scripted_fates_that_create_nothing() -> None:
    async def body(sandbox: Sandbox, api: Api) -> None:
        fates = ["500", "503", "401", "quota-429", "refused-200"]
        sandbox.set_faults(script=fates)
        statuses = [(await api.post("/request", one())).status for _ in fates]
        assert statuses == [500, 503, 401, 429, 200]
        sandbox.set_faults(script=["dropped", "ambiguous"])
        for _ in range(2):
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await api.post("/request", one("lost@example.com"))
        assert [r["fate"] for r in sandbox.created] == ["ambiguous"]  # dropped: before processing

    with_api(body)


# --- redirects ------------------------------------------------------------------------------


def test_redirects_point_elsewhere_and_create_nothing() -> None:
    async def main() -> None:
        async with (
            serving() as (elsewhere, _),
            serving(
                SandboxConfig(
                    redirect_to=elsewhere.url, script=["redirect-302", "redirect-307", "redirect-307"]
                )
            ) as (sandbox, api),
        ):
            found = await api.post("/request", one())
            temporary = await api.post("/request", one())
            batch_reply = await api.post("/requests", batch("b@example.com"))
            assert (found.status, temporary.status, batch_reply.status) == (302, 307, 307)
            assert found.headers["Location"] == elsewhere.url + "/request"
            assert batch_reply.headers["Location"] == elsewhere.url + "/requests"
            assert sandbox.created == [] and elsewhere.created == []
            sandbox.set_faults(redirect_rate=1.0)
            assert (await api.post("/request", one())).status in {302, 307}

    run(main())
    assert any("redirect_to must be set" in p for p in config_problems(SandboxConfig(redirect_rate=0.1)))
    assert any(
        "redirect_to must be set" in p for p in config_problems(SandboxConfig(script=["redirect-302"]))
    )


# --- GET /contacts/{id}: at most 50, in either order (§6) --------------------------------------


@pytest.mark.parametrize("order", ["oldest", "newest"])
def test_embedded_requests_capped_at_50_in_either_order(order: str) -> None:
    async def body(sandbox: Sandbox, api: Api) -> None:
        ids = [
            (await api.post("/request", one("many@example.com"))).body["request"]["_id"] for _ in range(55)
        ]
        contact_id = sandbox.created[0]["contactId"]
        detail = (await api.get(f"/contacts/{contact_id}")).body
        embedded = [r["_id"] for r in detail["requests"]]
        assert detail["nbRequest"] == 55 and len(embedded) == 50
        if order == "oldest":
            assert embedded == ids[:50]  # the 5 newest are not there at all
            assert ids[-1] not in embedded
        else:
            assert embedded == ids[::-1][:50]

    with_api(body, SandboxConfig(embedded_order=order))


# --- email case (§6, §7) -----------------------------------------------------------------------


def test_case_sensitive_emails_is_the_default_and_makes_a_second_contact() -> None:
    async def body(sandbox: Sandbox, api: Api) -> None:
        seeded = SEEDED_CONTACT_IDS["Grace.Hopper@Example.com"]
        lower = (await api.post("/request", one("grace.hopper@example.com"))).body["request"]["contact"]
        same = (await api.post("/request", one("Grace.Hopper@Example.com"))).body["request"]["contact"]
        assert lower["_id"] != seeded and lower["email"] == "grace.hopper@example.com"
        assert same["_id"] == seeded
        found = (await api.get("/contacts", email="GRACE.HOPPER@EXAMPLE.COM")).body
        assert found == []

    assert SandboxConfig().case_sensitive_emails is True
    with_api(body)


def test_case_insensitive_emails_match_the_existing_contact() -> None:
    async def body(sandbox: Sandbox, api: Api) -> None:
        seeded = SEEDED_CONTACT_IDS["Grace.Hopper@Example.com"]
        contact = (await api.post("/request", one("grace.hopper@example.com"))).body["request"]["contact"]
        assert contact["_id"] == seeded and contact["email"] == "Grace.Hopper@Example.com"  # kept as stored
        found = (await api.get("/contacts", email="GRACE.hopper@example.com")).body
        assert [c["_id"] for c in found] == [seeded]
        sandbox.set_faults(case_sensitive_emails=True)  # and back, at run time
        assert (await api.get("/contacts", email="grace.hopper@example.com")).body == []

    with_api(body, SandboxConfig(case_sensitive_emails=False))


# --- quota (§2 429, no Retry-After documented: the worst is a long one) --------------------------


def test_quota_answers_429_with_a_long_retry_after_and_creates_nothing() -> None:
    async def body(sandbox: Sandbox, api: Api) -> None:
        assert [(await api.post("/request", one())).status for _ in range(2)] == [200, 200]
        refused = await api.post("/request", one())
        assert refused.status == 429 and refused.headers["Retry-After"] == "3600"
        batch_refused = await api.post("/requests", batch("x@example.com"))
        assert batch_refused.status == 429 and batch_refused.headers["Retry-After"] == "3600"
        assert len(sandbox.created) == 2
        assert sandbox.stats["post_request"]["quota-429"] == 1
        sandbox.set_faults(quota_after=None, quota_retry_after=86400, script=["quota-429"])
        one_off = await api.post("/request", one())
        assert (one_off.status, one_off.headers["Retry-After"]) == (429, "86400")
        assert (await api.post("/request", one())).status == 200  # the script's 429 was for one POST
        assert len(sandbox.created) == 3

    with_api(body, SandboxConfig(quota_after=2))


# --- look-ups that cannot be understood ----------------------------------------------------------


@pytest.mark.parametrize("fault", LOOKUP_FAULTS)
def test_lookup_fault_applies_to_every_lookup(fault: str) -> None:
    async def body(sandbox: Sandbox, api: Api) -> None:
        created = (await api.post("/request", one())).body["request"]  # POSTs are not affected
        sandbox.set_faults(lookup_fault=fault)
        lookups = [
            await api.get("/requests", campaignId=DEMO_CAMPAIGN_ID, search="a@example.com"),
            await api.get("/requests/" + created["_id"]),
            await api.get("/contacts", email="a@example.com"),
            await api.get("/contacts/" + created["contact"]["_id"]),
        ]
        for reply in lookups:
            if fault == "html":
                assert reply.status == 200 and reply.is_html
            elif fault == "object":
                assert reply.status == 200 and set(reply.body) == {"data"}
            else:
                assert reply.status == int(fault) and "message" in reply.body
        if fault == "object":
            assert isinstance(lookups[0].body["data"], list) and isinstance(lookups[3].body["data"], dict)
        # Preflight's calls still work.
        assert (await api.get("/campaigns/" + DEMO_CAMPAIGN_ID)).status == 200
        assert (await api.get("/team")).status == 200

    with_api(body)


# --- clock skew -----------------------------------------------------------------------------------


def test_clock_skew_moves_created_at() -> None:
    async def body(sandbox: Sandbox, api: Api) -> None:
        request = (await api.post("/request", one())).body["request"]
        stamp = datetime.strptime(request["createdAt"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        behind = (datetime.now(UTC) - stamp).total_seconds()
        assert 595 <= behind <= 610
        listed = (await api.get("/requests", campaignId=DEMO_CAMPAIGN_ID, search="a@example.com")).body
        assert listed[0]["createdAt"] == request["createdAt"]

    with_api(body, SandboxConfig(clock_skew=-600))


# --- preload ---------------------------------------------------------------------------------------

PRELOAD: dict[str, Any] = {
    "contacts": [
        {
            "_id": "PreLoadedContact1",
            "email": "Ann.Lee@Example.com",
            "firstName": "Ann",
            "data": {"ref": "K-77"},
        },
    ],
    "requests": [
        {
            "_id": "PreLoadedRequest1",
            "campaignId": DEMO_CAMPAIGN_ID,
            "contactId": "PreLoadedContact1",
            "status": "cancelled",
            "createdAt": "2024-03-01 10:00:00 UTC",
            "dueDate": "2024-03-31T21:59:00Z",
        },
        {
            "campaignId": DEMO_CAMPAIGN_ID,
            "email": "bob@example.com",
            "status": "pending",
            "createdAt": "2024-03-02T10:00:00Z",
            "data": {"order": "X-123"},
        },
    ],
}


def test_preload_is_seen_by_every_lookup_but_not_created() -> None:
    async def body(sandbox: Sandbox, api: Api) -> None:
        assert sandbox.created == []
        listed = (await api.get("/requests", campaignId=DEMO_CAMPAIGN_ID)).body
        emails = [r["contact"]["email"] for r in listed]
        assert "bob@example.com" in emails and "Ann.Lee@Example.com" not in emails  # cancelled: hidden
        cancelled = (await api.get("/requests", campaignId=DEMO_CAMPAIGN_ID, filter="cancelled")).body
        assert [(r["_id"], r["contact"]["email"], r["dueDate"]) for r in cancelled] == [
            ("PreLoadedRequest1", "Ann.Lee@Example.com", "2024-03-31T21:59:00Z")
        ]
        ann = (await api.get("/contacts", email="Ann.Lee@Example.com")).body
        assert [c["_id"] for c in ann] == ["PreLoadedContact1"]
        detail = (await api.get("/contacts/PreLoadedContact1")).body
        assert [(r["_id"], r["status"], r["createdAt"]) for r in detail["requests"]] == [
            ("PreLoadedRequest1", "cancelled", "2024-03-01T10:00:00Z")
        ]
        assert (await api.get("/requests/PreLoadedRequest1")).body["status"] == "cancelled"
        # Searching the contact's custom data finds the cancelled request when asked for.
        found = (
            await api.get("/requests", campaignId=DEMO_CAMPAIGN_ID, search="k-77", filter="cancelled")
        ).body
        assert [r["_id"] for r in found] == ["PreLoadedRequest1"]
        # A POST to the preloaded contact uses it; reset brings the preload back.
        posted = (await api.post("/request", one("Ann.Lee@Example.com"))).body["request"]
        assert posted["contact"]["_id"] == "PreLoadedContact1" and posted["contact"]["nbRequest"] == 2
        sandbox.reset()
        assert sandbox.created == []
        assert (await api.get("/contacts/PreLoadedContact1")).body["nbRequest"] == 1

    with_api(body, SandboxConfig(preload=PRELOAD))


def test_a_lost_answer_for_a_contact_with_60_earlier_requests_is_not_embedded() -> None:
    # Issue 10 case 3: oldest first and capped at 50, the newest request cannot be seen
    # through GET /contacts/{id}; GET /requests?search= (paged) still lists it.
    earlier = [{"campaignId": DEMO_CAMPAIGN_ID, "email": "busy@example.com"} for _ in range(60)]

    async def body(sandbox: Sandbox, api: Api) -> None:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await api.post("/request", one("busy@example.com"))
        [lost] = sandbox.created
        contact = (await api.get("/contacts", email="busy@example.com")).body[0]
        detail = (await api.get(f"/contacts/{contact['_id']}")).body
        assert detail["nbRequest"] == 61 and len(detail["requests"]) == 50
        assert lost["_id"] not in {r["_id"] for r in detail["requests"]}
        pages = [
            (await api.get("/requests", campaignId=DEMO_CAMPAIGN_ID, search="busy@", offset=str(o))).body
            for o in (0, 50)
        ]
        assert [len(p) for p in pages] == [50, 11] and pages[0][0]["_id"] == lost["_id"]

    config = SandboxConfig(embedded_order="oldest", script=["ambiguous"], preload={"requests": earlier})
    with_api(body, config)


def test_preload_from_a_file_and_at_run_time(tmp_path: Path) -> None:
    path = tmp_path / "existing.json"
    path.write_text(json.dumps(PRELOAD), encoding="utf-8")

    async def body(sandbox: Sandbox, api: Api) -> None:
        assert (await api.get("/requests/PreLoadedRequest1")).status == 200
        sandbox.set_faults(
            preload={"requests": [{"campaignId": DEMO_CAMPAIGN_ID, "email": "late@example.com"}]}
        )
        late = (await api.get("/requests", campaignId=DEMO_CAMPAIGN_ID, search="late@")).body
        assert [(r["contact"]["email"], r["status"]) for r in late] == [("late@example.com", "pending")]
        assert sandbox.created == []

    with_api(body, SandboxConfig(preload=str(path)))


def test_preload_problems_name_the_file_and_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps(
            {
                "requests": [
                    {"campaignId": DEMO_CAMPAIGN_ID, "email": "ok@example.com"},
                    {"campaignId": "nope", "contactId": "ghost", "createdAt": "yesterday"},
                ]
            }
        ),
        encoding="utf-8",
    )
    problems = config_problems(SandboxConfig(preload=str(path)))
    assert any(p.startswith(f"{path}: requests[1].campaignId 'nope'") for p in problems), problems
    assert any("requests[1].contactId 'ghost'" in p for p in problems), problems
    assert any("requests[1].createdAt 'yesterday'" in p for p in problems), problems
    assert not any("requests[0]" in p for p in problems)
    assert config_problems(SandboxConfig(preload={"contacts": [{"mail": "x"}]})) == [
        "preload: contacts[0]: unknown field 'mail' "
        "(allowed: _id, company, data, email, firstName, lastName)",
        "preload: contacts[0].email None is not an email address",
    ]
    with pytest.raises(ValueError, match="preload"):
        Sandbox(SandboxConfig(preload=str(tmp_path / "missing.json")))


# --- GET /requests as documented (§6.3, §7) ---------------------------------------------------------


def test_list_requests_paged_substring_search_hidden_statuses() -> None:
    async def body(sandbox: Sandbox, api: Api) -> None:
        for n in range(120):
            await api.post("/request", one(f"user{n:03d}@Example.com", data={"ref": f"R{n:03d}"}))
        first = (await api.get("/requests", campaignId=DEMO_CAMPAIGN_ID, search="EXAMPLE.com")).body
        assert len(first) == 50  # default limit
        pages = [
            (
                await api.get(
                    "/requests",
                    campaignId=DEMO_CAMPAIGN_ID,
                    search="example.COM",
                    limit="100",
                    offset=str(offset),
                )
            ).body
            for offset in (0, 100)
        ]
        assert [len(p) for p in pages] == [100, 21]  # 120 + the seeded maincontact@example.com
        assert len({r["_id"] for p in pages for r in p}) == 121
        assert (await api.get("/requests", campaignId=DEMO_CAMPAIGN_ID, limit="101")).status == 400
        row = (await api.get("/requests", campaignId=DEMO_CAMPAIGN_ID, search="r007")).body
        assert [r["contact"]["email"] for r in row] == ["user007@Example.com"]  # custom data, as stored
        assert {"_id", "dueDate", "createdAt", "status", "portalUrl", "campaignId", "data", "contact"} <= set(
            row[0]
        )
        assert row[0]["data"] == {"ref": "R007"} and row[0]["contact"]["_id"]
        substring = (await api.get("/requests", campaignId=DEMO_CAMPAIGN_ID, search="user00")).body
        assert len(substring) == 10

    with_api(body)


def test_due_date_is_the_same_in_the_answer_and_every_lookup() -> None:
    async def body(sandbox: Sandbox, api: Api) -> None:
        answer = (await api.post("/request", one(dueDate="2030-07-11T23:59:00+02:00"))).body["request"]
        listed = (await api.get("/requests", campaignId=DEMO_CAMPAIGN_ID, search="a@example.com")).body
        detail = (await api.get("/requests/" + answer["_id"])).body
        assert answer["dueDate"] == listed[0]["dueDate"] == detail["dueDate"] == "2030-07-11T21:59:00Z"

    with_api(body)


# --- the strict profile ---------------------------------------------------------------------------


def test_strict_profile_turns_on_the_worst_that_still_lets_a_run_finish() -> None:
    strict = SandboxConfig.strict(seed=3)
    assert (strict.embedded_order, strict.case_sensitive_emails) == ("oldest", True)
    assert strict.created_5xx_rate > 0 and strict.odd_200_rate > 0
    assert strict.ambiguous_rate > 0 and strict.drop_rate > 0 and strict.fail_rate > 0
    assert (strict.quota_after, strict.lookup_fault, strict.redirect_rate) == (None, None, 0)
    assert config_problems(strict) == []

    async def body(sandbox: Sandbox, api: Api) -> None:
        answered_200 = 0
        for n in range(300):
            try:
                reply = await api.post("/request", one(f"p{n}@example.com"))
            except aiohttp.ClientError:
                continue
            answered_200 += reply.status == 200 and reply.text.startswith('{"request": {')
        fates = {r["fate"] for r in sandbox.created}
        assert "ambiguous" in fates
        assert fates & {"created-500", "created-502", "created-504"}
        assert fates & {"empty-200", "html-200", "warned-200"}
        stats = sandbox.stats["post_request"]
        assert stats["500"] + stats["503"] > 0 and stats["dropped"] > 0
        assert 200 < answered_200 < 300  # most of a run still goes through

    with_api(body, strict)


def test_cli_strict_profile_and_options(tmp_path: Path) -> None:
    preload = tmp_path / "existing.json"
    preload.write_text(json.dumps(PRELOAD), encoding="utf-8")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bulksend",
            "sandbox",
            "--port",
            "0",
            "--strict",
            "--odd-200-rate",
            "0.1",
            "--script",
            "created-504,ok",
            "--preload",
            str(preload),
            "--clock-skew",
            "-600",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/v1", line)
        assert line.startswith("sandbox (strict) listening") and url, line

        async def faults() -> dict[str, Any]:
            admin = url.group().removesuffix("/v1") + "/_sandbox/faults"
            timeout = aiohttp.ClientTimeout(total=5)
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(admin) as response:
                return dict(await response.json())

        got = run(faults())
        assert (got["embedded_order"], got["case_sensitive_emails"], got["created_5xx_rate"]) == (
            "oldest",
            True,
            0.03,
        )
        assert (got["odd_200_rate"], got["script"], got["clock_skew"]) == (0.1, ["created-504", "ok"], -600)
        assert got["preload"] == str(preload)
    finally:
        process.terminate()
        process.communicate(timeout=10)


def test_cli_rejects_a_bad_sandbox_config_in_one_line(tmp_path: Path) -> None:
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "bulksend",
            "sandbox",
            "--port",
            "0",
            "--script",
            "ok,teapot",
            "--preload",
            str(tmp_path / "missing.json"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2 and bad.stdout == ""
    first, hint = bad.stderr.splitlines()
    assert first.startswith("bulksend: error: sandbox: script: unknown fate 'teapot'")
    assert "missing.json: cannot be read" in first and hint.startswith("hint: see bulksend sandbox --help")


def test_every_script_fate_is_documented_in_help() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "bulksend", "sandbox", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={"COLUMNS": "120", "PATH": ""},
    ).stdout
    for fate in SCRIPT_FATES:
        assert re.search(rf"^\s+{re.escape(fate)}\b", shown, re.MULTILINE), fate
    assert "--strict turns on" in shown and '"contacts"' in shown
