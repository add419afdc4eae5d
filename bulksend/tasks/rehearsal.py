"""``bulksend send … --sandbox``: rehearse a real file against an in-process sandbox (issue 15).

The real pipeline runs (reading, mapping, preflight, pre-send check, rate gate,
journal, results) against ``bulksend.sandbox`` on 127.0.0.1, with no key and no
network: the API URL and key are the sandbox's, whatever COLLECT_API_URL says.

A rehearsal's results must never be taken for real sends: a real run would
skip every row the rehearsal recorded ``sent``. So its results file has
"sandbox" in its name (``CONTACTS-sandbox-results.csv`` by default; any other
``--results`` is refused), its journal is marked (``world`` = ``sandbox``, see
``run._check_world``), and a real run refuses a file marked so, or one so named
whose journal is gone.

Campaigns the sandbox does not hold (the user's own) are stood in for by a
campaign with that id whose documents are the items the rows name, so the
rehearsal runs; the real campaign's elements are checked when sending for real.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bulksend.common.errors import UsageError
from bulksend.common.outcome import Summary
from bulksend.common.progress import Progress
from bulksend.mapping.questions import PLACEHOLDER
from bulksend.sending.run import check_pass, open_input
from bulksend.sending.stop import StopRequest
from bulksend.settings import InputSettings, RunConfig
from bulksend.store.world import MARK, is_rehearsal_name

__all__ = ["Rehearsal", "rehearsal_results", "rehearse"]

REHEARSAL_KEY: Final = "rehearsal-key"  # the in-process sandbox's key; never a real one
_ALPHABET: Final = "23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz"  # Meteor ids (§1)


def rehearsal_results(contacts: str, results: str | None) -> Path:
    """The results file of a rehearsal: ``results`` when its name holds
    "sandbox", else UsageError; by default ``CONTACTS-sandbox-results.csv``
    in the current folder (``stdin-sandbox-results.csv`` for ``-``)."""
    if results is None:
        stem = "stdin" if contacts == "-" else Path(contacts).stem
        return Path(f"{stem}-{MARK}-results.csv")
    path = Path(results)
    if not is_rehearsal_name(path):
        raise UsageError(
            f"--results {results}: a rehearsal's results file must have \"sandbox\" in its name, "
            "so that no one takes it for real sends",
            hint="drop --results (the default is CONTACTS-sandbox-results.csv), or name it e.g. "
                 f"{path.stem}-sandbox{path.suffix or '.csv'}",
        )
    return path


@dataclass
class Rehearsal:
    """What a rehearsal did besides its Summary: the sandbox's URL, how many
    requests it holds, and the campaigns it stood in for (id -> item names)."""

    url: str = ""
    created: int = 0
    stand_ins: dict[str, list[str]] = field(default_factory=dict)


def element_id(campaign: str, name: str) -> str:
    """A stable 17-character Meteor-style id for a stand-in element."""
    digest = hashlib.sha256(f"{campaign}\0{name}".encode()).digest()
    return "".join(_ALPHABET[b % len(_ALPHABET)] for b in digest[:17])


def stand_in_campaigns(source: InputSettings) -> dict[str, list[str]]:
    """The campaigns the rows use that the sandbox does not hold, each with the
    items the (first 2,000) rows name, as written. Reads the input once."""
    from bulksend.sandbox.catalogue import DEMO_CAMPAIGN_ID, ONBOARDING_CAMPAIGN_ID

    table, mapping = open_input(source)
    with table:
        _total, uses = check_pass(table, mapping)
    seeded = (DEMO_CAMPAIGN_ID, ONBOARDING_CAMPAIGN_ID)
    wanted: dict[str, list[str]] = {c: [] for c in uses.campaigns if c not in seeded}
    for campaign, item in uses.items:
        if campaign in wanted and item not in wanted[campaign]:
            wanted[campaign].append(item)
    return wanted


def campaign_body(campaign: str, items: list[str]) -> dict[str, Any]:
    """A stand-in for GET /campaigns/{campaign}: one document per item. An item
    that looks like an id (17 letters and digits) is the document's id."""
    documents = []
    for order, item in enumerate(items):
        is_id = len(item) == 17 and item.isalnum()
        documents.append({
            "id": item if is_id else element_id(campaign, item),
            "itemId": element_id(campaign, "item:" + item),
            "name": f"Document {item}" if is_id else item,
            "order": order, "visibility": "visible", "mandatory": True,
            "multipleupload": False, "extensions": ["pdf", "jpg", "png"],
        })
    return {"_id": campaign, "name": "rehearsal stand-in", "createdAt": "2026-01-01T00:00:00Z",
            "status": "open", "documents": documents, "forms": [], "texts": [], "pages": []}


def rehearse(config: RunConfig, progress: Progress,
             stop: StopRequest | None = None) -> tuple[Summary, Rehearsal]:
    """Run ``send_file`` against a sandbox started for the run (loopback, any
    free port, key REHEARSAL_KEY), with ``config``'s results file and options;
    ``stop`` as for send_file. Raises what send_file raises."""
    from bulksend.sandbox.config import SandboxConfig
    from bulksend.sandbox.server import running_sandbox
    from bulksend.sending.run import send_file

    done = Rehearsal(stand_ins=stand_in_campaigns(config.input))
    bodies = [campaign_body(c, items) for c, items in done.stand_ins.items()]
    with running_sandbox(SandboxConfig(api_key=REHEARSAL_KEY, campaigns=bodies)) as sandbox:
        done.url = sandbox.url
        rehearsal = dataclasses.replace(config, api=dataclasses.replace(config.api, url=sandbox.url,
                                                                        key=REHEARSAL_KEY),
                                        mode=dataclasses.replace(config.mode, sandbox=True))
        progress.event("sandbox", f"rehearsal against the in-process sandbox at {sandbox.url}: no key, "
                                  "nothing reaches Collect")
        summary = send_file(rehearsal, progress, stop)
        done.created = len(sandbox.snapshot().created)
    return summary, done


def closing_lines(done: Rehearsal, argv: list[str], results: Path, mapping: str) -> list[str]:
    """What to tell the person after a rehearsal: what it was, and how to go live
    (``argv``: the command line, ``mapping``: the mapping file it named)."""
    lines = [f"this was a rehearsal: the sandbox at {done.url} holds {done.created} request(s); "
             "nothing reached Collect",
             f"{results} records the rehearsal only: a real send never reads it"]
    for campaign, items in done.stand_ins.items():
        named = ", ".join(repr(i) for i in items[:5]) + (", …" if len(items) > 5 else "")
        lines.append(f"campaign {campaign} was stood in for"
                     + (f" (with the items the rows name: {named})" if items else "")
                     + "; sending for real checks it and its items against Collect")
    live = go_live_command(argv)
    steps = [("export COLLECT_API_KEY=...", "from the bottom of your Collect profile page"),
             (f"{live} --limit 5", "a canary: 5 real requests"),
             (live, "then the rest; rerun the same to resume")]
    width = max(len(command) for command, _why in steps)
    lines.append("to go live:")
    if PLACEHOLDER in done.stand_ins:
        lines.append(f"  first put your campaign's id in place of {PLACEHOLDER} in {mapping}")
    lines += [f"  {command:<{width}}   # {why}" for command, why in steps]
    return lines


def go_live_command(argv: list[str]) -> str:
    """``argv`` (bulksend send …) without --sandbox and --only-failed, and
    without its --results and --limit: the command that sends every row
    (issue 27: a rehearsal's --limit 1 is not the rest)."""
    args = ["bulksend"]
    rest = iter(argv[1:])
    for arg in rest:
        if arg in ("--sandbox", "--only-failed"):
            continue
        if arg in ("--results", "-o", "--limit"):
            next(rest, None)
            continue
        if arg.startswith(("--results=", "--limit=")) or (arg.startswith("-o") and len(arg) > 2):
            continue
        args.append(arg)
    return shlex.join(args)
