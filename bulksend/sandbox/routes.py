"""Which method and path go to which handler: the API's routes (§4-§7) and the control plane's."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bulksend.sandbox.admin import Admin
from bulksend.sandbox.handlers import Api

__all__ = ["application"]


def application(api: Api, admin: Admin, middleware: Any) -> web.Application:
    """The aiohttp application: every route, behind ``middleware`` (gate.Gate's).

    A GET route answers HEAD too (aiohttp's default).
    """
    # Bodies may carry base64 e-sign documents of up to 20 MB (§3).
    app = web.Application(middlewares=[middleware], client_max_size=32 * 1024**2)
    app.add_routes([
        web.post("/v1/request", api.post_request),
        web.post("/v1/requests", api.post_requests),
        web.get("/v1/requests", api.list_requests),
        web.get("/v1/requests/{id}", api.get_request),
        web.patch("/v1/request", api.patch_request),
        web.get("/v1/contacts", api.list_contacts),
        web.get("/v1/contacts/{id}", api.get_contact),
        web.get("/v1/campaigns", api.list_campaigns),
        web.get("/v1/campaigns/{id}", api.get_campaign),
        web.get("/v1/team", api.get_team),
        web.get("/v1/users", api.get_users),
        # The control plane: no auth, no faults, not counted (gate.py lets it through).
        web.get("/_sandbox/requests", admin.requests),
        web.get("/_sandbox/stats", admin.stats),
        web.get("/_sandbox/patches", admin.patches),
        web.get("/_sandbox/faults", admin.get_faults),
        web.post("/_sandbox/faults", admin.set_faults),
        web.post("/_sandbox/reset", admin.reset),
    ])
    return app
