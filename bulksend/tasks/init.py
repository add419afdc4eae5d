"""``bulksend init CONTACTS``: read the file, plan its columns, write the mapping.

The plan (which column is what) is tasks/scaffold.py; the text written is
tasks/scaffold_text.py; this module puts them together and writes the file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from bulksend.collect.ids import is_id
from bulksend.common.errors import UsageError
from bulksend.mapping.items import Catalogue
from bulksend.mapping.loading import parse_mapping
from bulksend.mapping.questions import QuestionsError
from bulksend.settings import check_output_path
from bulksend.tasks.scaffold import InitConfig, read_plan
from bulksend.tasks.scaffold_text import render, report

# Collect's ids are 17 letters and digits (collect-api.md §1). What else an id
# may hold is not guessed: a "/", "?", "#" or "%" would change the request
# (GET /campaigns/../team is GET /team) and the mapping written.


def check_campaign(campaign: str) -> None:
    """``--campaign ID``: letters, digits, ``-`` and ``_`` only (1 to 64 of
    them). UsageError (exit 2) for anything else, before any request is made
    or anything written (issue 25)."""
    if not is_id(campaign):
        raise UsageError(f"--campaign {campaign[:80]!r}: not a campaign id (letters, digits, - and _ only)",
                         hint="copy the id from the campaign's address in the app (17 letters and digits)")


def write_new(path: Path, text: str, *, force: bool, contacts: str) -> None:
    """Write ``text`` to ``path`` (UTF-8, atomically). UsageError when the file
    exists and ``force`` is false, when it is the contacts file, when it is
    not a plain file (a device, a FIFO: never replaced, even with ``force``),
    or when it cannot be written."""
    check_output_path(path, "-o")
    if path.exists():
        if contacts != "-" and os.path.exists(contacts) and os.path.samefile(path, contacts):
            raise UsageError(f"{path}: is the contacts file itself", hint="pass -o mapping.yaml")
        if not force:
            raise UsageError(f"{path}: exists; bulksend init never overwrites a file",
                             hint="pass --force to replace it, or -o another.yaml")
        if path.is_dir():
            raise UsageError(f"{path}: is a directory", hint="pass -o a file name, e.g. -o mapping.yaml")
    folder = path.parent if str(path.parent) else Path(".")
    try:
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=folder, prefix=f".{path.name}.",
                                         delete=False) as handle:
            handle.write(text)
        try:
            check_output_path(path, "-o")  # again: a device put there meanwhile is not replaced either
        except UsageError:
            os.unlink(handle.name)
            raise
        os.replace(handle.name, path)
    except OSError as exc:
        raise UsageError(f"{path}: cannot write the mapping: {exc.strerror or exc}",
                         hint="pass -o a path in a folder you can write to") from None


def init_mapping(config: InitConfig,
                 fetch: Callable[[InitConfig], Catalogue | None]) -> tuple[str, list[str]]:
    """Write the mapping for ``config.contacts`` to ``config.output``. ``fetch``
    reads the campaign's elements (None: not listed). Returns the text written
    and what to tell the person (lines). Raises InputError when the file
    cannot be read, UsageError when the mapping cannot be written, and
    MappingError if the mapping made does not compile (a bug: nothing is written).
    The campaign id and the output are checked first, before anything is
    read or asked (UsageError)."""
    if config.campaign is not None:
        check_campaign(str(config.campaign))
    check_output_path(config.output, "-o")
    table, total, columns, plan = read_plan(config)
    catalogue = fetch(config) if config.campaign and config.api_key else None
    text = render(config, table, total, columns, plan, catalogue)
    # The questions init asks (issue 24) are written for the person to answer.
    with contextlib.suppress(QuestionsError):
        parse_mapping(text, str(config.output), table.columns, header=table.header)
    write_new(config.output, text, force=config.force, contacts=config.contacts)
    return text, report(config, table, total, columns, plan, catalogue)


def fetch_catalogue(config: InitConfig) -> Catalogue:
    """GET /campaigns/{config.campaign} (collect-api.md §6) with the config's key:
    the campaign's elements. UsageError when the campaign does not exist, the
    key is refused, or the API cannot be read (nothing is written then)."""
    import asyncio

    from bulksend.collect.client import Ambiguous, Client, NotSent, error_text

    campaign = str(config.campaign)

    async def get() -> Catalogue:
        async with Client(config.api_url, config.api_key, timeout=30.0, concurrency=1) as client:
            answer = await client.call("GET", f"/campaigns/{campaign}")
        if answer.status == 401:
            raise UsageError("the API key was refused (HTTP 401 on GET /campaigns); nothing was written",
                             hint="check COLLECT_API_KEY or --api-key-file, or leave --campaign out")
        if answer.status in (400, 403, 404):
            raise UsageError(f"campaign {campaign!r} does not exist ({error_text(answer)}); "
                             "nothing was written", hint="copy the id from the campaign's address in the app")
        if answer.status != 200 or not isinstance(answer.body, dict):
            raise UsageError(f"GET /campaigns/{campaign} failed: {error_text(answer)}; nothing was written",
                             hint="rerun later, or leave --campaign out")
        return Catalogue.from_body(campaign, answer.body)

    try:
        return asyncio.run(get())
    except (NotSent, Ambiguous) as exc:
        raise UsageError(f"cannot read campaign {campaign}: {exc}; nothing was written",
                         hint="check --api-url and the network, or leave --campaign out") from None
