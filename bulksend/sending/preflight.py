"""The preflight: before the first POST, prove the key, the campaigns and the items.

GET /team proves the key (and gives the team's time zone); GET
/campaigns/{id} proves each campaign the rows use and lists its elements, which
the items the rows name must be (collect-api.md §6). The GETs are asked at once,
through the run's rate gate, and a 5xx is tried again as the run's retry
policy says (collect/retry.py). Nothing is sent when any check fails.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bulksend.collect.ids import is_id
from bulksend.collect.rategate import RateGate
from bulksend.collect.retry import RetryPolicy
from bulksend.common.errors import AbortError, AuthError, BulksendError, InputError
from bulksend.mapping.items import Catalogue

if TYPE_CHECKING:
    from bulksend.collect.client import Answer, Client
    from bulksend.common.progress import Progress
    from bulksend.settings import RunConfig

# A 5xx from the server is asked again: 5 tries, 1, 2, 4, 8 s apart (a 503's
# Retry-After instead), no wait longer than --max-pause.
TRIES = 5
RETRIED = (500, 502, 503, 504)


class PreflightError(InputError):
    """A campaign or item the rows use does not exist: input error, nothing sent."""


@dataclass
class Uses:
    """Campaigns and items the valid rows refer to, with example rows for messages."""

    campaigns: dict[str, list[int]] = field(default_factory=dict)
    items: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    # Campaign id -> its elements, filled by preflight (GET /campaigns/{id}).
    catalogues: dict[str, Catalogue] = field(default_factory=dict)

    def add(self, payload: dict[str, Any], row: int) -> None:
        campaign = str(payload.get("campaignId", ""))
        rows = self.campaigns.setdefault(campaign, [])
        if len(rows) < 5:
            rows.append(row)
        for item in payload.get("items") or []:
            kept = self.items.setdefault((campaign, str(item)), [])
            if len(kept) < 5:
                kept.append(row)


def rows_text(rows: list[int]) -> str:
    """``2, 7, 9, …``: the first three row numbers, for a message."""
    return ", ".join(str(r) for r in rows[:3]) + (", …" if len(rows) > 3 else "")


def preflight_retry(max_pause: float) -> RetryPolicy:
    """The preflight's retries: ``TRIES`` tries, steps of 1, 2, 4, 8 s without
    jitter (a handful of GETs, not a crowd), capped at ``max_pause``, no time cap."""
    return RetryPolicy(max_attempts=TRIES, max_time=math.inf, base=1.0, cap=max_pause, jitter=(1.0, 1.0))


async def preflight(config: RunConfig, uses: Uses, progress: Progress,
                    gate: RateGate | None = None, client: Client | None = None,
                    retry: RetryPolicy | None = None) -> object:
    """Before the first POST: GET /team proves the key; GET /campaigns/{id}
    proves each campaign and the item ids the rows ask for (collect-api.md §6).
    All are asked at once (``client``: over this one, else a client of its
    own); every call passes the run's rate gate, so the server's burst they
    use is not mistaken for room later (issue 18); ``retry``: how a 5xx is
    tried again (``preflight_retry``). Errors are told as if the calls had
    been made one by one: a refused key (AuthError, exit 3) first; then
    AbortError for a call that failed, PreflightError (exit 2) for campaigns
    and items that do not exist.
    Returns the team's time zone, GET /team's `tz` as answered (None if absent)."""
    from bulksend.collect.client import Client, error_text

    if client is None:
        async with Client(config.api.url, config.api.key, timeout=config.api.timeout, concurrency=4) as own:
            return await preflight(config, uses, progress, gate, own, retry)
    gate = gate or RateGate(config.pace.rate, progress=progress, max_pause=config.pace.max_pause)
    retry = retry or preflight_retry(config.pace.max_pause)
    campaigns = sorted(uses.campaigns.items())
    _refuse_odd_ids(config, campaigns)
    team, *answers = await _preflight_gets(
        client, gate, retry, ["/team", *(f"/campaigns/{c}" for c, _ in campaigns)])
    team = _answered("/team", team)
    if team.status != 200:
        raise AbortError(f"GET /team failed: {error_text(team)}; nothing was sent",
                         hint="the API may be down: rerun the same command later")
    team_tz = team.body.get("tz") if isinstance(team.body, dict) else None
    problems: list[str] = []
    for (campaign, rows), got in zip(campaigns, answers, strict=True):
        answer = _answered(f"/campaigns/{campaign}", got)
        if answer.status in (404, 400, 403):
            problems.append(f"campaign {campaign!r} does not exist ({error_text(answer)}); "
                            f"rows {rows_text(rows)}")
            continue
        if answer.status != 200 or not isinstance(answer.body, dict):
            raise AbortError(f"GET /campaigns/{campaign} failed: {error_text(answer)}; "
                             "nothing was sent", hint="rerun the same command later")
        # §6/§9: "an array of itemId"; campaign elements carry an `id` and, per
        # schema, an `itemId`. Either is sent as written; an element's name is
        # sent as its `id` (mapping/items.py, issue 15).
        catalogue = Catalogue.from_body(campaign, answer.body)
        uses.catalogues[campaign] = catalogue
        problems += _item_problems(catalogue, uses)
    if problems:
        raise PreflightError(
            f"{config.input.contacts}: " + "; ".join(problems[:5])
            + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "") + " — nothing was sent",
            hint="name an item by its element's id or its name, as listed; "
                 f"fix the file or {config.input.mapping}",
        )
    progress.event("preflight", f"key accepted; {len(uses.campaigns)} campaign(s) checked")
    return team_tz


async def _preflight_gets(client: Client, gate: RateGate, retry: RetryPolicy,
                          paths: list[str]) -> list[Answer | Exception]:
    """GET every path at once (``_get_answered``): each one's answer, or the
    error that stopped it, in ``paths``' order (see ``_answered``)."""
    from bulksend.collect.client import Ambiguous, NotSent

    async def get(path: str) -> Answer | Exception:
        try:
            return await _get_answered(client, gate, path, retry)
        except (NotSent, Ambiguous, BulksendError) as exc:
            return exc

    return list(await asyncio.gather(*(get(path) for path in paths)))


def _answered(path: str, got: Answer | Exception) -> Answer:
    """A preflight GET's answer, or its error raised as the run's: AuthError
    (exit 3) for a refused key, AbortError for a call not made or not read."""
    if isinstance(got, AuthError):
        raise AuthError(f"the API key was refused (HTTP 401 on GET {path}); nothing was sent",
                        hint="check COLLECT_API_KEY or --api-key-file") from None
    if isinstance(got, BulksendError):
        raise got
    if isinstance(got, Exception):
        raise AbortError(f"{got}; nothing was sent",
                         hint="check --api-url and the network, then rerun") from None
    return got


async def _get_answered(client: Client, gate: RateGate, path: str, retry: RetryPolicy) -> Answer:
    """A preflight GET through the gate (``lookup.gated_call``: 429s pause it,
    a quota-sized Retry-After stops the run); a 5xx is tried again as ``retry``
    says (a 503's Retry-After honoured); any other answer is returned, and the
    last 5xx once the tries are spent."""
    from bulksend.collect.lookup import gated_call

    started = retry.clock()
    failures = 0
    answer = await gated_call(client, gate, "GET", path)
    while answer.status in RETRIED:
        failures += 1
        if not await retry.again(failures, started, answer.retry_after):
            break
        answer = await gated_call(client, gate, "GET", path)
    return answer


def _item_problems(catalogue: Catalogue, uses: Uses) -> list[str]:
    """The items of ``uses`` that name no element of the catalogue's campaign, or
    several; the campaign's names are listed once, after its first problem."""
    problems = []
    for (campaign, item), rows in sorted(uses.items.items()):
        problem = catalogue.problem(item) if campaign == catalogue.campaign_id else None
        if problem is not None:
            problems.append(f"{problem.short}; rows {rows_text(rows)}")
    if problems:
        problems[0] += f" (campaign {catalogue.title()} has: {catalogue.names_text()})"
    return problems


def _refuse_odd_ids(config: RunConfig, campaigns: list[tuple[str, list[int]]]) -> None:
    """A campaign id that is not an id (``../team``, ``x?y=1``: it would change the
    URL it is put in, collect/client.py ``is_id``) stops the run before any
    request: PreflightError (exit 2) naming the rows (issue 25)."""
    odd = [f"campaign id {campaign[:80]!r} (rows {rows_text(rows)})" for campaign, rows in campaigns
           if not is_id(campaign)]
    if odd:
        raise PreflightError(
            f"{config.input.contacts}: " + "; ".join(odd[:5]) + " is not a campaign id (letters, digits,"
            " - and _ only) — nothing was sent",
            hint=f"copy the id from the campaign's address in the app into {config.input.mapping}"
                 " or the file")
