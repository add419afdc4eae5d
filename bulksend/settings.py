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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    # The Python API (api.py): contacts held in memory (a list of dicts, a
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
    # request) or "send" anyway (no check). See existing.py.
    existing: str = "stop"
    # A rehearsal against the in-process sandbox (send --sandbox, rehearsal.py):
    # its journal is marked so that a real run never takes its rows as sent.
    sandbox: bool = False


@dataclass(frozen=True)
class RunConfig:
    """One run's settings: the results file it keeps, and the four groups."""

    input: InputSettings
    results: Path
    api: ApiAccess = field(default_factory=ApiAccess)
    pace: Pace = field(default_factory=Pace)
    mode: Mode = field(default_factory=Mode)
