"""The sandbox's answers that carry no data: error bodies, HTML pages, Retry-After, a cut line."""

from __future__ import annotations

import email.utils
import math
import time
from typing import Final

from aiohttp import web

__all__ = ["HTML_PAGE", "drop_connection", "error", "gateway_page", "retry_after"]

HTML_PAGE: Final = (
    "<!DOCTYPE html>\n<html><head><title>Collect</title></head>"
    "<body><h1>Collect</h1><p>Something went wrong. Please try again.</p></body></html>\n"
)
_GATEWAY_REASONS: Final = {502: "Bad Gateway", 504: "Gateway Time-out"}


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """An error answer: ``{"message": ...}`` with ``status``.

    Error bodies are undocumented (§2); this shape is the sandbox's choice.
    """
    return web.json_response({"message": message}, status=status, headers=headers)


def retry_after(seconds: float, retry_after_format: str) -> dict[str, str]:
    """A Retry-After header (RFC 9110 §10.2.3) in the chosen form ("seconds",
    "http-date"), or none ("none": §3 documents none); whole seconds, rounded up."""
    whole = max(0, math.ceil(seconds))
    if retry_after_format == "seconds":
        return {"Retry-After": str(whole)}
    if retry_after_format == "http-date":
        return {"Retry-After": email.utils.formatdate(math.ceil(time.time()) + whole, usegmt=True)}
    return {}


def gateway_page(status: int) -> str:
    """The HTML a reverse proxy answers with (502, 504) when the API behind it failed or was slow."""
    title = f"{status} {_GATEWAY_REASONS[status]}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )


def drop_connection(request: web.Request) -> None:
    """Close the socket without writing anything.

    The client sees a disconnection and cannot tell whether the request was
    processed. aiohttp then fails to write the handler's response and treats it as
    a client disconnection (no log).
    """
    transport = request.transport
    if transport is not None:
        transport.close()
