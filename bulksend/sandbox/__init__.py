"""The sandbox: a faithful local stand-in for the Collect API, with injectable faults.

It serves what bulksend uses of collect-api.md §1-7 on loopback: Basic auth (§1),
POST /request (§4) and POST /requests (§5) validated strictly, the look-ups that
reconciliation needs (§6), the read-only catalogue (§7), and PATCH /request (§7),
with requests that move through their statuses over time (``progress_rate``).
Where the reference says "not documented" (error bodies, batch partial failure,
Retry-After), the sandbox picks the least convenient plausible behaviour, so a
client that works here does not lean on luck: error bodies are
``{"message": ...}``, a batch skips bad contacts and returns its requests in
shuffled order, 429 may or may not carry Retry-After.

Faults are drawn from the seed: one uniform draw per authenticated, admitted POST
decides its fate (see SCRIPT_FATES: 500/503, dropped, ambiguous, slow, created then
answered 5xx, a 200 that is not {request, errors: []}, a redirect, or fine). That
stream is kept apart from the one that generates ids and shuffles batches, so the
n-th POST's fate depends only on (seed, n) and not on whether earlier POSTs were
valid. A ``script`` of fates overrides the draw for the next POSTs (the draw still
happens). Beyond single POSTs, the options of issue 10 make the sandbox answer the
other ways collect-api.md allows (§6, §7, §9): embedded requests oldest first,
case-sensitive emails, a quota with a long Retry-After, look-ups it cannot answer
in the documented shape, a skewed clock, and contacts and requests that existed
before any POST (``preload``). ``SandboxConfig.strict()`` turns on the ones a run
can finish under.

The package, one concern a module (read a call's path top to bottom):

    server.py    Sandbox: start/stop, inspection and control from any thread;
                 running_sandbox (tests), serve (``bulksend sandbox``)
    routes.py    method + path -> handler, for the API and the control plane
    gate.py      every /v1 call: counted, latency, rate limit, auth, its fate
    handlers.py  /v1: parse HTTP -> store or look-up -> JSON; no state
    admin.py     /_sandbox: the control plane (created, stats, faults, reset)
    backend.py   store + faults + counts under one configuration; fault changes
    store.py     all state and rules: contacts, requests, creation, PATCH, progress
    lookups.py   the GETs' answers, computed from the store
    bodies.py    POST bodies and list queries checked for shape; ``Invalid``
    records.py   a contact and a request, and their JSON
    catalogue.py the seeded campaigns, team, users, contacts, request; ids
    preload.py   contacts and requests that exist before any POST, checked
    progress.py  PATCH /request's rules and requests moving on by themselves
    faults.py    the fates (script, draw, quota) and the rate limit's bucket
    replies.py   error bodies, HTML pages, Retry-After, a dropped connection
    stats.py     the call counters
    config.py    SandboxConfig, config_problems, the strict profile, fate names

Every public name is importable from ``bulksend.sandbox`` itself.
"""

from bulksend.sandbox.catalogue import (
    DEMO_CAMPAIGN_ID,
    DEMO_ITEM_IDS,
    ONBOARDING_CAMPAIGN_ID,
    ONBOARDING_ITEM_IDS,
    SEEDED_CONTACT_IDS,
    SEEDED_REQUEST_ID,
    USER_IDS,
)
from bulksend.sandbox.config import (
    DEFAULT_API_KEY,
    LOOKUP_FAULTS,
    SCRIPT_FATES,
    SandboxConfig,
    config_problems,
)
from bulksend.sandbox.progress import CUSTOM_STATUSES
from bulksend.sandbox.server import Sandbox, SandboxSnapshot, running_sandbox, serve

__all__ = [
    "CUSTOM_STATUSES",
    "DEFAULT_API_KEY",
    "DEMO_CAMPAIGN_ID",
    "DEMO_ITEM_IDS",
    "LOOKUP_FAULTS",
    "ONBOARDING_CAMPAIGN_ID",
    "ONBOARDING_ITEM_IDS",
    "SCRIPT_FATES",
    "SEEDED_CONTACT_IDS",
    "SEEDED_REQUEST_ID",
    "USER_IDS",
    "Sandbox",
    "SandboxConfig",
    "SandboxSnapshot",
    "config_problems",
    "running_sandbox",
    "serve",
]
