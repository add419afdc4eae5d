"""Sending: the rate gate, the HTTP client, reconciliation and the worker pool.

Every request a run makes (POSTs, their retries, and the look-ups that settle
unknown rows) passes one shared gate. A fixed pool of workers reads a bounded
queue fed by the reader, so memory does not grow with the file.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import email.utils
import json
import random
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
import yarl

from bulksend import __version__
from bulksend.errors import AuthError
from bulksend.outcome import FAILED, SENT, UNKNOWN, Outcome
from bulksend.progress import Progress
from bulksend.rategate import RateGate as RateGate  # re-exported: run.py, reconciling.py, tests
from bulksend.results import Journal, utc_now

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

RETRYABLE = frozenset({500, 502, 503, 504})
FINAL = frozenset({400, 403, 404, 405, 409, 410, 413, 415, 422})
MAX_THROTTLED = 200  # 429s one row may meet before it is given up as failed


# ---------------------------------------------------------------------------
# The rate gate (bulksend.rategate, re-exported here) and Retry-After
# ---------------------------------------------------------------------------


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Retry-After as seconds (``120``) or an HTTP-date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


# ---------------------------------------------------------------------------
# The HTTP client
# ---------------------------------------------------------------------------


class NotSent(Exception):
    """The request never reached the server (connection refused, DNS...): safe to retry."""


class Ambiguous(Exception):
    """The request may have reached the server but its answer was lost."""


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs 3x (one per answer)
class Answer:
    status: int
    body: Any
    retry_after: float | None


def auth_header(api_key: str) -> str:
    # collect-api.md §1: Basic, empty user name, the key as password. Built by
    # hand: aiohttp 3.14 deprecates BasicAuth and auth=.
    return "Basic " + base64.b64encode(b":" + api_key.encode()).decode("ascii")


def key_refused() -> AuthError:
    """A 401 ends the run at once (collect-api.md §2: the API key is wrong)."""
    return AuthError(
        "the API key was refused (HTTP 401); nothing more is sent",
        hint="check COLLECT_API_KEY or --api-key-file, then rerun the same command",
    )


def error_text(answer: Answer) -> str:
    """One line a person can act on, from an error answer (its body is undocumented)."""
    body = answer.body
    message = ""
    if isinstance(body, dict):
        for name in ("message", "error", "errors", "detail"):
            if body.get(name):
                message = body[name] if isinstance(body[name], str) else json.dumps(body[name])
                break
    elif isinstance(body, str):
        message = body
    message = " ".join(str(message).split())[:300]
    return f"HTTP {answer.status}: {message}" if message else f"HTTP {answer.status}"


# json.dumps(body, ensure_ascii=False) builds a new JSONEncoder on every call;
# one made once gives the same text ~25 % faster (2.0 -> 1.5 µs for a bench body).
_encode_json = json.JSONEncoder(ensure_ascii=False).encode

_decode_json = json.JSONDecoder().decode


def _parse_json(raw: bytes) -> Any:
    """``json.loads(raw)``. A body opening with ``{`` or ``[`` and no NUL after
    it is UTF-8 by json.loads' own detection (no BOM, not UTF-16/32), so it is
    decoded as such directly: 2.5 instead of 3.1 µs for a POST answer."""
    if raw[:1] in (b"{", b"[") and raw[1:2] != b"\x00":
        return _decode_json(raw.decode("utf-8"))
    return json.loads(raw)


_malloc_tuned = False


def tune_malloc() -> None:
    """Keep each answer's read buffer off mmap (glibc; elsewhere nothing changes).

    asyncio reads a socket with ``recv(256 KiB)`` (over TLS, ``read(256 KiB)``):
    a 256 KiB buffer per answer, then shrunk to the answer's size. Above glibc's
    mmap threshold (128 KiB until a larger mapped block happens to be freed),
    that is an mmap, an mremap, a munmap and a page fault for every answer:
    ~15 µs of system time per row, about a tenth of the client's CPU. From the
    heap it is a few pointer updates. These are the values glibc's own dynamic
    threshold settles on after freeing a 1 MiB block."""
    global _malloc_tuned
    if _malloc_tuned or not sys.platform.startswith("linux"):
        return
    _malloc_tuned = True
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(-1, 2 << 20)  # M_TRIM_THRESHOLD: give memory back above 2 MiB of free heap top
    mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD: blocks under 1 MiB come from the heap


class Client:
    """A thin aiohttp client for the Collect API. The key lives in one header and
    nowhere else: it is never part of a message, an exception or a repr."""

    def __init__(self, api_url: str, api_key: str, *, timeout: float, concurrency: int) -> None:
        self.base = api_url.rstrip("/")
        self._headers = {
            "Authorization": auth_header(api_key),
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"bulksend/{__version__}",
        }
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.concurrency = concurrency
        self.session: aiohttp.ClientSession | None = None
        # The POST URLs, parsed once: aiohttp would otherwise parse the URL
        # string on every request (a visible share of a fast run).
        self._post_urls = {path: yarl.URL(self.base + path) for path in ("/request", "/requests")}

    def __repr__(self) -> str:
        return f"Client({self.base!r})"

    async def __aenter__(self) -> Client:
        tune_malloc()
        connector = aiohttp.TCPConnector(limit=self.concurrency + 4, ttl_dns_cache=300)
        self.session = aiohttp.ClientSession(
            connector=connector, headers=self._headers, timeout=self.timeout,
            json_serialize=json.dumps,
            # The API sets no cookies we need; skipping the jar saves work per answer.
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()

    async def call(self, method: str, path: str, body: Any = None,
                   params: dict[str, str] | None = None) -> Answer:
        assert self.session is not None
        data = None if body is None else _encode_json(body).encode()
        try:
            url = self._post_urls.get(path) or yarl.URL(self.base + path)
            async with self.session.request(method, url, data=data, params=params) as resp:
                raw = await resp.read()
                status = resp.status
                retry_after = (
                    parse_retry_after(resp.headers.get("Retry-After")) if status in (429, 503) else None
                )
        except aiohttp.ClientConnectorError as exc:
            raise NotSent(f"cannot connect to {self.base}: {exc.os_error.strerror or exc}") from None
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise Ambiguous(f"no answer within {self.timeout.total:g}s") from None
        except aiohttp.ClientError as exc:
            # ServerDisconnectedError, ClientOSError (reset), ClientPayloadError:
            # the body may have been written and processed.
            raise Ambiguous(f"connection lost: {type(exc).__name__}") from None
        try:
            parsed: Any = _parse_json(raw) if raw else None
        except ValueError:  # UnicodeDecodeError included
            parsed = raw.decode("utf-8", "replace")
        return Answer(status, parsed, retry_after)


# ---------------------------------------------------------------------------
# Reconciliation (collect-api.md §6)
# ---------------------------------------------------------------------------


def parse_time(text: str) -> dt.datetime | None:
    """Collect timestamps come as ``2022-07-04 07:20:06 UTC`` or ISO 8601 (§1)."""
    if not text:
        return None
    t = text.strip().replace(" UTC", "Z")
    if t.endswith("Z"):
        t = t[:-1] + "+00:00"
    try:
        when = dt.datetime.fromisoformat(t)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


# A request created up to this long before our first attempt is not ours
# (clock skew between this machine and the server).
SKEW = dt.timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class Found:
    request_id: str
    portal_url: str
    contact_id: str
    created_at: str


async def look_up(client: Client, gate: RateGate, payload: dict[str, Any], since: str) -> Found | None:
    """Was a request for this payload's contact and campaign created since ``since``?

    Raises Ambiguous/NotSent when the look-up itself cannot be made."""
    campaign = str(payload.get("campaignId", ""))
    contact = payload.get("contact")
    after = parse_time(since)
    floor = (after - SKEW) if after else None

    def recent(created: str) -> bool:
        when = parse_time(created)
        return floor is None or when is None or when >= floor

    for _ in range(20):
        await gate.acquire()
        if isinstance(contact, str):
            answer = await client.call("GET", f"/contacts/{contact}")
        else:
            email_addr = str((contact or {}).get("email", ""))
            answer = await client.call(
                "GET", "/requests",
                params={"campaignId": campaign, "search": email_addr, "limit": "100"},
            )
        if answer.status == 429:
            gate.throttled(gate.clock(), answer.retry_after)
            continue
        if answer.status == 401:
            raise key_refused()
        if answer.status == 404:
            return None
        if answer.status != 200:
            raise Ambiguous(f"look-up failed: {error_text(answer)}")
        break
    else:
        raise Ambiguous("look-up kept being rate limited")

    if isinstance(contact, str):
        body = answer.body if isinstance(answer.body, dict) else {}
        matches = [
            r for r in body.get("requests", []) or []
            if isinstance(r, dict) and r.get("campaignId") == campaign and recent(str(r.get("createdAt", "")))
        ]
        contact_id = contact
    else:
        wanted = str((contact or {}).get("email", "")).lower()
        rows = answer.body if isinstance(answer.body, list) else []
        matches = [
            r for r in rows
            if isinstance(r, dict)
            and str((r.get("contact") or {}).get("email", "")).lower() == wanted
            and r.get("campaignId", campaign) == campaign
            and recent(str(r.get("createdAt", "")))
        ]
        contact_id = ""
    if not matches:
        return None
    first = min(matches, key=lambda r: str(r.get("createdAt", "")))
    return Found(
        request_id=str(first.get("_id", "")),
        portal_url=str(first.get("portalUrl", "")),
        contact_id=contact_id or str((first.get("contact") or {}).get("_id", "")),
        created_at=str(first.get("createdAt", "")),
    )


# ---------------------------------------------------------------------------
# One row, from its first attempt to its outcome
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Policy:
    max_attempts: int = 5
    max_row_time: float = 300.0  # seconds one row may spend retrying
    backoff_base: float = 0.5
    backoff_cap: float = 30.0


@dataclass(slots=True)
class Job:
    outcome: Outcome  # row, key and values set; filled in as the row goes
    payload: dict[str, Any]
    reconcile_since: str | None = None  # set: the row may already exist on the server
    previous: str = "pending"  # its journal status before this run queued it
    # The feeder already wrote the first attempt's write-ahead mark (when it
    # queued the row, in one commit with its neighbours): the first POST needs
    # no mark of its own, only the commit.
    marked: bool = False


class Sender:
    """Sends one row at a time for a worker; shared by all workers of a run."""

    def __init__(self, client: Client, gate: RateGate, journal: Journal | None,
                 policy: Policy, progress: Progress, *, clock: Clock = time.monotonic,
                 sleep: Sleep = asyncio.sleep, rng: random.Random | None = None) -> None:
        self.client = client
        self.gate = gate
        self.journal = journal
        self.policy = policy
        self.progress = progress
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.posts = 0

    def backoff(self, failures: int) -> float:
        # Exponential with full jitter (AWS architecture blog): spreads the
        # retries of many workers instead of synchronising them.
        ceiling = min(self.policy.backoff_cap, self.policy.backoff_base * 2 ** (failures - 1))
        return self.rng.uniform(ceiling / 2, ceiling)

    def _sent(self, job: Job, found: Found | Answer) -> None:
        o = job.outcome
        o.status = SENT
        o.error = ""
        if isinstance(found, Found):
            o.request_id, o.portal_url, o.contact_id = found.request_id, found.portal_url, found.contact_id
            o.sent_at = _iso(found.created_at) or utc_now()
        else:
            body = found.body if isinstance(found.body, dict) else {}
            request = body.get("request") or {}
            o.request_id = str(request.get("_id", ""))
            o.portal_url = str(request.get("portalUrl", ""))
            o.contact_id = str((request.get("contact") or {}).get("_id", ""))
            o.sent_at = utc_now()
            o.http_status = found.status

    async def settle(self, job: Job, since: str) -> bool:
        """Look the row up; True when it is settled as sent."""
        for failures in range(1, self.policy.max_attempts + 1):
            try:
                found = await look_up(self.client, self.gate, job.payload, since)
            except (Ambiguous, NotSent) as exc:
                job.outcome.error = f"could not check whether it was created: {exc}"
                await self.sleep(self.backoff(failures))
                continue
            if found is not None:
                self._sent(job, found)
                self.progress.event("reconciled", f"row {job.outcome.row}: found on the server, not resent",
                                    row=job.outcome.row)
                return True
            return False
        job.outcome.status = UNKNOWN
        return True  # settled as unknown: never resend blindly

    async def run(self, job: Job) -> Outcome:
        o = job.outcome
        journal = self.journal
        if job.reconcile_since is not None and await self.settle(job, job.reconcile_since):
            return o
        started = self.clock()
        failures = 0
        throttled = 0
        while True:
            if failures >= self.policy.max_attempts or self.clock() - started > self.policy.max_row_time:
                o.status = FAILED
                o.error = f"{o.error} (gave up after {failures} attempts)" if o.error else "gave up"
                return o
            if throttled >= MAX_THROTTLED:
                o.status = FAILED
                o.error = f"still rate limited (HTTP 429) after {throttled} tries"
                return o
            sent = self.gate.open_now()
            if sent is None:
                sent = await self.gate.acquire()
            first_attempt = utc_now()
            # write_ahead([job]), without its coroutine when no commit is on its way
            if journal is not None and self._mark_attempts((job,)):
                await journal.barrier()
            o.attempts += 1
            self.posts += 1
            try:
                answer = await self.client.call("POST", "/request", job.payload)
            except NotSent as exc:
                failures += 1
                o.error = str(exc)
                o.http_status = None
                self._interim(o)
                self.progress.event("retry", f"row {o.row}: {exc}; retrying", row=o.row)
                await self.sleep(self.backoff(failures))
                continue
            except Ambiguous as exc:
                failures += 1
                o.error = f"{exc}; the request may have been created"
                o.status = UNKNOWN
                self.progress.event("unknown", f"row {o.row}: {exc}; checking before any resend", row=o.row)
                await self.sleep(min(2.0, self.backoff(failures)))
                record = journal.get(o.key) if journal is not None and o.key else None
                since = record.first_attempt_at if record is not None else first_attempt
                if await self.settle(job, since or first_attempt):
                    return o
                continue
            o.http_status = answer.status
            if 200 <= answer.status < 300:
                self.gate.success(sent)
                self._sent(job, answer)
                return o
            o.error = error_text(answer)
            if answer.status == 429:
                throttled += 1
                self._interim(o)
                self.gate.throttled(sent, answer.retry_after)
                continue
            if answer.status == 401:
                o.status = FAILED
                self._interim(o)
                raise key_refused()
            if answer.status in RETRYABLE:
                failures += 1
                if answer.status == 503:
                    self.gate.unavailable(sent)
                self._interim(o)
                delay = answer.retry_after if answer.retry_after is not None else self.backoff(failures)
                self.progress.event("retry", f"row {o.row}: {o.error}; retrying in {delay:.1f}s", row=o.row)
                await self.sleep(min(delay, self.policy.backoff_cap))
                continue
            o.status = FAILED  # 400/403/404 and anything else: final for this row
            return o

    def _interim(self, o: Outcome) -> None:
        """A definite 'not created' answer: the row is no longer in flight."""
        if self.journal is not None and o.key:
            self.journal.record(o, status=FAILED)

    def _mark_attempts(self, jobs: Iterable[Job]) -> bool:
        """Mark the attempt about to be made for each job (the feeder already
        marked a job's first attempt when it queued it). True when a commit is
        on its way that must land before the request leaves."""
        if self.journal is None:
            return False
        for job in jobs:
            if job.outcome.key and not job.marked:
                self.journal.begin_attempt(job.outcome.key)
            job.marked = False
        return self.journal.commit_due

    async def write_ahead(self, jobs: list[Job]) -> None:
        """Return once the attempt about to be made for each job is committed."""
        journal = self.journal
        if journal is not None and self._mark_attempts(jobs):
            await journal.barrier()


def _iso(text: str) -> str:
    when = parse_time(text)
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if when else ""


# ---------------------------------------------------------------------------
# Batch mode: POST /requests, up to 50 contacts a call (collect-api.md §5)
# ---------------------------------------------------------------------------

BATCH_SIZE = 50
# Body fields POST /requests does not take (§5): rows using them go one by one.
NOT_BATCHABLE = frozenset({"createdBy", "data", "esignDocs", "esignTriggers"})


def batch_group(payload: dict[str, Any]) -> str | None:
    """Rows with the same request-level fields can share a POST /requests call;
    None when the row must be sent alone."""
    if NOT_BATCHABLE & payload.keys():
        return None
    common = {k: v for k, v in payload.items() if k != "contact"}
    return json.dumps(common, sort_keys=True, ensure_ascii=False)


def contact_identity(contact: Any) -> str:
    """How a batch answer names a contact: its id, or its lower-cased email."""
    if isinstance(contact, str):
        return "id:" + contact
    if isinstance(contact, dict):
        return "email:" + str(contact.get("email", "")).lower()
    return ""


def batch_body(jobs: list[Job]) -> dict[str, Any]:
    first = jobs[0].payload
    body = {k: v for k, v in first.items() if k not in ("contact", "sample")}
    if "sample" in first:
        body["samples"] = [first["sample"]]  # §5 "samples": an array of {itemId, url} (inferred)
    body["contacts"] = [job.payload["contact"] for job in jobs]
    return body


class BatchSender:
    """Sends a group of rows through POST /requests and matches each answer to its
    row by contact id or email, never by position (§5: order is not documented).
    A row the answer does not mention is unknown: looked up, and sent alone only
    if no request exists."""

    def __init__(self, sender: Sender) -> None:
        self.sender = sender

    async def run(self, jobs: list[Job]) -> list[Outcome]:
        s = self.sender
        failures = throttled = 0
        body = batch_body(jobs)
        while True:
            if failures >= s.policy.max_attempts or throttled >= MAX_THROTTLED:
                # The group could not be sent together: each row goes its own way.
                return [await s.run(job) for job in jobs]
            sent = await s.gate.acquire()
            first_attempt = utc_now()
            await s.write_ahead(jobs)
            for job in jobs:
                job.outcome.attempts += 1
            s.posts += 1
            try:
                answer = await s.client.call("POST", "/requests", body)
            except NotSent as exc:
                failures += 1
                for job in jobs:
                    job.outcome.error = str(exc)
                    s._interim(job.outcome)
                await s.sleep(s.backoff(failures))
                continue
            except Ambiguous as exc:
                s.progress.event("unknown", f"batch of {len(jobs)}: {exc}; checking each row")
                return await self._settle_each(jobs, first_attempt)
            if answer.status == 429:
                throttled += 1
                s.gate.throttled(sent, answer.retry_after)
                continue
            if answer.status == 401:
                raise key_refused()
            if answer.status in RETRYABLE:
                failures += 1
                if answer.status == 503:
                    s.gate.unavailable(sent)
                for job in jobs:
                    job.outcome.error = error_text(answer)
                    job.outcome.http_status = answer.status
                    s._interim(job.outcome)
                await s.sleep(min(answer.retry_after or s.backoff(failures), s.policy.backoff_cap))
                continue
            if not 200 <= answer.status < 300:
                # The whole call was refused (e.g. one field of the group is bad):
                # send each row alone so that each gets its own, exact error.
                for job in jobs:
                    s._interim(job.outcome)
                return [await s.run(job) for job in jobs]
            s.gate.success(sent)
            return await self._match(jobs, answer, first_attempt)

    async def _match(self, jobs: list[Job], answer: Answer, first_attempt: str) -> list[Outcome]:
        s = self.sender
        body = answer.body if isinstance(answer.body, dict) else {}
        by_identity: dict[str, Job] = {contact_identity(j.payload["contact"]): j for j in jobs}
        done: set[int] = set()
        for request in body.get("requests") or []:
            if not isinstance(request, dict):
                continue
            contact = request.get("contact") or {}
            job = by_identity.get("id:" + str(contact.get("_id", ""))) or by_identity.get(
                "email:" + str(contact.get("email", "")).lower()
            )
            if job is None or id(job) in done:
                continue
            done.add(id(job))
            s._sent(job, Answer(answer.status, {"request": request}, None))
        for error in body.get("errors") or []:
            if not isinstance(error, dict):
                continue
            job = by_identity.get(contact_identity(error.get("contact")))
            if job is None or id(job) in done:
                continue
            done.add(id(job))
            o = job.outcome
            o.status = FAILED
            o.http_status = answer.status
            message = error.get("message") or error.get("error") or json.dumps(error)
            o.error = " ".join(f"refused in batch: {message}".split())[:300]
        missing = [job for job in jobs if id(job) not in done]
        outcomes = [job.outcome for job in jobs if id(job) in done]
        if missing:
            s.progress.event("unknown", f"{len(missing)} contact(s) missing from a batch answer; checking")
            outcomes.extend(await self._settle_each(missing, first_attempt))
        return outcomes

    async def _settle_each(self, jobs: list[Job], since: str) -> list[Outcome]:
        """Look each row up; send alone (through the single-row path) only if absent."""
        outcomes = []
        for job in jobs:
            job.reconcile_since = since
            job.outcome.status = UNKNOWN
            outcomes.append(await self.sender.run(job))
        return outcomes
