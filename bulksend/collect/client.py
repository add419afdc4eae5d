"""The HTTP client for the Collect API, and how its answers are read.

Every call goes through ``Client.call`` and comes back as an ``Answer`` (or
raises ``NotSent`` / ``Ambiguous``). Redirects are never followed: a 3xx is an
answer like any other, so a POST never turns into a GET elsewhere and a
contact's data never goes to another host (issue 10, case 8).
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import json
import math
import sys
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import yarl

from bulksend.common.errors import AbortError, AuthError
from bulksend.common.version import __version__


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Retry-After as seconds (``120``) or an HTTP-date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    when = _http_date(value)
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when - current)


# ---------------------------------------------------------------------------
# The HTTP client
# ---------------------------------------------------------------------------


class NotSent(Exception):
    """The request never reached the server (connection refused, DNS...): safe to retry."""


class Ambiguous(Exception):
    """The request may have reached the server but its answer was lost."""


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs 3x (one per answer)
class Answer:
    """One HTTP answer: its status, its body (parsed JSON; the raw text when it
    is not JSON; None when empty), and the headers bulksend reads. Headers are
    read only where they matter, to keep the POST path cheap: ``retry_after``
    (seconds) on 429/503, ``location`` on 3xx, ``server_time`` (the ``Date``
    header as a Unix time, RFC 9110 §6.6.1) on GETs."""

    status: int
    body: Any
    retry_after: float | None
    location: str = ""
    server_time: float | None = None


def auth_header(api_key: str) -> str:
    # collect-api.md §1: Basic, empty user name, the key as password. Built by
    # hand: aiohttp 3.14 deprecates BasicAuth and auth=.
    return "Basic " + base64.b64encode(b":" + api_key.encode()).decode("ascii")


def key_refused() -> AuthError:
    """A 401 ends the run at once (collect-api.md §2: the API key is wrong)."""
    return AuthError(
        "the API key was refused (HTTP 401); the run stops here and makes no further call",
        hint="check COLLECT_API_KEY or --api-key-file, then rerun the same command",
    )


class QuotaError(AbortError):
    """A 429 whose Retry-After is longer than ``--max-pause``: a quota, not a
    rate. The run stops at once (exit 3) and says when to rerun."""


def quota_reached(retry_after: float, max_pause: float) -> QuotaError:
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=retry_after)
    return QuotaError(
        f"the API asks to wait {retry_after:,.0f}s before the next request (HTTP 429 Retry-After), "
        f"longer than --max-pause {max_pause:g}s: stopped; the API allows the next try at "
        f"{when:%Y-%m-%dT%H:%M:%SZ}",
        hint=f"rerun the same command after that time, or pass --max-pause {math.ceil(retry_after)} to wait",
    )


def error_text(answer: Answer) -> str:
    """One line a person can act on, from an error answer (its body is undocumented, §2)."""
    if answer.location:
        return (f"HTTP {answer.status}: redirected to {answer.location}; API calls never follow "
                "redirects (check --api-url)")
    body = answer.body
    message = ""
    if isinstance(body, dict):
        for name in ("errors", "message", "error", "detail"):
            if body.get(name):
                message = _messages(body[name])
                break
    elif isinstance(body, str):
        message = _html_title(body) or body
    message = " ".join(str(message).split())[:300]
    return f"HTTP {answer.status}: {message}" if message else f"HTTP {answer.status}"


def _messages(value: Any) -> str:
    """The text of an ``errors`` array (its entries' shape is undocumented, §2)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for entry in value:
            if isinstance(entry, dict):
                text = entry.get("message") or entry.get("error") or entry.get("detail")
                texts.append(text if isinstance(text, str) else json.dumps(entry, ensure_ascii=False))
            else:
                texts.append(str(entry))
        return "; ".join(texts)
    return json.dumps(value, ensure_ascii=False)


def _html_title(text: str) -> str:
    """An HTML page's title, for a message (gateways answer with pages)."""
    lower = text[:4096].lower()
    if "<html" not in lower and "<!doctype" not in lower:
        return ""
    start, end = lower.find("<title>"), lower.find("</title>")
    title = text[start + 7:end].strip() if 0 <= start < end else ""
    return f"an HTML page ({title})" if title else "an HTML page"


# What an answer to POST /request says about the row (collect-api.md §9):
CREATED = "created"  # a request _id came back: sent
REFUSED = "refused"  # definitely not created: failed, with the server's text
UNCLEAR = "unclear"  # maybe created: unknown, looked up before any resend


def read_created(answer: Answer) -> tuple[str, dict[str, Any] | None, str]:
    """Read an answer to POST /request: ``(verdict, request, text)``.

    Only a 2xx whose body is ``{"request": {"_id": ...}, ...}`` is CREATED; its
    ``errors``, when not empty, come back as ``text`` (kept for the person, §4
    documents the array but never its entries). A 2xx with errors and no
    request is REFUSED. Any other 2xx (``{}``, ``null``, an HTML page), any 5xx
    but 503 (a 500 or a gateway's 502/504 can come after the work was done)
    and any status bulksend does not know are UNCLEAR: nothing documents them
    as "not created" (§9). 3xx and 4xx are REFUSED; 429, 401 and 503 are the
    caller's to handle before this."""
    status = answer.status
    if 200 <= status < 300:
        body = answer.body
        request = body.get("request") if isinstance(body, dict) else None
        errors = body.get("errors") if isinstance(body, dict) else None
        if isinstance(request, dict) and isinstance(request.get("_id"), str) and request["_id"]:
            return CREATED, request, _messages(errors) if errors else ""
        if errors:
            return REFUSED, None, f"HTTP {status} with errors and no request: {_messages(errors)}"[:300]
        return UNCLEAR, None, f"HTTP {status} without a request in its answer ({_shape(body)})"
    if 300 <= status < 500:
        return REFUSED, None, error_text(answer)
    return UNCLEAR, None, error_text(answer)


def _shape(body: Any) -> str:
    if body is None:
        return "empty body"
    if isinstance(body, str):
        return _html_title(body) or "not JSON"
    if isinstance(body, dict):
        return "{" + ", ".join(sorted(body)[:5]) + "}" if body else "{}"
    return type(body).__name__


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
        """One call; never follows a redirect.

        Raises ``NotSent`` when the request cannot have reached the server and
        ``Ambiguous`` when it may have but its answer was lost."""
        assert self.session is not None
        data = None if body is None else _encode_json(body).encode()
        location = ""
        server_time = None
        try:
            url = self._post_urls.get(path) or yarl.URL(self.base + path)
            async with self.session.request(method, url, data=data, params=params,
                                            allow_redirects=False) as resp:
                raw = await resp.read()
                status = resp.status
                retry_after = (
                    parse_retry_after(resp.headers.get("Retry-After")) if status in (429, 503) else None
                )
                if 300 <= status < 400:
                    location = resp.headers.get("Location", "")
                if method == "GET":
                    server_time = _http_date(resp.headers.get("Date"))
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
        if location or server_time is not None:
            return Answer(status, parsed, retry_after, location, server_time)
        return Answer(status, parsed, retry_after)


def _http_date(value: str | None) -> float | None:
    """An HTTP-date header (RFC 9110 §5.6.7) as a Unix time; None when absent or unreadable."""
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()
