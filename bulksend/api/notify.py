"""``--notify URL``: a word when a send ends, whatever the end (issue 28).

When a send ends (every row done, some not sent, an abort, an interrupt, or an
error before anything was sent), the run's summary is POSTed as JSON to URL:
the same document ``--summary-json`` writes (``Summary.as_dict``; after an
error, the same keys with ``error`` and the exit code), never the key. A
health-check endpoint or a chat webhook that takes a JSON POST hears of every
nightly run, the failed ones above all. One try of ``TIMEOUT`` seconds, and
one more ``RETRY_AFTER`` seconds later when the first failed for a reason
that may pass (no connection, a timeout, 429, 5xx); a notification that does
not get through is a warning, never another exit status. The URL is never
printed whole (a webhook's path is its secret): messages show its scheme and host.

Why here, and why ``urllib``: the API is the one place that sees every end of
a send (its own argument checks included, and a KeyboardInterrupt before the
sending), and the command line, which is above it, calls the same functions
for the checks it makes itself. By then the run's event loop is closed (and
under Jupyter the call runs in a thread with loops of its own): a blocking
stdlib POST needs no loop, honours the proxy variables a cron job sets, and
keeps aiohttp out of the picture when the engine never started.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from bulksend.common.errors import BulksendError, UsageError
from bulksend.common.outcome import Summary

if TYPE_CHECKING:
    from bulksend.api.answers import Run

TIMEOUT = 10.0  # seconds for one try: the connection, then each read
RETRY_AFTER = 2.0  # seconds before the one retry

logger = logging.getLogger("bulksend")


class NotifyWarning(UserWarning):
    """The summary could not be POSTed to ``notify``'s URL; the run's outcome stands."""


def check_url(url: str) -> str:
    """``url`` when it can be notified: http or https, with a host. Raises
    UsageError (exit 2, before anything runs) otherwise (TypeError for a
    ``url`` that is not text); the message shows the scheme and host only."""
    if not isinstance(url, str):
        raise TypeError(f"notify: expected a URL as text, not {type(url).__name__}")
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 (a port that is not a number raises ValueError here)
    except ValueError:
        raise UsageError("--notify: a URL that cannot be read (its port?)",
                         hint="the address your health check or chat webhook gives for a JSON POST") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--notify: expected an http:// or https:// URL, not {shown(url)}",
                         hint="the address your health check or chat webhook gives for a JSON POST")
    if parts.username is not None or parts.password is not None:
        raise UsageError(f"--notify {shown(url)}: a user name or password in the URL is not sent",
                         hint="use the address the service gives, with its token in the path or query")
    return url.strip()


def shown(url: str) -> str:
    """The URL for a message: its scheme and host, the rest (a webhook's secret) left out."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "a URL that cannot be read"
    if parts.scheme and host:
        return f"{parts.scheme}://{host}{port}/…"
    return f"{parts.scheme}:…" if parts.scheme else "text that is not a URL"


def stopped_document(error: BaseException, *, results: Path | str, dry_run: bool) -> dict[str, Any]:
    """The summary document of a send that ended on ``error`` before its own
    summary existed, with the same keys as a finished run's and ``error``: a
    BulksendError is the run's abort (its exit code), a KeyboardInterrupt an
    interrupt (130), anything else a crash (exit code 1, as Python's)."""
    summary = Summary(results=Path(results), dry_run=dry_run)
    if isinstance(error, BulksendError):
        summary.aborted, text = error, error.message
    elif isinstance(error, KeyboardInterrupt):
        summary.interrupted, text = True, "interrupted before the sending started"
    else:
        text = f"{type(error).__name__}: {error}"
    document = {**summary.as_dict(), "results": str(results), "error": text}
    if not isinstance(error, BulksendError | KeyboardInterrupt):
        document["aborted"], document["exit_code"] = text, 1
    return document


def post_summary(url: str, document: dict[str, Any], *, timeout: float = TIMEOUT,
                 retry_after: float = RETRY_AFTER) -> str | None:
    """POST ``document`` as JSON to ``url``: None once a 2xx answer came back,
    else the warning to give (the last reason, the URL shown as ``shown``)."""
    import http.client
    import urllib.error
    import urllib.request

    from bulksend.common.version import __version__

    body = json.dumps(document).encode("utf-8")
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": f"bulksend/{__version__}"})
    opener = _opener(url)
    why = ""
    for attempt in (1, 2):
        if attempt == 2:
            time.sleep(retry_after)
        try:
            with opener.open(request, timeout=timeout) as answer:
                answer.read(1 << 16)
                return None
        except urllib.error.HTTPError as exc:
            why, again = f"HTTP {exc.code}", exc.code == 429 or exc.code >= 500
        except (OSError, ValueError, http.client.HTTPException) as exc:  # no connection, a timeout, no HTTP
            reason = getattr(exc, "reason", None) or exc
            why, again = (str(reason) or type(exc).__name__), True
        if not again:
            break
    return f"--notify {shown(url)}: the run's summary was not delivered ({why}); the run's outcome stands"


def _opener(url: str) -> Any:
    """urllib's opener: the proxy variables honoured, except for a loopback host."""
    import ipaddress
    import urllib.request

    host = urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    return urllib.request.build_opener(urllib.request.ProxyHandler({}) if loopback else
                                       urllib.request.ProxyHandler())


class Ending:
    """``bulksend.send``'s notification: ``with Ending(notify, results, dry_run) as
    ending: ... ending.run = Run(...)``: on leaving, the run's summary (or,
    when the block raised, the error's document) is POSTed to ``notify``; a
    failure is a NotifyWarning and a log line, and what the block raised
    still goes up. ``notify`` None: nothing is done. UsageError for a bad URL."""

    def __init__(self, notify: str | None, results: str | Path, *, dry_run: bool) -> None:
        self.url = None if notify is None else check_url(notify)
        self.results = results
        self.dry_run = dry_run
        self.run: Run | None = None

    def __enter__(self) -> Ending:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self.url is None:
            return
        if error is None and self.run is not None:
            document = self.run.summary.as_dict()
        elif isinstance(error, Exception | KeyboardInterrupt):
            document = stopped_document(error, results=self.results, dry_run=self.dry_run)
        else:
            return
        problem = post_summary(self.url, document)
        if problem is not None:
            logger.warning("%s", problem)
            warnings.warn(problem, NotifyWarning, stacklevel=3)
