"""The /v1 handlers: parse the HTTP call, ask the store or a look-up, answer in JSON. No state.

A refusal raised on the way (``Invalid``) is turned into its error answer by
gate.call; the fate of a POST (faults.FATE) was set by the gate before.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from aiohttp import web

from bulksend.sandbox import lookups
from bulksend.sandbox.bodies import Invalid, batch_shape, single_shape
from bulksend.sandbox.faults import FATE
from bulksend.sandbox.store import Store

__all__ = ["Api", "read_json"]


async def read_json(request: web.Request) -> dict[str, Any]:
    """The call's body as a JSON object; ``Invalid`` (400) for another content type, a
    body that is not JSON or not an object, or a client gone before its body arrived."""
    if request.content_type != "application/json":
        raise Invalid(400, f"Content-Type must be application/json, got {request.content_type!r}")
    try:
        raw = await request.read()
    except (ConnectionResetError, aiohttp.ClientConnectionResetError):
        # The client went away before its body arrived (killed, timed out):
        # nothing was received, so nothing is created; no traceback in the log.
        raise Invalid(400, "the connection was lost before the body arrived") from None
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise Invalid(400, "the body must be a JSON object")
    return body


class Api:
    """One method per /v1 route (routes.py), each over ``store``."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def post_request(self, request: web.Request) -> web.Response:
        """POST /request (§4): ``{request, errors: []}``."""
        body = await read_json(request)
        campaign_id, entry, due_date = single_shape(body)
        created = self._store.create_one(body, campaign_id, entry, due_date, FATE.get())
        return web.json_response({"request": created.to_json(), "errors": []})

    async def post_requests(self, request: web.Request) -> web.Response:
        """POST /requests (§5): ``{requests, errors}``, requests in shuffled order."""
        body = await read_json(request)
        campaign_id, contacts, due_date = batch_shape(body)
        created, errors = self._store.create_batch(body, campaign_id, contacts, due_date, FATE.get())
        return web.json_response({"requests": [r.to_json() for r in created], "errors": errors})

    async def patch_request(self, request: web.Request) -> web.Response:
        """PATCH /request (§7): ``{errors: [], request}``."""
        found = self._store.patch(await read_json(request))
        return web.json_response({"errors": [], "request": found.current_json()})

    async def list_requests(self, request: web.Request) -> web.Response:
        """GET /requests (§6)."""
        return web.json_response(lookups.requests_page(self._store, request.query))

    async def get_request(self, request: web.Request) -> web.Response:
        """GET /requests/{id} (§7)."""
        return web.json_response(lookups.request_detail(self._store, request.match_info["id"]))

    async def list_contacts(self, request: web.Request) -> web.Response:
        """GET /contacts (§6, §7)."""
        return web.json_response(lookups.contacts_page(self._store, request.query))

    async def get_contact(self, request: web.Request) -> web.Response:
        """GET /contacts/{id} (§6)."""
        return web.json_response(lookups.contact_detail(self._store, request.match_info["id"]))

    async def list_campaigns(self, request: web.Request) -> web.Response:
        """GET /campaigns (§7)."""
        return web.json_response(lookups.campaigns_page(self._store, request.query))

    async def get_campaign(self, request: web.Request) -> web.Response:
        """GET /campaigns/{id} (§7)."""
        return web.json_response(lookups.campaign(self._store, request.match_info["id"]))

    async def get_team(self, request: web.Request) -> web.Response:
        """GET /team (§7)."""
        return web.json_response(lookups.team(self._store))

    async def get_users(self, request: web.Request) -> web.Response:
        """GET /users (§7)."""
        return web.json_response(lookups.users())
