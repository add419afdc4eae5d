"""A run's settings: what a person chose on the command line or in the Python API.

``RunConfig`` holds the results file and four groups, each named after who
reads it, so a function is handed the group it reads, not the whole config:

- ``InputSettings``: the contacts and the mapping, and how the file is read
  (reading/, mapping/; ``sending.run.open_input``).
- ``ApiAccess``: where the Collect API is and the key for it (``collect.client``).
- ``Pace``: how fast and how hard to send (the rate gate, the retry policy,
  the worker pool and its stop; ``sending.pipeline``).
- ``Mode``: what kind of run this is and which rows it sends (the feeder, the
  pre-send check, the run's session).

Below RunConfig, the rules those choices must meet (the API URL, the key, the
rate, the output paths), once each: the CLI and bulksend.api both use them.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from bulksend.common.errors import BulksendError, UsageError

if TYPE_CHECKING:
    from bulksend.reading.table import Table


@dataclass(frozen=True)
class InputSettings:
    """The rows to send and the mapping that turns each into a request."""

    contacts: str  # the contacts file ("-": standard input), or their name in messages
    mapping: str  # the mapping file, or its name in messages
    sheet: str | int | None = None
    encoding: str | None = None
    delimiter: str | None = None
    header_row: int | None = None  # the row holding the column names; None: the first non-blank
    include_hidden: bool = False  # send rows hidden in an .xlsx sheet too
    # The Python API (api/): contacts held in memory (a list of dicts, a
    # DataFrame) are opened by this instead of reading `contacts`, which is
    # then only their name in messages; likewise a mapping given as a dict.
    open_rows: Callable[[], Table] | None = field(default=None, repr=False, compare=False)
    mapping_doc: dict[str, Any] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class ApiAccess:
    """Where the Collect API answers, and the key it takes (collect-api.md §1)."""

    url: str = "https://api.usecollect.com/v1"
    key: str = field(default="", repr=False)  # never printed, logged or written
    timeout: float = 30.0  # seconds for one call


@dataclass(frozen=True)
class Pace:
    """How fast and how hard a run sends: read by the rate gate, the retry
    policy and the worker pool."""

    rate: float | None = 10.0  # requests per second, a ceiling; None: no ceiling of ours
    concurrency: int = 8  # requests in flight at once
    max_attempts: int = 5  # per row, the first one included
    max_pause: float = 60.0  # seconds: the longest wait the run accepts (backoff, Retry-After)
    patience: float = 120.0  # seconds of 429s with nothing accepted, asked pauses apart (collect/rategate.py)
    stop_grace: float = 10.0  # seconds a stop (Ctrl-C, SIGTERM) waits for requests in flight


@dataclass(frozen=True)
class Mode:
    """What kind of run this is, and which rows it sends."""

    dry_run: bool = False  # map and check every row, send nothing
    limit: int | None = None  # send at most this many rows
    only_failed: bool = False  # send only rows an earlier run recorded failed
    batch: bool = False  # rows that share their request fields go in one call (§5)
    # Rows new to the journal whose contact already has a request in the
    # campaign: "stop" the run (exit 2), "skip" them (recorded sent with that
    # request) or "send" anyway (no check). See sending/existing.py.
    existing: str = "stop"
    # A rehearsal against the in-process sandbox (send --sandbox, tasks/rehearsal.py):
    # its journal is marked so that a real run never takes its rows as sent.
    sandbox: bool = False
    # --where COLUMN=V1,V2 and --exclude FILE (issue 28, sending/choosing.py):
    # rows left out this run, recorded filtered or excluded, sent by a later run without.
    where: str | None = None
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunConfig:
    """One run's settings: the results file it keeps, and the four groups."""

    input: InputSettings
    results: Path
    api: ApiAccess = field(default_factory=ApiAccess)
    pace: Pace = field(default_factory=Pace)
    mode: Mode = field(default_factory=Mode)


# --- the rules of what a person gives: once each, for the CLI and bulksend.api -------
# Every rule raises UsageError (exit 2): nothing was sent, nothing was written.

DEFAULT_API_URL = "https://api.usecollect.com/v1"

# A host name as RFC 1123 writes it (letters, digits, hyphens; dot-separated
# labels), and underscores, which some internal names use. Anything else in
# the host (a backslash, a percent sign, non-ASCII) is read differently by
# different URL parsers: refused, not guessed at.
_HOST = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)(\.(?!-)[a-z0-9_-]{1,63}(?<!-))*\.?")

_KEY_FILE_MAX = 4096  # bytes: far more than a key; a bigger file is the wrong file

_PER = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


class SeveralErrors(BulksendError):
    """Independent errors found together (issue 15: a run that cannot start
    says every reason it found, not the first); ``errors`` in the order found.
    The exit status is the first error's; the CLI prints each with its hint."""

    def __init__(self, errors: list[BulksendError]) -> None:
        super().__init__(" / ".join(error.message for error in errors))
        self.errors = list(errors)
        self.exit_status = errors[0].exit_status


def together(errors: list[BulksendError]) -> BulksendError:
    """One error to raise for ``errors`` (not empty): itself when alone, else a SeveralErrors."""
    return errors[0] if len(errors) == 1 else SeveralErrors(errors)


def shown_url(url: str) -> str:
    """``url`` as a message may repeat it: without its user info (issue 25).
    Everything up to the last ``@`` (after the scheme's ``//``, when there is
    one) is shown as ``***``, wherever the ``@`` is: a password holding ``/``
    or ``#`` cuts the URL where no parser would find the user info, and must
    not be shown either."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    if "@" not in rest:
        return url
    return f"{scheme}{sep}***@{rest.rpartition('@')[2]}"


def check_api_url(url: str | None) -> str:
    """The API's base URL (``--api-url``, ``api_url=``), checked; None:
    COLLECT_API_URL, else DEFAULT_API_URL. UsageError for anything but
    http(s); a user name or password (``user@host``); a host that is not a
    plain host name or IP address (urlsplit and aiohttp's parser must agree
    on it, issue 11); a bad port; a query or fragment; plain http to a host
    that is not loopback (it would carry the key unencrypted). No message
    repeats the URL's user info (``shown_url``)."""
    if url is None:
        url = os.environ.get("COLLECT_API_URL") or DEFAULT_API_URL
    hint = f"the Collect API is {DEFAULT_API_URL}; a local sandbox is http://127.0.0.1:PORT/v1"
    if not isinstance(url, str):
        raise UsageError(f"api_url: must be text (a str), not {type(url).__name__}", hint=hint)

    def bad(why: str) -> UsageError:
        return UsageError(f"--api-url {shown_url(url)!r}: {why}", hint=hint)

    if any(c.isspace() or not c.isprintable() or c == "\\" for c in url):
        raise bad("holds a space, a backslash or a control character")
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed [ of an IPv6 address
        raise bad("not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise bad("not an http(s) URL")
    if "@" in parts.netloc:
        raise bad("holds a user name or password (before @); the key comes from COLLECT_API_KEY "
                  "or --api-key-file")
    try:
        parts.port  # noqa: B018 - parsing it is the check
    except ValueError:
        raise bad("the port is not a number from 1 to 65535") from None
    host = parts.hostname or ""
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    with contextlib.suppress(ValueError):
        ip = ipaddress.ip_address(host)
    if ip is None and ("[" in parts.netloc or not _HOST.fullmatch(host)):
        raise bad(f"{host or 'the host'!r} is not a host name or IP address")
    if parts.query or parts.fragment:
        raise bad("holds a query (?) or fragment (#); give the API's base URL only")
    if parts.scheme == "http" and not (host == "localhost" or (ip is not None and ip.is_loopback)):
        raise UsageError(
            f"--api-url {shown_url(url)!r}: plain http would send the API key unencrypted",
            hint="use https://, or http:// only to a loopback sandbox (127.0.0.1, localhost)",
        )
    return url


def _key_problem(key: str) -> str | None:
    """Why ``key`` (already stripped) cannot be an API key; None when it can."""
    if not key:
        return "is empty"
    lines = key.splitlines()
    if len(lines) > 1:
        return (f"holds {len(lines)} lines; it must hold only the key"
                + (" (not NAME=value)" if "=" in lines[0] else ""))
    if re.fullmatch(r"[A-Z_][A-Z0-9_]*=.+", key):  # an environment file's line
        return "holds NAME=value; it must hold only the key"
    for i, char in enumerate(key, start=1):
        if not (" " < char < "\x7f"):
            return f"holds a space, a control or a non-ASCII character (character {i}); keys are plain ASCII"
    return None


def read_api_key(api_key_file: str | None = None, *, given: str | None = None) -> str:
    """The API key: ``given`` (the Python API's ``api_key=``), else read from
    ``api_key_file`` (UTF-8 text, a BOM and surrounding blank space allowed),
    else COLLECT_API_KEY; surrounding blank space stripped. UsageError when it
    cannot be read or cannot be a key: empty, not UTF-8, binary, several
    lines, a space or non-ASCII character inside; or when both ``given`` and
    ``api_key_file`` are. The key is never put in a message."""
    if given is not None:
        if not isinstance(given, str):
            raise UsageError(f"api_key: must be text (a str), not {type(given).__name__}",
                             hint="give the key alone, from the bottom of your Collect profile page")
        if api_key_file:
            raise UsageError("api_key and api_key_file: give one, not both")
        problem = _key_problem(given.strip())
        if problem:
            raise UsageError(f"api_key {problem}",
                             hint="give the key alone, from the bottom of your Collect profile page")
        return given.strip()
    if api_key_file:
        return _key_from_file(api_key_file)
    key = os.environ.get("COLLECT_API_KEY", "").strip()
    if not key:
        raise UsageError(
            "no API key: set COLLECT_API_KEY or pass --api-key-file FILE",
            hint="the key is at the bottom of your profile page in the Collect app; without one, "
            "`bulksend send ... --sandbox` rehearses the whole run and `--dry-run` checks every row",
        )
    problem = _key_problem(key)
    if problem:
        raise UsageError(f"COLLECT_API_KEY {problem}",
                         hint="set it to the key alone, from the bottom of your Collect profile page")
    return key


def _key_from_file(api_key_file: str) -> str:
    """read_api_key's file: the key it holds, or UsageError."""
    try:
        with open(api_key_file, "rb") as handle:
            data = handle.read(_KEY_FILE_MAX + 1)
    except OSError as exc:
        raise UsageError(f"{api_key_file}: cannot read the API key file: {exc.strerror}") from exc
    hint = "the file must hold only the key, from the bottom of your Collect profile page"
    if len(data) > _KEY_FILE_MAX:
        raise UsageError(f"{api_key_file}: the API key file is over {_KEY_FILE_MAX} bytes; "
                         "it is not a key file", hint=hint)
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{api_key_file}: the API key file is not UTF-8 text "
                         f"(byte {exc.start + 1}); a binary file?", hint=hint) from None
    problem = _key_problem(text.strip())
    if problem:
        raise UsageError(f"{api_key_file}: the API key file {problem}", hint=hint)
    return text.strip()


def api_access(api_url: str | None, *, api_key: str | None = None, api_key_file: str | None = None,
               need_key: bool = True) -> tuple[str, str, list[BulksendError]]:
    """The checked API URL (check_api_url) and key (read_api_key; "" when not
    ``need_key``), and every error met finding them, in that order: both are
    looked at, so a bad URL does not hide a missing key. Raises nothing."""
    errors: list[BulksendError] = []
    url = key = ""
    try:
        url = check_api_url(api_url)
    except BulksendError as exc:
        errors.append(exc)
    if need_key:
        try:
            key = read_api_key(api_key_file, given=api_key)
        except BulksendError as exc:
            errors.append(exc)
    return url, key, errors


def parse_rate(rate: str | float | None) -> float | None:
    """A ceiling on requests per second, or None for none. Text as ``--rate``
    takes it: ``10/s``, ``600/min``, ``36000/h``, ``10`` (per second),
    ``none`` (no ceiling); or a number of requests per second (the Python
    API's ``rate=``), above 0 and finite: 0 or -5 is not "no ceiling" (None
    is). UsageError for anything else."""
    if rate is None:
        return None
    if isinstance(rate, str):
        return _rate_text(rate)
    hint = "give requests per second (10), '600/min', or None for no ceiling"
    if isinstance(rate, bool) or not isinstance(rate, int | float) or rate != rate:
        raise UsageError(f"rate={rate!r}: not a rate", hint=hint)
    if not 0 < rate < float("inf"):
        raise UsageError(f"rate={rate!r}: must be above 0 requests per second", hint=hint)
    return float(rate)


def _rate_text(text: str) -> float | None:
    """parse_rate for text."""
    t = text.strip().lower()
    if t in ("none", "off", "unlimited", "0"):
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(?:/\s*(s|sec|second|m|min|minute|h|hour))?", t)
    if not m:
        raise UsageError(
            f"--rate {text!r}: not a rate", hint="write it like 10/s, 600/min or 36000/h"
        )
    rate = float(m.group(1)) / _PER.get(m.group(2) or "s", 1)
    if rate <= 0:
        return None
    return rate


def check_output_path(path: Path | str, what: str) -> None:
    """The rule every output meets (issue 25): ``path`` is a plain file, or
    nothing is there yet (a symbolic link is followed). A device (``/dev/null``
    as root would be replaced by a plain file), a FIFO, a socket or a folder is
    refused: UsageError (exit 2), before anything is read, sent or written.
    ``what``: how the message names it ("--summary-json", "the --results file")."""
    from bulksend.store.runlock import output_problem

    kind = output_problem(path)
    if kind is not None:
        raise UsageError(f"{path}: {what} is {kind}, not a plain file; bulksend writes only plain files",
                         hint=f"{what} takes the name of a new file, or of a file bulksend wrote")


def check_outputs(results: Path, *, contacts: str | None, mapping: str | None,
                  api_key_file: str | None = None, summary_json: str | None = None,
                  results_name: str = "the results file") -> None:
    """Every file a send writes (the results, its journal and side files, the
    summary JSON): each a plain file or nothing yet (``check_output_path``);
    apart from every file it reads (contacts, mapping, key file; None: not a
    file) and from each other, by device and inode (issue 11); and the
    summary JSON's folder must be writable, checked before anything is sent.
    ``results_name``: how messages name the results file. UsageError."""
    from bulksend.store.results import check_outputs_apart
    from bulksend.store.runlock import side_files

    outputs: list[tuple[str, Path | str]] = [(results_name, results)]
    outputs += [(f"{results_name}'s {what.removeprefix('its ')}", path) for what, path in side_files(results)]
    if summary_json:
        outputs.append(("--summary-json", summary_json))
    for what, output in outputs:
        check_output_path(output, what)
    if summary_json:
        # Checked before anything is sent: a monitor that reads this file would
        # otherwise go on reading a stale one after a run that could not write it.
        folder = Path(summary_json).parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise UsageError(f"{summary_json}: --summary-json cannot be written there "
                             f"({folder} is not a folder this user can write)",
                             hint="pass a path in a folder that exists and is writable")
    inputs: list[tuple[str, Path | str]] = []
    for what, path in (("the contacts file", contacts), ("the mapping", mapping),
                       ("--api-key-file", api_key_file)):
        if path is not None:
            inputs.append((what, path))
    check_outputs_apart(outputs, inputs)
