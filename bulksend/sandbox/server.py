"""The sandbox: a faithful local stand-in for the Collect API, with injectable faults.

It serves what bulksend uses of collect-api.md §1-7 on loopback: Basic auth (§1),
POST /request (§4) and POST /requests (§5) validated strictly, the look-ups that
reconciliation needs (§6), the read-only catalogue (§7), and PATCH /request (§7),
with requests that move through their statuses over time (``progress_rate``;
the rules are in sandbox_progress.py). Where the reference
says "not documented" (error bodies, batch partial failure, Retry-After), the
sandbox picks the least convenient plausible behaviour, so a client that works
here does not lean on luck: error bodies are ``{"message": ...}``, a batch skips
bad contacts and returns its requests in shuffled order, 429 may or may not carry
Retry-After.

Faults are drawn from the seed: one uniform draw per authenticated, admitted POST
decides its fate (see SCRIPT_FATES: 500/503, dropped, ambiguous, slow, created then
answered 5xx, a 200 that is not {request, errors: []}, a redirect, or fine). That
stream is kept apart from the one that generates ids and shuffles batches, so the
n-th POST's fate depends only on (seed, n) and not on whether earlier POSTs were
valid. A ``script`` of fates overrides the draw for the next POSTs (the draw still
happens). Beyond single POSTs, the options of issue 10 make the sandbox answer the
other ways collect-api.md allows (§6, §7, §9): embedded requests oldest first,
case-sensitive emails, a quota with a long Retry-After, look-ups it cannot answer
in the documented shape, a skewed clock, and contacts and requests that existed
before any POST (``preload``). ``SandboxConfig.strict()`` turns on the ones a run
can finish under.

Everything runs on one event loop. ``Sandbox.snapshot()`` (and the ``created`` and
``stats`` properties built on it) may be called from another thread: the copy is
then made on the sandbox's loop, so readers never see a half-updated counter.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import contextlib
import contextvars
import copy
import dataclasses
import email.utils
import hmac
import json
import math
import random
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple, TypeVar

import aiohttp
from aiohttp import web

from bulksend.sandbox import progress as sandbox_progress
from bulksend.sandbox.bodies import Invalid as _Invalid
from bulksend.sandbox.bodies import batch_shape, contact_shape_problem, single_shape
from bulksend.sandbox.bodies import page as _page
from bulksend.sandbox.bodies import parse_due_date as _parse_due_date
from bulksend.sandbox.catalogue import (
    DEMO_CAMPAIGN_ID,
    DEMO_ITEM_IDS,
    ONBOARDING_CAMPAIGN_ID,
    ONBOARDING_ITEM_IDS,
    SEEDED_CONTACT_IDS,
    SEEDED_REQUEST_ID,
    USER_IDS,
    campaigns,
    derived_id,
    new_id,
    seeded_contacts,
    seeded_request,
)
from bulksend.sandbox.catalogue import ELEMENT_KINDS as _ELEMENT_KINDS
from bulksend.sandbox.catalogue import PORTAL as _PORTAL
from bulksend.sandbox.catalogue import TEAM as _TEAM
from bulksend.sandbox.catalogue import USERS as _USERS
from bulksend.sandbox.config import (
    CREATED_FATES,
    DEFAULT_API_KEY,
    FAULT_FIELDS,
    LOOKUP_FAULTS,
    NOTHING_CREATED_FATES,
    RATE_BANDS,
    SCRIPT_FATES,
    SandboxConfig,
    config_problems,
)
from bulksend.sandbox.preload import parse_preload
from bulksend.sandbox.progress import CUSTOM_STATUSES, PatchRefused
from bulksend.sandbox.records import Contact as _Contact
from bulksend.sandbox.records import Request as _Request
from bulksend.sandbox.records import search_text as _search_text

__all__ = [
    "CUSTOM_STATUSES",
    "DEFAULT_API_KEY",
    "DEMO_CAMPAIGN_ID",
    "DEMO_ITEM_IDS",
    "LOOKUP_FAULTS",
    "ONBOARDING_CAMPAIGN_ID",
    "ONBOARDING_ITEM_IDS",
    "SCRIPT_FATES",
    "SEEDED_CONTACT_IDS",
    "SEEDED_REQUEST_ID",
    "USER_IDS",
    "Sandbox",
    "SandboxConfig",
    "SandboxSnapshot",
    "config_problems",
    "running_sandbox",
    "serve",
]

_T = TypeVar("_T")
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


_MAX_EMBEDDED_REQUESTS: Final = 50  # §6: GET /contacts/{id}
_HIDDEN_BY_DEFAULT: Final = frozenset({"cancelled", "archived", "draft"})  # §6 step 3
_CONTACT_SORTS: Final[dict[str, tuple[str, bool]]] = {  # §7 GET /contacts `sort`
    "fnAsc": ("firstName", False),
    "fnDesc": ("firstName", True),
    "lnAsc": ("lastName", False),
    "lnDesc": ("lastName", True),
    "emAsc": ("email", False),
    "emDesc": ("email", True),
    "tagAsc": ("tag", False),
    "tagDesc": ("tag", True),
}

# --- Stats ----------------------------------------------------------------------

_POST_KINDS: Final = {"/v1/request": "post_request", "/v1/requests": "post_requests"}
# Every outcome a POST is counted under (present in stats even when 0): the HTTP
# status of a normal answer, or the fate's name for a fault.
_OUTCOMES: Final = (
    "200",
    "400",
    "401",
    "404",
    "429",
    "500",
    "503",
    *(fate for fate in NOTHING_CREATED_FATES + CREATED_FATES if not fate.isdigit()),
)
class SandboxSnapshot(NamedTuple):
    """A consistent copy of what the sandbox did, safe to read from any thread."""

    created: list[dict[str, Any]]
    stats: dict[str, Any]



def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    # Error bodies are undocumented (§2); {"message": ...} is the sandbox's choice.
    return web.json_response({"message": message}, status=status, headers=headers)


def _now(skew: float = 0.0) -> str:
    # The §1 ISO form, to the second like every documented example; a client comparing
    # createdAt with its own clock (§6) must allow for that truncation, and for a
    # server clock that is off by `skew` seconds.
    return (datetime.now(UTC) + timedelta(seconds=skew)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _retry_after(seconds: float, retry_after_format: str) -> dict[str, str]:
    """A Retry-After header (RFC 9110 §10.2.3) in the chosen form, or none (§3 documents none)."""
    whole = max(0, math.ceil(seconds))
    if retry_after_format == "seconds":
        return {"Retry-After": str(whole)}
    if retry_after_format == "http-date":
        return {"Retry-After": email.utils.formatdate(math.ceil(time.time()) + whole, usegmt=True)}
    return {}


_HTML_PAGE: Final = (
    "<!DOCTYPE html>\n<html><head><title>Collect</title></head>"
    "<body><h1>Collect</h1><p>Something went wrong. Please try again.</p></body></html>\n"
)
_GATEWAY_REASONS: Final = {502: "Bad Gateway", 504: "Gateway Time-out"}
# The fate of the POST being handled, read by _create: the handler runs in the
# middleware's task, so a context variable carries it without touching the request.
_FATE: Final[contextvars.ContextVar[str]] = contextvars.ContextVar("bulksend_sandbox_fate", default="ok")
_LOOKUP_PATH: Final = re.compile(r"/v1/(requests|contacts)(/[^/]+)?")


def _gateway_page(status: int) -> str:
    """The HTML a reverse proxy answers with when the API behind it failed or was slow."""
    title = f"{status} {_GATEWAY_REASONS[status]}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )


# --- The server -------------------------------------------------------------------


class Sandbox:
    """The Collect API stand-in. Start it inside a running loop, or use running_sandbox()."""

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        config = dataclasses.replace(config) if config is not None else SandboxConfig()
        problems = config_problems(config)
        if problems:
            raise ValueError("invalid sandbox config: " + "; ".join(problems))
        config.script = list(config.script)  # consumed as POSTs arrive: our own copy
        self._config = config
        self._preloaded = parse_preload(config.preload)[0]
        self._clock = clock  # for the token bucket; tests pass a fake one
        self._expected_auth = "Basic " + base64.b64encode(f":{config.api_key}".encode()).decode()
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._reset_world()
        self._reset_counters()
        self._refill_bucket()

    # -- state ---------------------------------------------------------------------

    def _reset_world(self) -> None:
        """The seeded world: catalogue, contacts, one old request, fresh random streams."""
        seed = self._config.seed
        self._fault_rng = random.Random(seed)
        self._data_rng = random.Random(f"bulksend-sandbox-data:{seed}")
        extra = copy.deepcopy(self._config.campaigns)
        self._campaigns = {c["_id"]: c for c in [*campaigns(), *extra]}
        # §6/§9: `items` is "an array of itemId", and campaign elements carry
        # both an `id` and an `itemId`; which one POST /request wants is not
        # settled by the docs, so the sandbox takes either.
        self._elements = {
            cid: {key: kind for kind in _ELEMENT_KINDS for e in c[kind]
                  for key in (e["id"], e.get("itemId")) if key}
            for cid, c in self._campaigns.items()
        }
        self._contacts: dict[str, _Contact] = {}
        # Exact email -> contact, and casefolded email -> contacts (oldest first), so
        # case_sensitive_emails can change at run time.
        self._contacts_by_email: dict[str, _Contact] = {}
        self._contacts_by_folded: dict[str, list[_Contact]] = {}
        self._requests: dict[str, _Request] = {}
        self._by_campaign: dict[str, list[_Request]] = {cid: [] for cid in self._campaigns}
        self._created: list[dict[str, Any]] = []
        self._patches: list[dict[str, Any]] = []  # every PATCH /request applied
        self._progress_rng = random.Random(f"bulksend-sandbox-progress:{seed}")
        self._progressed_at = time.monotonic()
        for contact in seeded_contacts():
            self._add_contact(contact)
        old = seeded_request(self._contacts[SEEDED_CONTACT_IDS["maincontact@example.com"]])
        old.contact.requests.append(old)
        self._requests[old.id] = old
        self._by_campaign[DEMO_CAMPAIGN_ID].append(old)
        self._load_preload(self._preloaded)

    def _add_contact(self, contact: _Contact) -> None:
        self._contacts[contact.id] = contact
        self._contacts_by_email.setdefault(contact.email, contact)
        self._contacts_by_folded.setdefault(contact.email.casefold(), []).append(contact)

    def _contacts_with_email(self, address: str) -> list[_Contact]:
        """Contacts whose email is `address`: exactly, or case-insensitively (§6, §7)."""
        if self._config.case_sensitive_emails:
            exact = self._contacts_by_email.get(address)
            return [exact] if exact is not None else []
        return list(self._contacts_by_folded.get(address.casefold(), ()))

    def _load_preload(self, records: dict[str, list[dict[str, Any]]]) -> None:
        """Add checked preload records (_parse_preload) to the world; none is in `created`."""
        clash = [r["_id"] for kind in ("contacts", "requests") for r in records[kind]
                 if r.get("_id") and (r["_id"] in self._contacts or r["_id"] in self._requests)]
        if clash:
            raise ValueError(f"preload: _id {clash[0]} already exists in the sandbox")
        now = self._now()
        for entry in records["contacts"]:
            self._add_contact(self._preloaded_contact(entry, now))
        touched: set[str] = set()
        for entry in sorted(records["requests"], key=lambda r: r.get("createdAt") or now):
            contact = self._preload_owner(entry, now)
            created_at = entry.get("createdAt") or now
            request_id = entry.get("_id") or self._new_id()
            loaded = _Request(
                id=request_id,
                campaign_id=entry["campaignId"],
                created_at=created_at,
                portal_url=f"{_PORTAL}/{self._new_id()}/{request_id}",
                due_date=entry.get("dueDate"),
                contact=contact,
                contact_json=contact.to_json(),
                data=dict(entry.get("data", {})),
                items=None,
                status=entry["status"],
            )
            contact.nb_request += 1
            contact.last_activity = max(contact.last_activity or created_at, created_at)
            contact.requests.append(loaded)
            self._requests[request_id] = loaded
            self._by_campaign[loaded.campaign_id].append(loaded)
            touched.add(contact.id)
        for contact_id in touched:  # oldest first, wherever the preload put them
            self._contacts[contact_id].requests.sort(key=lambda r: r.created_at)
        for requests in self._by_campaign.values():
            requests.sort(key=lambda r: r.created_at)

    def _preloaded_contact(self, entry: dict[str, Any], now: str) -> _Contact:
        return _Contact(
            id=entry.get("_id") or self._new_id(),
            email=entry["email"],
            first_name=entry.get("firstName"),
            last_name=entry.get("lastName"),
            company=entry.get("company"),
            tags=[],
            custom=[
                {"_id": derived_id(entry["email"], key), "name": key, "variable": key, "value": value}
                for key, value in entry.get("data", {}).items()
            ],
            created_at=now,
        )

    def _preload_owner(self, entry: dict[str, Any], now: str) -> _Contact:
        """The contact of a preloaded request: by _id, by exact email, or a new one."""
        if "contactId" in entry:
            return self._contacts[entry["contactId"]]
        found = self._contacts_by_email.get(entry["email"])
        if found is None:
            found = self._preloaded_contact({"email": entry["email"]}, now)
            self._add_contact(found)
        return found

    def _now(self) -> str:
        return _now(self._config.clock_skew)

    def _reset_counters(self) -> None:
        self._posts: dict[str, Counter[str]] = {kind: Counter() for kind in _POST_KINDS.values()}
        self._gets: Counter[str] = Counter()
        self._others: Counter[str] = Counter()
        self._in_flight = 0
        self._max_in_flight = 0

    def _refill_bucket(self) -> None:
        self._tokens = float(self._config.burst)
        self._bucket_time = self._clock()

    def _new_id(self) -> str:
        return new_id(self._data_rng)

    # -- thread-safe inspection and control ------------------------------------------

    def _on_loop(self, fn: Callable[[], _T]) -> _T:
        """Run fn on the sandbox's loop when called from another thread; wait for it."""
        loop = self._loop
        if loop is None or not loop.is_running() or threading.get_ident() == self._loop_thread:
            return fn()
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def call() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the waiting thread
                future.set_exception(exc)

        loop.call_soon_threadsafe(call)
        return future.result(timeout=10)

    def snapshot(self) -> SandboxSnapshot:
        """Copies of the created requests and the stats, taken atomically; any thread."""
        return self._on_loop(lambda: SandboxSnapshot(self._created_copy(), self._stats_copy()))

    @property
    def created(self) -> list[dict[str, Any]]:
        """Every request created through the API, however it was answered; a copy.

        Seeded and preloaded requests are not in it. Each record: ``_id``,
        ``campaignId``, ``contactId``, ``email`` (as stored), ``endpoint``
        ("/request" or "/requests"), ``createdAt``, ``contactInput``, ``received``
        (the parsed body) and ``fate`` (a SCRIPT_FATES name; "ok": answered 200
        normally). Two records for one contact and campaign are a duplicate.
        """
        return self._on_loop(self._created_copy)

    @property
    def stats(self) -> dict[str, Any]:
        """Call counts by endpoint and outcome, and the peak concurrency; a copy.

        ``post_request`` / ``post_requests``: outcome -> count, every outcome of
        ``_OUTCOMES`` present ("200", "400", ..., "dropped", "ambiguous", "slow",
        "created-504", "refused-200", "quota-429", ...); each POST counts once,
        under its HTTP status when answered normally, else under its fate.
        ``get``: status -> count, ``gets`` their total, ``other``: status -> count
        for other /v1 calls. ``max_in_flight`` counts /v1 calls inside the server
        at once (latency and slow delays included): with no latency a handler
        never yields, so it stays near 1 whatever the client's concurrency. Set
        ``latency`` to measure a client's concurrency.
        """
        return self._on_loop(self._stats_copy)

    @property
    def faults(self) -> dict[str, Any]:
        """The current fault settings."""
        return self._on_loop(self._faults_json)

    def set_faults(self, **changes: Any) -> None:
        """Change fault settings (any SandboxConfig field but api_key and seed); any thread.

        Raises ValueError naming every problem (nothing is changed then). ``script``
        replaces what remains of the script; ``preload`` adds its records now and
        replaces the preload that reset() rebuilds.
        """
        self._on_loop(lambda: self._apply_faults(changes))

    def set_request_status(self, request_id: str, status: str) -> None:
        """Move one request to ``status`` (as a person would in the Collect app:
        cancel, archive, complete it); any thread. Raises KeyError for an unknown id."""

        def change() -> None:
            self._requests[request_id].status = status

        self._on_loop(change)

    @property
    def patches(self) -> list[dict[str, Any]]:
        """Every PATCH /request the sandbox applied, in order; a copy. Each record:
        ``requestId``, ``received`` (the body as sent), ``before`` and ``after``
        (the status, list spelling), ``messages`` (those the change triggered:
        "completion", "reopen") and ``at``. A refused PATCH is not in it."""
        return self._on_loop(lambda: [dict(p) for p in self._patches])

    def reset(self) -> None:
        """Back to the seeded world plus the current preload (fault settings, and what
        remains of the script, kept); any thread."""
        self._on_loop(self._reset)

    def _created_copy(self) -> list[dict[str, Any]]:
        return [dict(record) for record in self._created]

    def _stats_copy(self) -> dict[str, Any]:
        return {
            "post_request": _with_all_outcomes(self._posts["post_request"]),
            "post_requests": _with_all_outcomes(self._posts["post_requests"]),
            "get": dict(self._gets),
            "gets": sum(self._gets.values()),
            "other": dict(self._others),
            "created": len(self._created),
            "in_flight": self._in_flight,
            "max_in_flight": self._max_in_flight,
        }

    def _faults_json(self) -> dict[str, Any]:
        faults = {name: getattr(self._config, name) for name in sorted(FAULT_FIELDS)}
        faults["script"] = list(self._config.script)  # what remains of it
        return faults

    def _apply_faults(self, changes: dict[str, Any]) -> None:
        unknown = sorted(set(changes) - FAULT_FIELDS)
        if unknown:
            raise ValueError(
                f"not a fault setting: {', '.join(unknown)} (settable: {', '.join(sorted(FAULT_FIELDS))})"
            )
        updated = dataclasses.replace(self._config, **changes)
        problems = config_problems(updated)
        if problems:
            raise ValueError("; ".join(problems))
        updated.script = list(updated.script)
        if "preload" in changes:
            # New records join the world at once (and at every reset); records an
            # earlier preload added stay until the next reset.
            preloaded = parse_preload(updated.preload)[0]
            self._load_preload(preloaded)
            self._preloaded = preloaded
        bucket_changed = (updated.rate_limit, updated.burst) != (
            self._config.rate_limit,
            self._config.burst,
        )
        if updated.progress_rate != self._config.progress_rate:
            self._advance()  # the time so far moves requests at the old rate
        self._config = updated
        if bucket_changed:
            self._refill_bucket()

    def _reset(self) -> None:
        self._reset_world()
        self._reset_counters()
        self._refill_bucket()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on host:port (0: any free port); return the base URL ending in /v1."""
        if self._runner is not None:
            raise RuntimeError("the sandbox is already running")
        # Bodies may carry base64 e-sign documents of up to 20 MB (§3).
        app = web.Application(middlewares=[self._middleware()], client_max_size=32 * 1024**2)
        self._add_routes(app)
        # No access log: the benchmark measures the client against this server (§ brief).
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port, backlog=1024)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        bound_port = runner.addresses[0][1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{bound_port}/v1"
        self._refill_bucket()
        return self.url

    @property
    def admin_url(self) -> str:
        """Base URL of the inspection endpoints (/_sandbox), which need no auth."""
        return self.url.removesuffix("/v1") + "/_sandbox"

    async def stop(self) -> None:
        """Close the listener and every connection; calls in progress are cancelled."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self._loop = None
        self._loop_thread = None

    # -- HTTP --------------------------------------------------------------------------

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/request", self._post_request)
        app.router.add_post("/v1/requests", self._post_requests)
        app.router.add_get("/v1/requests", self._list_requests)
        app.router.add_get("/v1/requests/{id}", self._get_request)
        app.router.add_patch("/v1/request", self._patch_request)
        app.router.add_get("/v1/contacts", self._list_contacts)
        app.router.add_get("/v1/contacts/{id}", self._get_contact)
        app.router.add_get("/v1/campaigns", self._list_campaigns)
        app.router.add_get("/v1/campaigns/{id}", self._get_campaign)
        app.router.add_get("/v1/team", self._get_team)
        app.router.add_get("/v1/users", self._get_users)
        app.router.add_get("/_sandbox/requests", self._admin_requests)
        app.router.add_get("/_sandbox/stats", self._admin_stats)
        app.router.add_get("/_sandbox/patches", self._admin_patches)
        app.router.add_get("/_sandbox/faults", self._admin_get_faults)
        app.router.add_post("/_sandbox/faults", self._admin_set_faults)
        app.router.add_post("/_sandbox/reset", self._admin_reset)

    def _middleware(self) -> Any:
        @web.middleware
        async def gate(request: web.Request, handler: _Handler) -> web.StreamResponse:
            if not request.path.startswith("/v1/"):
                return await handler(request)  # /_sandbox: no auth, no faults, not counted
            kind = _POST_KINDS.get(request.path) if request.method == "POST" else None
            if kind is not None:
                counts = self._posts[kind]
            else:
                counts = self._gets if request.method == "GET" else self._others
            self._in_flight += 1
            if self._in_flight > self._max_in_flight:
                self._max_in_flight = self._in_flight
            try:
                return await self._v1_call(request, handler, kind is not None, counts)
            finally:
                self._in_flight -= 1

        return gate

    async def _v1_call(
        self, request: web.Request, handler: _Handler, creates: bool, counts: Counter[str]
    ) -> web.StreamResponse:
        """Latency, rate limit, auth, then faults (POST /request(s) only), then the handler.

        The outcome is counted as soon as it is known, so a test that gave up waiting
        for a slow answer still sees it in the stats.
        """
        config = self._config
        if config.latency > 0:
            await asyncio.sleep(config.latency)
        if config.rate_limit is not None:
            wait = self._take_token(config.rate_limit, config.burst)
            if wait > 0:
                counts["429"] += 1
                return self._too_many(wait, config.retry_after_format)
        if request.headers.get("Authorization") != self._expected_auth:
            problem = self._auth_problem(request.headers.get("Authorization"))
            if problem is not None:
                counts["401"] += 1
                return _error(401, problem, {"WWW-Authenticate": 'Basic realm="Collect"'})
        if not creates:
            response = await self._look_up(handler, request, config.lookup_fault)
            counts[str(response.status)] += 1
            return response
        fate = self._draw_fate(config)
        if config.quota_after is not None and len(self._created) >= config.quota_after:
            fate = "quota-429"  # a quota, not a rate: it does not wear off by itself
        _FATE.set(fate)  # _create records it with each request created (same task)
        early = self._answer_unprocessed(request, fate, config)
        if early is not None:
            counts[fate] += 1
            return early
        response = await self._call(handler, request)
        if fate == "ok" or response.status != 200:
            # Faults after processing only apply to successful creations.
            counts[str(response.status)] += 1
            return response
        counts[fate] += 1
        return await self._answer_processed(request, response, fate, config)

    def _answer_unprocessed(
        self, request: web.Request, fate: str, config: SandboxConfig
    ) -> web.StreamResponse | None:
        """The answer of a fate that creates nothing (_NOTHING_CREATED_FATES), else None."""
        endpoint = request.path.removeprefix("/v1")
        if fate == "500":
            return _error(500, "Internal Server Error: try again later (sandbox fault)")
        if fate == "503":
            return _error(503, "Service Unavailable: try again later (sandbox fault)")
        if fate == "401":
            return _error(401, "Unauthorized: the API key is wrong (sandbox fault)",
                          {"WWW-Authenticate": 'Basic realm="Collect"'})
        if fate == "quota-429":
            headers = _retry_after(config.quota_retry_after, config.retry_after_format)
            return _error(429, "Too Many Requests: request quota reached (sandbox fault)", headers)
        if fate in ("redirect-302", "redirect-307"):
            status = int(fate.removeprefix("redirect-"))
            location = config.redirect_to.rstrip("/") + endpoint
            return web.Response(status=status, text=f"Moved: {location}\n", headers={"Location": location})
        if fate == "refused-200":
            key = "request" if endpoint == "/request" else "requests"
            refused: dict[str, Any] = {key: None if key == "request" else []}
            refused["errors"] = [{"message": "The request could not be sent (sandbox fault)"}]
            return web.json_response(refused)
        if fate == "dropped":
            _drop_connection(request)
            return web.Response(status=500)  # never written: the transport is closed
        return None

    async def _answer_processed(
        self, request: web.Request, response: web.StreamResponse, fate: str, config: SandboxConfig
    ) -> web.StreamResponse:
        """The answer of a fate met after the requests were created (_CREATED_FATES)."""
        if fate == "ambiguous":
            _drop_connection(request)
            return response
        if fate == "slow":
            await asyncio.sleep(config.slow_delay)
            return response
        if fate == "created-500":
            return _error(500, "Internal Server Error: try again later (sandbox fault)")
        if fate in ("created-502", "created-504"):
            status = int(fate.removeprefix("created-"))
            return web.Response(status=status, text=_gateway_page(status), content_type="text/html")
        if fate == "empty-200":
            return web.json_response({})
        if fate == "html-200":
            return web.Response(text=_HTML_PAGE, content_type="text/html")
        # warned-200: the documented shape with the request(s), and errors not empty.
        assert isinstance(response, web.Response) and isinstance(response.body, bytes)
        answer = json.loads(response.body)
        warning = {"message": "Some messages could not be scheduled (sandbox fault)"}
        answer["errors"] = [*answer.get("errors", []), warning]
        return web.json_response(answer)

    async def _look_up(
        self, handler: _Handler, request: web.Request, fault: str | None
    ) -> web.StreamResponse:
        """A GET or other call that creates nothing; `lookup_fault` applies to §6 look-ups."""
        if fault is None or request.method != "GET" or not _LOOKUP_PATH.fullmatch(request.path):
            return await self._call(handler, request)
        if fault == "html":
            return web.Response(text=_HTML_PAGE, content_type="text/html")
        if fault == "404":
            return _error(404, "Not Found: the specified object could not be found (sandbox fault)")
        if fault == "500":
            return _error(500, "Internal Server Error: try again later (sandbox fault)")
        response = await self._call(handler, request)  # "object": the data, wrapped
        if response.status != 200 or not isinstance(response, web.Response):
            return response
        assert isinstance(response.body, bytes)
        return web.json_response({"data": json.loads(response.body)})

    @staticmethod
    async def _call(handler: _Handler, request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except _Invalid as exc:
            return _error(exc.status, exc.message)
        except web.HTTPException as exc:  # aiohttp's own 404/405/413: answer with JSON too
            if exc.status == 404:
                return _error(404, f"no such endpoint: {request.method} {request.path}")
            if exc.status == 405:
                return _error(405, f"method {request.method} not allowed on {request.path}")
            return _error(exc.status, exc.text or exc.reason)

    def _take_token(self, rate: float, burst: int) -> float:
        """0 when a token was taken, else the seconds until one is available."""
        now = self._clock()
        tokens = min(float(burst), self._tokens + (now - self._bucket_time) * rate)
        self._bucket_time = now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return 0.0
        self._tokens = tokens
        return (1.0 - tokens) / rate

    @staticmethod
    def _too_many(wait: float, retry_after_format: str) -> web.Response:
        headers = _retry_after(max(1, math.ceil(wait)), retry_after_format)
        return _error(429, "Too Many Requests: requesting too many objects! Slow down! (§2)", headers)

    def _auth_problem(self, header: str | None) -> str | None:
        # §1: Basic with an empty user name and the API key as password.
        if header is None:
            return (
                "missing Authorization header: use HTTP Basic with an empty user name "
                "and the API key as password"
            )
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "basic":
            return "Authorization must use the Basic scheme (empty user name, API key as password)"
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return "Authorization Basic credentials are not valid base64"
        user, colon, password = decoded.partition(":")
        if not colon:
            return "Authorization Basic credentials must be ':' followed by the API key"
        if user:
            return "the user name must be empty: send ':' followed by the API key"
        if not hmac.compare_digest(password.encode(), self._config.api_key.encode()):
            return "the API key is wrong"
        return None

    def _draw_fate(self, config: SandboxConfig) -> str:
        """The fate of one POST: the script's next entry if any, else the draw's.

        Always one draw, whatever the rates and the script, so changing faults at run
        time does not shift the pattern for later POSTs. Within a band the position
        of the draw picks the fate (500 in the lower half of fail_rate, 503 above).
        """
        u = self._fault_rng.random()
        scripted = config.script.pop(0) if config.script else None
        fate = "ok"
        for name, fates in RATE_BANDS:
            rate = getattr(config, name)
            if u < rate:
                fate = fates[min(int(u / rate * len(fates)), len(fates) - 1)]
                break
            u -= rate
        return scripted or fate

    @staticmethod
    async def _read_json(request: web.Request) -> dict[str, Any]:
        if request.content_type != "application/json":
            raise _Invalid(400, f"Content-Type must be application/json, got {request.content_type!r}")
        try:
            raw = await request.read()
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            # The client went away before its body arrived (killed, timed out):
            # nothing was received, so nothing is created; no traceback in the log.
            raise _Invalid(400, "the connection was lost before the body arrived") from None
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _Invalid(400, f"the body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise _Invalid(400, "the body must be a JSON object")
        return body

    # -- POST /request and POST /requests (§4, §5) -------------------------------------

    async def _post_request(self, request: web.Request) -> web.Response:
        body = await self._read_json(request)
        campaign_id, entry, due_date = single_shape(body)
        # Shape is fine; now what the ids refer to.
        self._check_references(body, campaign_id)
        if "sample" in body:
            self._check_sample_item(body["sample"], campaign_id, "sample")
        contact_problem = self._contact_reference_problem(entry)
        if contact_problem is not None:
            raise _Invalid(400, contact_problem)
        created = self._create(body, campaign_id, entry, due_date, "/request", _FATE.get())
        return web.json_response({"request": created.to_json(), "errors": []})

    async def _post_requests(self, request: web.Request) -> web.Response:
        body = await self._read_json(request)
        campaign_id, contacts, due_date = batch_shape(body)
        self._check_references(body, campaign_id)
        for index, sample in enumerate(body.get("samples", ())):
            self._check_sample_item(sample, campaign_id, f"samples[{index}]")
        # §5 leaves partial failure undocumented: the sandbox skips bad contacts and
        # reports each in `errors`, echoing the entry so a client can match it.
        requests: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for entry in contacts:
            problem = contact_shape_problem(entry) or self._contact_reference_problem(entry)
            if problem is not None:
                errors.append({"contact": entry, "message": problem})
                continue
            created = self._create(body, campaign_id, entry, due_date, "/requests", _FATE.get())
            requests.append(created.to_json())
        # Nor is the order of `requests` documented (§5): shuffle it so no client can
        # depend on position; match on contact._id / contact.email instead.
        self._data_rng.shuffle(requests)
        return web.json_response({"requests": requests, "errors": errors})

    def _check_references(self, body: dict[str, Any], campaign_id: str) -> None:
        if campaign_id not in self._campaigns:
            raise _Invalid(404, f"campaign {campaign_id} not found")
        elements = self._elements[campaign_id]
        for item in body.get("items", ()):
            if item not in elements:
                raise _Invalid(
                    400,
                    f"items: {item!r} is not an element id or itemId of campaign {campaign_id} "
                    f"(see GET /campaigns/{campaign_id})",
                )

    def _check_sample_item(self, sample: dict[str, Any], campaign_id: str, where: str) -> None:
        if self._elements[campaign_id].get(sample["itemId"]) != "documents":
            raise _Invalid(
                400,
                f"{where}.itemId {sample['itemId']!r} is not a document element of campaign {campaign_id}",
            )

    def _contact_reference_problem(self, entry: object) -> str | None:
        if isinstance(entry, str) and entry not in self._contacts:
            return f"contact {entry} not found"
        return None

    def _find_or_create_contact(self, entry: str | dict[str, Any], now: str) -> _Contact:
        if isinstance(entry, str):
            return self._contacts[entry]
        address: str = entry["email"]
        # Exact, case-sensitive as §6 documents GET /contacts?email=; or, when
        # case_sensitive_emails is off, the oldest contact whose email differs only in case.
        matching = self._contacts_with_email(address)
        if matching:
            return matching[0]
        contact = _Contact(
            id=self._new_id(),
            email=address,
            first_name=entry.get("firstName"),
            last_name=entry.get("lastName"),
            company=entry.get("company"),
            tags=list(entry.get("tags", entry.get("tag", []))),
            custom=[
                {
                    "_id": custom.get("_id") or self._new_id(),
                    "name": custom.get("name", custom["variable"]),
                    "variable": custom["variable"],
                    "value": custom.get("value"),
                }
                for custom in entry.get("customFields", [])
            ],
            created_at=now,
        )
        self._add_contact(contact)
        return contact

    def _create(
        self,
        body: dict[str, Any],
        campaign_id: str,
        entry: str | dict[str, Any],
        due_date: str | None,
        endpoint: str,
        fate: str,
    ) -> _Request:
        now = self._now()
        contact = self._find_or_create_contact(entry, now)
        contact.nb_request += 1  # §3: every send counts, even to the same contact
        contact.last_activity = now
        request_id = self._new_id()
        data: dict[str, Any] = {}
        if isinstance(entry, dict):
            data.update(entry.get("data", {}))
        data.update(body.get("data", {}))
        created = _Request(
            id=request_id,
            campaign_id=campaign_id,
            created_at=now,
            portal_url=f"{_PORTAL}/{self._new_id()}/{request_id}",
            due_date=due_date,
            contact=contact,
            contact_json=contact.to_json(),
            data=data,
            items=list(body["items"]) if "items" in body else None,
        )
        contact.requests.append(created)
        self._requests[request_id] = created
        self._by_campaign[campaign_id].append(created)
        self._created.append(
            {
                "_id": request_id,
                "campaignId": campaign_id,
                "contactId": contact.id,
                "email": contact.email,
                "endpoint": endpoint,
                "createdAt": now,
                "contactInput": entry,
                "received": body,  # the parsed body, exactly as the client sent it
                "fate": fate,  # how the POST was answered: a SCRIPT_FATES name ("ok": normally)
            }
        )
        return created

    # -- look-ups (§6, §7) -------------------------------------------------------------

    async def _list_requests(self, request: web.Request) -> web.Response:
        query = request.query
        campaign_id = query.get("campaignId")
        if not campaign_id:
            raise _Invalid(400, "campaignId query parameter is required")
        if campaign_id not in self._campaigns:
            raise _Invalid(404, f"campaign {campaign_id} not found")
        offset, limit = _page(query)
        self._advance()
        status = query.get("filter")
        search = query.get("search", "").casefold()
        rows: list[dict[str, Any]] = []
        skipped = 0
        for found in reversed(self._by_campaign[campaign_id]):  # most recent first
            if status is not None and status != "" and found.status != status:
                continue
            if not status and found.status in _HIDDEN_BY_DEFAULT:
                continue
            if search and not any(search in text.casefold() for text in _search_text(found)):
                continue
            if skipped < offset:
                skipped += 1
                continue
            rows.append(found.to_json(found.contact.to_json()) | {"data": dict(found.data)})
            if len(rows) == limit:
                break
        return web.json_response(rows)

    async def _get_request(self, request: web.Request) -> web.Response:
        request_id = request.match_info["id"]
        self._advance()
        found = self._requests.get(request_id)
        if found is None:
            raise _Invalid(404, f"request {request_id} not found")
        detail = found.to_json(found.contact.to_json())
        detail["data"] = dict(found.data)
        campaign = self._campaigns[found.campaign_id]
        wanted = None if found.items is None else set(found.items)
        # §7: each element of a request has its own id and an itemId pointing back to
        # the campaign element.
        for kind in _ELEMENT_KINDS:
            elements = []
            for element in campaign[kind]:
                if wanted is not None and element["id"] not in wanted and element.get("itemId") not in wanted:
                    continue
                own = dict(element, id=derived_id(found.id, element["id"]), itemId=element["id"])
                own["status"] = "open"
                if kind == "documents":
                    own["uploads"] = []
                elements.append(own)
            detail[kind] = elements
        return web.json_response(detail)

    async def _patch_request(self, request: web.Request) -> web.Response:
        """PATCH /request (§7): change one request's status, due date, data or
        assignee; answers ``{errors: [], request}``. Checked by sandbox_progress."""
        body = await self._read_json(request)
        users = {u["email"]: u["_id"] for u in _USERS}
        try:
            changes = sandbox_progress.patch_changes(body, users, _parse_due_date)
        except PatchRefused as exc:
            raise _Invalid(400, str(exc)) from None
        self._advance()
        found = self._requests.get(body["requestId"])
        if found is None:
            raise _Invalid(404, f"request {body['requestId']} not found")
        before = found.status
        found.status = changes.get("status", found.status)
        found.due_date = changes.get("dueDate", found.due_date)
        found.data.update(changes.get("data", {}))
        found.assigned_to = changes.get("assignedTo", found.assigned_to)
        self._patches.append({
            "requestId": found.id, "received": body, "before": before, "after": found.status,
            "messages": sandbox_progress.messages_sent(body, before, found.status), "at": self._now(),
        })
        answer = found.to_json(found.contact.to_json()) | {"data": dict(found.data)}
        return web.json_response({"errors": [], "request": answer})

    def _advance(self) -> None:
        """Move requests on by the time since the last call (``progress_rate``)."""
        now = time.monotonic()
        elapsed, self._progressed_at = now - self._progressed_at, now
        rate = self._config.progress_rate
        if rate > 0:
            sandbox_progress.advance(self._requests.values(), self._progress_rng, rate, elapsed)

    async def _list_contacts(self, request: web.Request) -> web.Response:
        query = request.query
        offset, limit = _page(query)
        found: list[_Contact] = list(self._contacts.values())
        if "email" in query:  # §6: exact and case-sensitive (unless case_sensitive_emails is off)
            found = self._contacts_with_email(query["email"])
        for param, attribute in (("firstname", "first_name"), ("lastname", "last_name")):
            if param in query:  # §7: exact, not case-sensitive
                wanted = query[param].casefold()
                found = [c for c in found if (getattr(c, attribute) or "").casefold() == wanted]
        search = query.get("search", "").casefold()
        if search:
            found = [
                c
                for c in found
                if any(
                    search in text.casefold()
                    for text in (
                        c.email,
                        c.first_name or "",
                        c.last_name or "",
                        *(str(custom.get("value")) for custom in c.custom),
                    )
                )
            ]
        rows = [c.to_json() for c in found]
        if "sort" in query:
            if query["sort"] not in _CONTACT_SORTS:
                raise _Invalid(400, f"sort must be one of {', '.join(_CONTACT_SORTS)}, got {query['sort']!r}")
            key, descending = _CONTACT_SORTS[query["sort"]]
            rows.sort(key=lambda row: str(row[key] or "").casefold(), reverse=descending)
        return web.json_response(rows[offset : offset + limit])

    async def _get_contact(self, request: web.Request) -> web.Response:
        contact_id = request.match_info["id"]
        contact = self._contacts.get(contact_id)
        if contact is None:
            raise _Invalid(404, f"contact {contact_id} not found")
        self._advance()
        detail = contact.to_json()
        # §6: at most 50 requests embedded. The docs' example lists them oldest first,
        # so for a contact with more than 50 the newest are then not there at all.
        if self._config.embedded_order == "oldest":
            embedded = contact.requests[:_MAX_EMBEDDED_REQUESTS]
        else:
            embedded = contact.requests[::-1][:_MAX_EMBEDDED_REQUESTS]
        detail["requests"] = [
            {
                "_id": r.id,
                "campaignId": r.campaign_id,
                "createdAt": r.created_at,
                "status": r.status,
                "privacy": r.privacy,
                "branding": {"useBranding": False},
            }
            for r in embedded
        ]
        return web.json_response(detail)

    async def _list_campaigns(self, request: web.Request) -> web.Response:
        offset, limit = _page(request.query)
        rows = []
        for campaign in list(self._campaigns.values())[offset : offset + limit]:
            requests = self._by_campaign[campaign["_id"]]
            pending = sum(1 for r in requests if r.status == "pending")
            done = sum(1 for r in requests if r.status == "completed")
            rows.append(
                {
                    "_id": campaign["_id"],
                    "name": campaign["name"],
                    "createdAt": campaign["createdAt"],
                    "status": campaign["status"],
                    "count": {
                        "request": len(requests),
                        "open": pending,
                        "done": done,
                        "due": 0,
                        "waiting": 0,
                        "error": 0,
                        "message": 0,
                    },
                }
            )
        return web.json_response(rows)

    async def _get_campaign(self, request: web.Request) -> web.Response:
        campaign_id = request.match_info["id"]
        campaign = self._campaigns.get(campaign_id)
        if campaign is None:
            raise _Invalid(404, f"campaign {campaign_id} not found")
        return web.json_response(campaign)

    async def _get_team(self, request: web.Request) -> web.Response:
        return web.json_response({**_TEAM, "tz": self._config.team_tz})

    async def _get_users(self, request: web.Request) -> web.Response:
        return web.json_response(_USERS)

    # -- /_sandbox: inspection and control, no auth --------------------------------------

    async def _admin_requests(self, request: web.Request) -> web.Response:
        return web.json_response(self._created_copy())

    async def _admin_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self._stats_copy())

    async def _admin_patches(self, request: web.Request) -> web.Response:
        return web.json_response([dict(p) for p in self._patches])

    async def _admin_get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self._faults_json())

    async def _admin_set_faults(self, request: web.Request) -> web.Response:
        try:
            body = await self._read_json(request)
            self._apply_faults(body)
        except _Invalid as exc:
            return _error(exc.status, exc.message)
        except (ValueError, TypeError) as exc:
            return _error(400, str(exc))
        return web.json_response(self._faults_json())

    async def _admin_reset(self, request: web.Request) -> web.Response:
        self._reset()
        return web.json_response({"reset": True})


def _with_all_outcomes(counts: Counter[str]) -> dict[str, int]:
    # Every documented outcome present (0 when it never happened), then any other status.
    return {outcome: counts.get(outcome, 0) for outcome in _OUTCOMES} | dict(counts)


def _drop_connection(request: web.Request) -> None:
    # Close the socket without writing anything: the client sees a disconnection
    # and cannot tell whether the request was processed. aiohttp then fails to write
    # the handler's response and treats it as a client disconnection (no log).
    transport = request.transport
    if transport is not None:
        transport.close()


# --- Running it -----------------------------------------------------------------------


@contextlib.contextmanager
def running_sandbox(config: SandboxConfig | None = None) -> Iterator[Sandbox]:
    """Run a sandbox on its own loop in a daemon thread on 127.0.0.1, any free port.

    Yields the started sandbox (``url`` set) and stops it on exit. For synchronous
    tests and for tests that run the CLI as a subprocess. ``snapshot()``,
    ``created``, ``stats``, ``set_faults()`` and ``reset()`` are safe to call from
    the caller's thread.
    """
    sandbox = Sandbox(config)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            try:
                loop.run_until_complete(sandbox.start())
            except BaseException as exc:  # handed to the caller's thread
                failure.append(exc)
                return
            finally:
                ready.set()
            loop.run_forever()
        finally:
            _close_loop(loop)

    thread = threading.Thread(target=run, name="bulksend-sandbox", daemon=True)
    thread.start()
    if not ready.wait(timeout=10):
        raise RuntimeError("the sandbox did not start within 10 s")
    if failure:
        thread.join(timeout=10)
        raise failure[0]
    try:
        yield sandbox
    finally:
        stopping = asyncio.run_coroutine_threadsafe(sandbox.stop(), loop)
        try:
            stopping.result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


def serve(config: SandboxConfig, host: str, port: int, on_ready: Callable[[str], None]) -> None:
    """Run a sandbox until Ctrl-C or SIGTERM, calling on_ready(url) once it listens.

    Blocking; returns normally on either signal. ``bulksend sandbox`` calls this.
    """

    async def main() -> None:
        sandbox = Sandbox(config)
        url = await sandbox.start(host, port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, stop.set)
            except (NotImplementedError, RuntimeError, ValueError):
                continue  # not the main thread, or a platform without it: Ctrl-C still ends it
            installed.append(signum)
        try:
            on_ready(url)
            await stop.wait()
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)
            await sandbox.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
