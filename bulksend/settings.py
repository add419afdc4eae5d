"""A run's settings: what a person chose on the command line or in the Python API."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bulksend.reading.table import Table


@dataclass(frozen=True)
class RunConfig:
    contacts: str
    mapping: str
    results: Path
    api_url: str = "https://api.usecollect.com/v1"
    api_key: str = field(default="", repr=False)  # never printed, logged or written
    rate: float | None = 10.0  # requests per second, a ceiling
    concurrency: int = 8
    max_attempts: int = 5
    timeout: float = 30.0
    max_pause: float = 60.0
    dry_run: bool = False
    limit: int | None = None
    only_failed: bool = False
    sheet: str | int | None = None
    encoding: str | None = None
    delimiter: str | None = None
    header_row: int | None = None  # the row holding the column names; None: the first non-blank
    include_hidden: bool = False  # send rows hidden in an .xlsx sheet too
    batch: bool = False
    stop_grace: float = 10.0
    # Rows new to the journal whose contact already has a request in the
    # campaign: "stop" the run (exit 2), "skip" them (recorded sent with that
    # request) or "send" anyway (no check). See existing.py.
    existing: str = "stop"
    # A rehearsal against the in-process sandbox (send --sandbox, rehearsal.py):
    # its journal is marked so that a real run never takes its rows as sent.
    sandbox: bool = False
    # The Python API (api.py): contacts held in memory (a list of dicts, a
    # DataFrame) are opened by this instead of reading `contacts`, which is
    # then only their name in messages; likewise a mapping given as a dict.
    open_rows: Callable[[], Table] | None = field(default=None, repr=False, compare=False)
    mapping_doc: dict[str, Any] | None = field(default=None, repr=False, compare=False)
