"""Trying bulksend without Collect: ``demo`` (the whole pipeline on the bundled
samples against an in-process sandbox) and ``sandbox`` (a local stand-in for
the Collect API, for trials, tests and benchmarks). The sandbox and aiohttp
are imported only when one of them runs."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from bulksend.cli.shared import CONTEXT, Command, fail
from bulksend.common.errors import BulksendError, UsageError


@click.command(cls=Command, context_settings=CONTEXT)
@click.option("--results", "-o", default="demo-results.csv", show_default=True,
              help="Where the demo writes its results.")
def demo(results: str) -> None:
    """Run the whole pipeline on the bundled samples against an in-process sandbox.

    Needs no API key and no network: the sandbox runs on 127.0.0.1 with a mild
    rate limit and a few injected faults, and the results go to demo-results.csv.

    \b
    Example:
      bulksend demo && bulksend report demo-results.csv
    """
    from bulksend.tasks.demo import run_demo

    try:
        status = run_demo(Path(results))
    except BulksendError as exc:
        fail(exc)
    sys.exit(int(status))


def _parse_script(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    """``--script ok,created-504,ambiguous``: the fates of the next POSTs, in order.

    The names are checked with the rest of the config (bulksend.sandbox.config_problems),
    so that this module need not import the sandbox (and aiohttp) for --help.
    """
    if value is None:
        return None
    return [name.strip() for name in value.split(",") if name.strip()]


_SANDBOX_EPILOG = """\b
Fates of a POST /request(s) (for --script; the rates draw them at random):
  ok            processed and answered 200 {request, errors: []}
  500           answered 500, nothing created
  503           answered 503 (down for maintenance), nothing created
  dropped       connection closed before processing: nothing created
  ambiguous     created, then the connection closed unanswered
  slow          created, answered after --slow-delay
  created-500   created, then answered 500 (JSON body)
  created-502   created, then answered 502 by a "gateway" (HTML body)
  created-504   created, then answered 504 by a "gateway" (HTML body)
  refused-200   200 {"request": null, "errors": [...]}, nothing created
  empty-200     created, answered 200 {}
  html-200      created, answered 200 with an HTML page
  warned-200    created, answered 200 {request, errors: [one message]}
  redirect-302  302 to --redirect-to, nothing created
  redirect-307  307 to --redirect-to, nothing created
  quota-429     429 with Retry-After: --quota-retry-after, nothing created
  401           401 (as if the key were revoked), nothing created
POST /requests meets the same fates ({"requests": [...]} in place of "request").

\b
--strict turns on, at once:
  --embedded-order oldest --case-sensitive-emails --created-5xx-rate 0.03
  --odd-200-rate 0.03 --fail-rate 0.03 --drop-rate 0.03 --ambiguous-rate 0.03
Options given beside --strict override it. Quotas, look-up faults, redirects and
slow answers stop or stall a run, so --strict leaves them to their own options.

\b
--preload FILE (JSON) adds contacts and requests that exist before any POST
(a lost journal, requests sent from the Collect app). They are visible to
every look-up and listing but are not among the requests created through
the API (/_sandbox/requests); a reset (POST /_sandbox/reset) reloads them:
  {"contacts": [{"email": "ann@example.com", "firstName": "Ann",
                 "_id"?, "lastName"?, "company"?, "data"?: {...}}],
   "requests": [{"campaignId": "xvr69EYLKXvTkfYuk",
                 "email": "ann@example.com"  (or "contactId": "..."),
                 "status"?: "pending|completed|due|waiting|archived|cancelled|error|<custom>",
                 "_id"?, "createdAt"?, "dueDate"?, "data"?: {...}}]}
Fields marked ? are optional; status defaults to pending, createdAt to now;
timestamps as "2022-07-04 07:20:06 UTC" or ISO 8601. A request's email names
a contact exactly as written (a new contact is made if there is none).
Campaigns: xvr69EYLKXvTkfYuk (Vehicle documents), zZCYitJRjp8n7XG5Q (Employee onboarding).

\b
PATCH /request (collect-api.md §7) takes status pending, completed, waiting,
canceled (this spelling; lists say cancelled), archived or the custom status
on-hold; GET /_sandbox/patches lists every PATCH it applied. --progress-rate R
moves open requests on by themselves, R steps per request per second.

\b
Change any fault while it runs:
  curl -X POST http://127.0.0.1:8080/_sandbox/faults -H 'Content-Type: application/json' \\
       -d '{"script": ["created-504", "ok"], "lookup_fault": null}'
"""


def _share_of_posts(flag: str, help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A sandbox option: the share of POSTs (0 to 1) that meet a fault."""
    return click.option(flag, type=click.FloatRange(0, 1), default=0.0, show_default=True, help=help)


@click.command(cls=Command, context_settings=CONTEXT, epilog=_SANDBOX_EPILOG)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port (0: any free port).")
@click.option("--api-key", "api_key", default="sandbox-key", show_default=True,
              help="The one key the sandbox accepts.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for ids and faults.")
@click.option("--strict", is_flag=True,
              help="Every documented-worst behaviour at rates a run still finishes under (see below).")
@click.option("--rate-limit", type=click.FloatRange(0, min_open=True), metavar="PER_SECOND",
              help="Token-bucket limit; beyond it: 429 with Retry-After.")
@click.option("--burst", type=click.IntRange(1), default=1, show_default=True,
              help="Token-bucket size.")
@click.option("--retry-after-format", type=click.Choice(["seconds", "http-date", "none"]),
              default="seconds", show_default=True)
@_share_of_posts("--fail-rate",
                  "Share of POSTs answered 500/503 (nothing created).")
@_share_of_posts("--unavailable-rate",
                  "Share of POSTs answered 503 alone (nothing created; --fail-rate mixes in 500s).")
@_share_of_posts("--drop-rate",
                  "Share of POSTs whose connection is dropped before processing.")
@_share_of_posts("--ambiguous-rate",
                  "Share of POSTs created, then the connection dropped.")
@_share_of_posts("--slow-rate",
                  "Share of POSTs created and answered only after --slow-delay.")
@click.option("--slow-delay", type=click.FloatRange(0), default=5.0, show_default=True)
@click.option("--latency", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Seconds added to every answer.")
@_share_of_posts("--created-5xx-rate",
                  "Share of POSTs created, then answered 500, 502 or 504 (a 5xx is not 'not created').")
@_share_of_posts("--odd-200-rate",
                  "Share of POSTs answered refused-200, empty-200, html-200 or warned-200 (see below).")
@_share_of_posts("--redirect-rate",
                  "Share of POSTs answered 302/307 to --redirect-to, nothing created.")
@click.option("--redirect-to", metavar="BASE_URL", default="",
              help="Where redirects point, e.g. http://127.0.0.1:8081/v1 (Location: BASE_URL/request).")
@click.option("--script", metavar="FATE,...", callback=_parse_script,
              help="Fates of the first POSTs, in order, before the random ones (see below).")
@click.option("--embedded-order", type=click.Choice(["newest", "oldest"]), default="newest",
              show_default=True,
              help="Order of the (at most 50) requests in GET /contacts/{id}; oldest: a contact's "
                   "newest requests fall off beyond 50.")
@click.option("--case-sensitive-emails/--case-insensitive-emails", default=True, show_default=True,
              help="Match contacts by exact email (as GET /contacts?email= is documented), or ignoring case.")
@click.option("--quota-after", type=click.IntRange(0), metavar="N",
              help="After N requests created, every POST is answered 429 and creates nothing.")
@click.option("--quota-retry-after", type=click.FloatRange(0), default=3600.0, show_default=True,
              metavar="SECONDS", help="The Retry-After of the quota's 429.")
@click.option("--lookup-fault", type=click.Choice(["html", "object", "404", "500"]),
              help="Every GET /requests, /requests/{id}, /contacts, /contacts/{id} answers an HTML "
                   "page (200), a JSON object wrapping the data, a 404 or a 500.")
@click.option("--clock-skew", type=float, default=0.0, show_default=True, metavar="SECONDS",
              help="Added to the server clock for createdAt (-600: 10 minutes behind).")
@click.option("--preload", metavar="FILE",
              help="JSON file of contacts and requests that exist before any POST (format below).")
@click.option("--progress-rate", type=click.FloatRange(0), default=0.0, show_default=True,
              metavar="PER_SECOND",
              help="Open requests move on by themselves (pending -> waiting, due, completed, error, "
                   "on-hold; waiting -> completed), this many steps per request per second.")
@click.pass_context
def sandbox(ctx: click.Context, /, host: str, port: int, strict: bool, **options: Any) -> None:
    """Run a local stand-in for the Collect API (for trials, tests and benchmarks).

    By default it answers as kindly as the docs allow; the options below (or
    --strict) make it behave every other way collect-api.md allows.

    \b
    Example:
      bulksend sandbox --port 8080 --rate-limit 20 --fail-rate 0.05
      bulksend sandbox --port 8080 --strict --preload existing.json
      # in another shell:
      COLLECT_API_KEY=sandbox-key bulksend send samples/contacts.csv \\
          -m mapping.example.yaml --api-url http://127.0.0.1:8080/v1
    """
    from bulksend.sandbox.config import SandboxConfig, config_problems
    from bulksend.sandbox.server import serve

    given = {name: value for name, value in options.items()
             if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT}
    config = SandboxConfig.strict(**given) if strict else SandboxConfig(**given)
    problems = config_problems(config)
    if problems:
        fail(UsageError("sandbox: " + "; ".join(problems),
                        hint="see bulksend sandbox --help for each option and the --preload format"))

    def ready(url: str) -> None:
        profile = " (strict)" if strict else ""
        click.echo(f"sandbox{profile} listening on {url}  (key: set COLLECT_API_KEY to the --api-key value)")
        click.echo(f"inspect: {url.rsplit('/v1', 1)[0]}/_sandbox/requests   stop: Ctrl-C")

    try:
        serve(config, host, port, ready)
    except OSError as exc:
        fail(UsageError(f"cannot listen on {host}:{port}: {exc.strerror}",
                        hint="pick another --port, or --port 0 for any free one"))
