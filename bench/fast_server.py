"""A Collect stand-in that answers as fast as a bare loop can send (issue 29).

The sandbox (``bulksend sandbox``) is aiohttp's web server with a store, a gate
and faults: at 20,000 rows with no limit it is as slow as the clients it serves,
and so it hides part of what a client costs. This server is plain asyncio (one
``asyncio.Protocol`` per connection, HTTP/1.1 keep-alive parsed by hand): it
keeps no requests, checks Basic auth with one comparison, and answers

* ``POST /v1/request``: 200 (``--status`` to choose another 2xx) and the request
  object of collect-api.md §4 with a fresh ``_id`` and the posted contact's
  email and first name (400 when the body is not a JSON object with
  ``campaignId`` and ``contact``);
* the GETs a fresh ``bulksend send`` makes: ``/v1/team`` (the preflight's key
  check), ``/v1/campaigns/{id}`` (any id: one campaign of 4 documents, a form and
  a text), ``/v1/requests?...`` (the pre-send check's listing: always empty, as
  nothing is kept), ``/v1/contacts/{id}`` (a contact with no requests),
  ``/v1/campaigns`` and ``/v1/users``;
* the control plane, without auth: ``GET /_sandbox/stats`` ->
  ``{"created": n, "post_request": {"200": n, ...}, "get": {...}, "gets": k,
  "get_paths": {"/v1/team": 1, ...}}`` and ``POST /_sandbox/reset`` (counters to 0).

    python bench/fast_server.py --port 0 --api-key KEY   # prints: listening on http://127.0.0.1:PORT/v1

Stops on SIGTERM or SIGINT. No chunked request bodies (aiohttp sends a bytes
body with Content-Length; a chunked one is answered 501 and the connection
closed). ``bench/bare_loop.py`` runs against it unchanged.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import email.utils
import json
import os
import signal
import sys
import time
from collections import Counter
from typing import Any

CAMPAIGN_ID = "xvr69EYLKXvTkfYuk"  # bulksend.sandbox.DEMO_CAMPAIGN_ID
MAX_HEAD = 64 * 1024
MAX_BODY = 32 * 1024 * 1024  # e-sign documents of up to 20 MB (§3), as the sandbox allows
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            413: "Payload Too Large", 431: "Request Header Fields Too Large", 501: "Not Implemented"}


def _campaign(campaign_id: str) -> dict[str, Any]:
    def element(eid: str, item: str, name: str, order: int) -> dict[str, Any]:
        return {"id": eid, "itemId": item, "name": name, "order": order, "visibility": "visible"}

    documents = [
        element("pdHfyaXvuoEWnRNnm", "TMjehMxdX2LeLW8SN", "ID card", 0),
        element("S7pJyePKjxXimLipA", "wsZN5XcA2C8CXcPDq", "Proof of address", 1),
        element("8oMXrrSvERrsEnBix", "3Sa5Dhn7Wi9i9Dtbn", "Registration certificate", 2),
        element("vJBoynXXMEDXTiSD7", "FZ9W2wEdA9wgrEcdq", "Driving licence", 3),
    ]
    for d in documents:
        d.update(mandatory=True, multipleupload=False, extensions=["pdf", "jpg", "jpeg", "png"])
    form = element("2GMd7Jw8Zi8efHaCn", "t2J2Di6rkmZePHFD6", "Vehicle details", 4)
    form["items"] = [{"id": "cvKTPGNCtXjR73Qrn", "name": "Brand", "type": "shortText"}]
    return {"_id": campaign_id, "name": "Vehicle documents", "createdAt": "2022-06-01T09:00:00Z",
            "status": "open", "documents": documents, "forms": [form],
            "texts": [element("sxcr6nyAZbi47xYwd", "WTz4vrkJJv7kQsrTQ", "Instructions", 5)], "pages": []}


class Server:
    """What the server answers and counts; shared by every connection."""

    def __init__(self, api_key: str, status: int) -> None:
        self.auth = b"Basic " + base64.b64encode(b":" + api_key.encode())
        self.status = status
        # A per-process prefix keeps ids distinct across restarts; a counter (never
        # reset) keeps them distinct within one: 17 characters as the API's (§1).
        self.prefix = "".join(_ALNUM[b % 62] for b in os.urandom(5))
        self.serial = 0
        self.team = json.dumps({"_id": "CDFHTHYHLLSaw8Mhi", "tz": "Europe/Paris", "name": "Fast team",
                                "plan": {"name": "Premium", "end": "2030-12-31T23:59:59Z"}}).encode()
        self._date_second = -1
        self._date = b""
        self.reset()

    def reset(self) -> None:
        self.created = 0
        self.posts: Counter[str] = Counter()
        self.gets: Counter[str] = Counter()
        self.get_paths: Counter[str] = Counter()

    def new_id(self) -> str:
        self.serial += 1
        n, out = self.serial, []
        for _ in range(12):
            n, r = divmod(n, 62)
            out.append(_ALNUM[r])
        return self.prefix + "".join(reversed(out))

    def date(self) -> bytes:
        second = int(time.time())
        if second != self._date_second:
            self._date_second = second
            self._date = email.utils.formatdate(second, usegmt=True).encode()
        return self._date

    def response(self, status: int, body: bytes, close: bool) -> bytes:
        head = (b"HTTP/1.1 %d %s\r\nContent-Type: application/json; charset=utf-8\r\n"
                b"Content-Length: %d\r\nDate: %s\r\n"
                % (status, _REASONS[status].encode(), len(body), self.date()))
        return head + (b"Connection: close\r\n\r\n" if close else b"\r\n") + body

    def answer(self, method: bytes, target: bytes, auth: bytes | None, body: bytes) -> tuple[int, bytes]:
        """(status, JSON body) for one request."""
        path, _, _query = target.partition(b"?")
        if path.startswith(b"/_sandbox/"):
            return self._control(method, path)
        if auth != self.auth:
            return 401, b'{"message": "Unauthorized: the API key is wrong"}'
        if method == b"POST" and path == b"/v1/request":
            status, text = self._create(body)
            self.posts[str(status)] += 1
            return status, text
        if method in (b"GET", b"HEAD"):
            status, text = self._get(path.decode("latin-1"))
            self.gets[str(status)] += 1
            return status, text
        return 404, b'{"message": "Not Found"}'

    def _create(self, raw: bytes) -> tuple[int, bytes]:
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, b'{"message": "Bad Request: the body is not JSON"}'
        if not isinstance(body, dict) or not isinstance(body.get("campaignId"), str) or "contact" not in body:
            return 400, b'{"message": "Bad Request: campaignId and contact are required"}'
        contact = body["contact"]
        if not isinstance(contact, dict):
            contact = {"_id": str(contact)}
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        request_id = self.new_id()
        self.created += 1
        request = {
            "_id": request_id, "campaignId": body["campaignId"], "createdAt": now,
            "portalUrl": f"https://app.usecollect.com/portal/{self.prefix}Portal/{request_id}",
            "status": "pending", "dueDate": body.get("dueDate"), "privacy": "private",
            "contact": {"_id": contact.get("_id") or self.new_id(), "email": contact.get("email"),
                        "firstName": contact.get("firstName"), "lastName": contact.get("lastName"),
                        "nbRequest": 1, "createdAt": now, "lastActivity": now},
            "contributors": [], "branding": {"useBranding": False},
        }
        return self.status, json.dumps({"request": request, "errors": []}).encode()

    def _get(self, path: str) -> tuple[int, bytes]:
        parts = path.strip("/").split("/")
        self.get_paths["/" + "/".join(parts[:2])] += 1
        if parts == ["v1", "team"]:
            return 200, self.team
        if parts in (["v1", "requests"], ["v1", "users"]):
            return 200, b"[]"
        if parts == ["v1", "campaigns"]:
            return 200, json.dumps([_campaign(CAMPAIGN_ID)]).encode()
        if len(parts) == 3 and parts[1] == "campaigns" and parts[2]:
            return 200, json.dumps(_campaign(parts[2])).encode()
        if len(parts) == 3 and parts[1] == "contacts" and parts[2]:
            contact = {"_id": parts[2], "email": f"{parts[2]}@example.com", "requests": []}
            return 200, json.dumps(contact).encode()
        return 404, b'{"message": "Not Found"}'

    def _control(self, method: bytes, path: bytes) -> tuple[int, bytes]:
        if method == b"GET" and path == b"/_sandbox/stats":
            stats = {"created": self.created, "post_request": {str(self.status): 0} | dict(self.posts),
                     "post_requests": {}, "get": dict(self.gets), "gets": sum(self.gets.values()),
                     "get_paths": dict(self.get_paths)}
            return 200, json.dumps(stats).encode()
        if method == b"POST" and path == b"/_sandbox/reset":
            self.reset()
            return 200, b'{"reset": true}'
        return 404, b'{"message": "Not Found"}'


class Connection(asyncio.Protocol):
    """One client connection: requests parsed as they arrive, answered in order."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buffer + data if self.buffer else data
        out: list[bytes] = []
        close = False
        while not close:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    out.append(self.server.response(431, b'{"message": "headers too large"}', True))
                    close = True
                break
            got = self._one(buf, end)
            if got is None:  # the body is not all here yet
                break
            response, used, close = got
            out.append(response)
            buf = buf[used:]
        self.buffer = buf
        assert self.transport is not None
        if out:
            self.transport.write(b"".join(out))
        if close:
            self.transport.close()

    def _one(self, buf: bytes, end: int) -> tuple[bytes, int, bool] | None:
        """The response to the request whose head ends at ``end``, the bytes it
        used, and whether to close; None while its body is incomplete."""
        lines = buf[:end].split(b"\r\n")
        try:
            method, target, version = lines[0].split(b" ", 2)
        except ValueError:
            return self.server.response(400, b'{"message": "bad request line"}', True), end + 4, True
        length, auth, chunked = 0, None, False
        close = version != b"HTTP/1.1"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip() or b"0")
            elif name == b"authorization":
                auth = value.strip()
            elif name == b"connection":
                token = value.strip().lower()
                close = token == b"close" or (close and token != b"keep-alive")
            elif name == b"transfer-encoding":
                chunked = True
        if chunked:
            refused = self.server.response(501, b'{"message": "chunked bodies are not read"}', True)
            return refused, len(buf), True
        if length > MAX_BODY:
            return self.server.response(413, b'{"message": "body too large"}', True), len(buf), True
        start = end + 4
        if len(buf) - start < length:
            return None
        status, body = self.server.answer(method, target, auth, buf[start:start + length])
        response = self.server.response(status, body, close)
        if method == b"HEAD":  # the GET's head, Content-Length included, without its body
            response = response[:len(response) - len(body)]
        return response, start + length, close


async def serve(host: str, port: int, api_key: str, status: int) -> None:
    server = Server(api_key, status)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: Connection(server), host, port, backlog=1024)
    bound = listener.sockets[0].getsockname()
    print(f"listening on http://{host}:{bound[1]}/v1", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with listener:
        await stop.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0: any free port")
    ap.add_argument("--api-key", default="sandbox-key", help="the one key accepted (Basic, empty user)")
    ap.add_argument("--status", type=int, default=200, choices=(200, 201),
                    help="status of a created request (collect-api.md §2: 200)")
    args = ap.parse_args()
    asyncio.run(serve(args.host, args.port, args.api_key, args.status))
    sys.exit(0)


if __name__ == "__main__":
    main()
