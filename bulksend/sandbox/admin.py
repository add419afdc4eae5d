"""The control plane, /_sandbox: what the sandbox did, its fault settings, a reset. No auth.

A separate face from the API (like moto's /moto-api): it goes through no gate,
is not counted, and answers over the backend what ``Sandbox``'s methods answer
from Python.
"""

from __future__ import annotations

from aiohttp import web

from bulksend.sandbox.backend import Backend
from bulksend.sandbox.bodies import Invalid
from bulksend.sandbox.handlers import read_json
from bulksend.sandbox.replies import error

__all__ = ["Admin"]


class Admin:
    """One method per /_sandbox route (routes.py), each over ``backend``."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    async def requests(self, request: web.Request) -> web.Response:
        """GET /_sandbox/requests: every request created through the API (``Sandbox.created``)."""
        return web.json_response(self._backend.created_copy())

    async def stats(self, request: web.Request) -> web.Response:
        """GET /_sandbox/stats: the call counts (``Sandbox.stats``)."""
        return web.json_response(self._backend.stats_copy())

    async def patches(self, request: web.Request) -> web.Response:
        """GET /_sandbox/patches: every PATCH /request applied (``Sandbox.patches``)."""
        return web.json_response(self._backend.patches_copy())

    async def get_faults(self, request: web.Request) -> web.Response:
        """GET /_sandbox/faults: the fault settings."""
        return web.json_response(self._backend.faults_json())

    async def set_faults(self, request: web.Request) -> web.Response:
        """POST /_sandbox/faults: change them (a JSON object of settings); 400 naming
        every problem, and nothing changed, when any is refused."""
        try:
            body = await read_json(request)
            self._backend.apply_faults(body)
        except Invalid as exc:
            return error(exc.status, exc.message)
        except (ValueError, TypeError) as exc:
            return error(400, str(exc))
        return web.json_response(self._backend.faults_json())

    async def reset(self, request: web.Request) -> web.Response:
        """POST /_sandbox/reset: back to the seeded world (``Sandbox.reset``)."""
        self._backend.reset()
        return web.json_response({"reset": True})
