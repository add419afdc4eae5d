"""Every /v1 call passes this gate: counted, delayed, rate-limited, authenticated, then its fate.

In this order: ``latency``; the rate limit (429 with Retry-After, §2, §3); Basic
auth (§1, 401); for POST /request(s), the fate drawn by faults.py, answered
before the handler runs (nothing created) or after it (created, then answered
oddly); for look-ups, ``lookup_fault``. /_sandbox calls pass untouched: no auth,
no faults, not counted. The outcome is counted as soon as it is known, so a test
that gave up waiting for a slow answer still sees it in the stats.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import math
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from bulksend.sandbox.backend import Backend
from bulksend.sandbox.bodies import Invalid
from bulksend.sandbox.config import SandboxConfig
from bulksend.sandbox.faults import FATE
from bulksend.sandbox.replies import HTML_PAGE, drop_connection, error, gateway_page, retry_after

__all__ = ["Gate", "Handler", "auth_problem", "call"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_LOOKUP_PATH: Final = re.compile(r"/v1/(requests|contacts)(/[^/]+)?")
_CHALLENGE: Final = {"WWW-Authenticate": 'Basic realm="Collect"'}


class Gate:
    """The middleware in front of the /v1 handlers, acting on ``backend``'s settings."""

    def __init__(self, backend: Backend, api_key: str) -> None:
        self._backend = backend
        self._api_key = api_key
        self._expected_auth = "Basic " + base64.b64encode(f":{api_key}".encode()).decode()

    def middleware(self) -> Any:
        """The aiohttp middleware (for ``web.Application(middlewares=...)``)."""

        @web.middleware
        async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
            if not request.path.startswith("/v1/"):
                return await handler(request)  # /_sandbox: no auth, no faults, not counted
            stats = self._backend.stats
            creates = stats.creates(request.method, request.path)
            counts = stats.counter(request.method, request.path)
            stats.enter()
            try:
                return await self._v1_call(request, handler, creates, counts)
            finally:
                stats.leave()

        return gate

    async def _v1_call(
        self, request: web.Request, handler: Handler, creates: bool, counts: Counter[str]
    ) -> web.StreamResponse:
        config = self._backend.config
        if config.latency > 0:
            await asyncio.sleep(config.latency)
        wait = self._backend.faults.wait(config)
        if wait > 0:
            counts["429"] += 1
            headers = retry_after(max(1, math.ceil(wait)), config.retry_after_format)
            return error(429, "Too Many Requests: requesting too many objects! Slow down! (§2)", headers)
        if request.headers.get("Authorization") != self._expected_auth:
            problem = auth_problem(request.headers.get("Authorization"), self._api_key)
            if problem is not None:
                counts["401"] += 1
                return error(401, problem, dict(_CHALLENGE))
        if not creates:
            response = await _look_up(handler, request, config.lookup_fault)
            counts[str(response.status)] += 1
            return response
        fate = self._backend.faults.fate(config, len(self._backend.store.created))
        FATE.set(fate)  # the handler records it with each request created (same task)
        early = _answer_unprocessed(request, fate, config)
        if early is not None:
            counts[fate] += 1
            return early
        response = await call(handler, request)
        if fate == "ok" or response.status != 200:
            # Faults after processing only apply to successful creations.
            counts[str(response.status)] += 1
            return response
        counts[fate] += 1
        return await _answer_processed(request, response, fate, config)


def auth_problem(header: str | None, api_key: str) -> str | None:
    """Why an Authorization header is refused (the 401's message), or None.

    §1: Basic with an empty user name and the API key as password.
    """
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
    if not hmac.compare_digest(password.encode(), api_key.encode()):
        return "the API key is wrong"
    return None


async def call(handler: Handler, request: web.Request) -> web.StreamResponse:
    """Run a /v1 handler; a refusal (``Invalid``) or aiohttp's own 404/405/413 becomes a JSON error."""
    try:
        return await handler(request)
    except Invalid as exc:
        return error(exc.status, exc.message)
    except web.HTTPException as exc:
        if exc.status == 404:
            return error(404, f"no such endpoint: {request.method} {request.path}")
        if exc.status == 405:
            return error(405, f"method {request.method} not allowed on {request.path}")
        return error(exc.status, exc.text or exc.reason)


async def _look_up(handler: Handler, request: web.Request, fault: str | None) -> web.StreamResponse:
    """A GET or other call that creates nothing; `lookup_fault` applies to §6 look-ups."""
    if fault is None or request.method != "GET" or not _LOOKUP_PATH.fullmatch(request.path):
        return await call(handler, request)
    if fault == "html":
        return web.Response(text=HTML_PAGE, content_type="text/html")
    if fault == "404":
        return error(404, "Not Found: the specified object could not be found (sandbox fault)")
    if fault == "500":
        return error(500, "Internal Server Error: try again later (sandbox fault)")
    response = await call(handler, request)  # "object": the data, wrapped
    if response.status != 200 or not isinstance(response, web.Response):
        return response
    assert isinstance(response.body, bytes)
    return web.json_response({"data": json.loads(response.body)})


def _answer_unprocessed(request: web.Request, fate: str, config: SandboxConfig) -> web.StreamResponse | None:
    """The answer of a fate that creates nothing (config.NOTHING_CREATED_FATES), else None."""
    endpoint = request.path.removeprefix("/v1")
    if fate == "500":
        return error(500, "Internal Server Error: try again later (sandbox fault)")
    if fate == "503":
        return error(503, "Service Unavailable: try again later (sandbox fault)")
    if fate == "401":
        return error(401, "Unauthorized: the API key is wrong (sandbox fault)", dict(_CHALLENGE))
    if fate == "quota-429":
        headers = retry_after(config.quota_retry_after, config.retry_after_format)
        return error(429, "Too Many Requests: request quota reached (sandbox fault)", headers)
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
        drop_connection(request)
        return web.Response(status=500)  # never written: the transport is closed
    return None


async def _answer_processed(
    request: web.Request, response: web.StreamResponse, fate: str, config: SandboxConfig
) -> web.StreamResponse:
    """The answer of a fate met after the requests were created (config.CREATED_FATES)."""
    if fate == "ambiguous":
        drop_connection(request)
        return response
    if fate == "slow":
        await asyncio.sleep(config.slow_delay)
        return response
    if fate == "created-500":
        return error(500, "Internal Server Error: try again later (sandbox fault)")
    if fate in ("created-502", "created-504"):
        status = int(fate.removeprefix("created-"))
        return web.Response(status=status, text=gateway_page(status), content_type="text/html")
    if fate == "empty-200":
        return web.json_response({})
    if fate == "html-200":
        return web.Response(text=HTML_PAGE, content_type="text/html")
    # warned-200: the documented shape with the request(s), and errors not empty.
    assert isinstance(response, web.Response) and isinstance(response.body, bytes)
    answer = json.loads(response.body)
    warning = {"message": "Some messages could not be scheduled (sandbox fault)"}
    answer["errors"] = [*answer.get("errors", []), warning]
    return web.json_response(answer)
