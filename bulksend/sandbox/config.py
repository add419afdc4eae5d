"""How the sandbox behaves: ``SandboxConfig``, its checks, the strict profile, the fates.

A fate is how one POST /request(s) is answered: "ok", or a fault that
collect-api.md (§2, §3, §9) or plain HTTP allows. ``SCRIPT_FATES`` names them all;
``RATE_BANDS`` says which rate draws which. ``config_problems`` reports every
problem of a configuration at once; the sandbox refuses to start with any.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Final

from bulksend.sandbox.bodies import is_str_list
from bulksend.sandbox.preload import parse_preload

__all__ = [
    "CREATED_FATES",
    "DEFAULT_API_KEY",
    "FAULT_FIELDS",
    "LOOKUP_FAULTS",
    "NOTHING_CREATED_FATES",
    "RATE_BANDS",
    "SCRIPT_FATES",
    "SandboxConfig",
    "config_problems",
]

DEFAULT_API_KEY: Final = "sandbox-key"

# The fates a POST /request(s) can meet: "ok" is a normal answer; the others are
# faults, each allowed by collect-api.md (§2, §3, §9) or by plain HTTP.
NOTHING_CREATED_FATES: Final = (  # answered without processing the body
    "500",
    "503",
    "dropped",
    "401",
    "quota-429",
    "redirect-302",
    "redirect-307",
    "refused-200",
)
CREATED_FATES: Final = (  # processed (requests created), then answered oddly
    "ambiguous",
    "slow",
    "created-500",
    "created-502",
    "created-504",
    "empty-200",
    "html-200",
    "warned-200",
)
SCRIPT_FATES: Final = (  # every fate, in the order --help lists them
    "ok",
    "500",
    "503",
    "dropped",
    "ambiguous",
    "slow",
    "created-500",
    "created-502",
    "created-504",
    "refused-200",
    "empty-200",
    "html-200",
    "warned-200",
    "redirect-302",
    "redirect-307",
    "quota-429",
    "401",
)
assert set(SCRIPT_FATES) == {"ok", *NOTHING_CREATED_FATES, *CREATED_FATES}
# The random draw's bands, in this order: a seed gives the same pattern it gave
# before the later bands existed, as long as their rates are 0.
RATE_BANDS: Final = (
    ("fail_rate", ("500", "503")),
    ("drop_rate", ("dropped",)),
    ("ambiguous_rate", ("ambiguous",)),
    ("slow_rate", ("slow",)),
    ("created_5xx_rate", ("created-500", "created-502", "created-504")),
    ("odd_200_rate", ("refused-200", "empty-200", "html-200", "warned-200")),
    ("redirect_rate", ("redirect-302", "redirect-307")),
    ("unavailable_rate", ("503",)),
)
RATE_FIELDS: Final = tuple(name for name, _ in RATE_BANDS)
FAULT_FIELDS: Final = frozenset(
    {
        "rate_limit",
        "burst",
        "retry_after_format",
        *RATE_FIELDS,
        "slow_delay",
        "latency",
        "script",
        "redirect_to",
        "embedded_order",
        "case_sensitive_emails",
        "quota_after",
        "quota_retry_after",
        "lookup_fault",
        "clock_skew",
        "preload",
        "progress_rate",
    }
)
_RETRY_AFTER_FORMATS: Final = ("seconds", "http-date", "none")
_EMBEDDED_ORDERS: Final = ("newest", "oldest")
LOOKUP_FAULTS: Final = ("html", "object", "404", "500")


@dataclass
class SandboxConfig:
    """How the sandbox behaves. Every field but api_key and seed can change at run time.

    Rates are shares of the POST /request(s) calls that pass the rate limit and the
    key check: one uniform draw per such POST picks at most one fault, so the rates
    together must not exceed 1. ``script`` overrides the draw for the next POSTs.
    ``strict()`` turns on every documented-worst behaviour that still lets a run end.
    """

    api_key: str = DEFAULT_API_KEY
    seed: int = 0
    rate_limit: float | None = None  # token-bucket refill, calls per second; None: no limit
    burst: int = 1  # bucket size: 1 means calls must be spaced 1/rate_limit apart
    retry_after_format: str = "seconds"  # "seconds" | "http-date" | "none"
    fail_rate: float = 0.0  # POSTs answered 500 or 503 (half each), nothing created
    unavailable_rate: float = 0.0  # POSTs answered 503 alone, nothing created (§2: retry later)
    drop_rate: float = 0.0  # POSTs whose connection is closed before processing
    ambiguous_rate: float = 0.0  # POSTs processed, then the connection closed unanswered
    slow_rate: float = 0.0  # POSTs processed and answered only after slow_delay
    slow_delay: float = 5.0
    latency: float = 0.0  # seconds added to every /v1 call
    # POSTs processed, then answered 500, 502 or 504 (a third each; §9: a 5xx other
    # than 503 does not say "not created"). 500 has a JSON body, 502/504 a gateway's HTML.
    created_5xx_rate: float = 0.0
    # POSTs answered 200 with a body that is not {request, errors: []} (§9), a quarter
    # each: refused-200 (nothing created, request null + errors), empty-200 ({}),
    # html-200 (an HTML page), warned-200 (the request and a non-empty errors).
    odd_200_rate: float = 0.0
    # Fates for the next POSTs, one consumed per POST, before the draw (which still
    # happens, so the random pattern after the script does not shift). See SCRIPT_FATES.
    script: list[str] = field(default_factory=list)
    redirect_to: str = ""  # base URL (ending in /v1) that the redirect fates point to
    redirect_rate: float = 0.0  # POSTs answered 302 or 307 (half each), nothing created
    embedded_order: str = "newest"  # GET /contacts/{id} requests: "newest" or "oldest" first (§6)
    # True: contacts are matched by exact email, on POST and GET /contacts?email= (§6/§7).
    # False: case-insensitively. The email is kept as first sent either way.
    case_sensitive_emails: bool = True
    quota_after: int | None = None  # once this many requests were created: every POST 429
    quota_retry_after: float = 3600.0  # the Retry-After of a quota 429, seconds
    lookup_fault: str | None = None  # every look-up GET: "html" | "object" | "404" | "500"
    clock_skew: float = 0.0  # seconds added to the clock behind every createdAt written
    # Contacts and requests that exist before any POST: a JSON file path or a dict
    # (format in bulksend sandbox --help and docs/operations.md).
    preload: str | dict[str, Any] | None = None
    team_tz: str = "Europe/Paris"  # GET /team's `tz`: the zone a due day ends in (issue 17)
    # Issue 14: steps per open request per second through the statuses of §7
    # (pending -> waiting/due/completed/error/on-hold, waiting -> completed...),
    # as clients and the team would move them; 0: requests stay as they are.
    progress_rate: float = 0.0
    # Campaigns added to the seeded two, in GET /campaigns/{id}'s shape ({_id, name,
    # documents, forms, texts, pages}); `send --sandbox` stands in for the user's own.
    campaigns: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def strict(cls, **overrides: Any) -> SandboxConfig:
        """Every documented-worst behaviour at once, at rates a run still finishes under.

        Embedded requests oldest first (capped at 50), case-sensitive emails, 3% of
        POSTs created then answered 500/502/504, 3% odd 200s, 3% each of 503/500
        (nothing created), dropped and ambiguous. No quota, look-up fault, redirect or
        slow answer: those stop or stall a run, and stay separate options.
        ``overrides`` are SandboxConfig fields set on top.
        """
        profile: dict[str, Any] = {
            "embedded_order": "oldest",
            "case_sensitive_emails": True,
            "created_5xx_rate": 0.03,
            "odd_200_rate": 0.03,
            "fail_rate": 0.03,
            "drop_rate": 0.03,
            "ambiguous_rate": 0.03,
        }
        return cls(**(profile | overrides))


def config_problems(config: SandboxConfig) -> list[str]:
    """Every problem with a configuration, so they can be reported together."""
    problems: list[str] = []
    if not isinstance(config.api_key, str) or not config.api_key:
        problems.append("api_key must be a non-empty string")
    if not _is_int(config.seed):
        problems.append("seed must be an integer")
    if config.rate_limit is not None and not (_is_number(config.rate_limit) and config.rate_limit > 0):
        problems.append("rate_limit must be a positive number of calls per second, or None")
    if not (_is_int(config.burst) and config.burst >= 1):
        problems.append("burst must be an integer >= 1")
    if config.retry_after_format not in _RETRY_AFTER_FORMATS:
        problems.append("retry_after_format must be one of " + ", ".join(_RETRY_AFTER_FORMATS))
    problems.extend(_rate_problems(config))
    for name in ("slow_delay", "latency", "quota_retry_after", "progress_rate"):
        value = getattr(config, name)
        if not (_is_number(value) and value >= 0):
            problems.append(f"{name} must be a number of seconds >= 0")
    problems.extend(_strict_option_problems(config))
    problems.extend(parse_preload(config.preload)[1])
    if not isinstance(config.team_tz, str):  # any text: a client must cope with an unknown zone
        problems.append("team_tz must be a string (an IANA time zone such as Europe/Paris)")
    return problems


def _rate_problems(config: SandboxConfig) -> list[str]:
    problems: list[str] = []
    for name in RATE_FIELDS:
        value = getattr(config, name)
        if not (_is_number(value) and 0.0 <= value <= 1.0):
            problems.append(f"{name} must be a number between 0 and 1")
    numbers = [getattr(config, name) for name in RATE_FIELDS]
    if all(_is_number(value) for value in numbers) and sum(numbers) > 1.0 + 1e-9:
        problems.append(" + ".join(RATE_FIELDS) + " must not exceed 1")
    return problems


def _strict_option_problems(config: SandboxConfig) -> list[str]:
    """Problems with the options of issue 10's documented-worst behaviours."""
    problems: list[str] = []
    script = config.script
    if not is_str_list(script):
        problems.append("script must be a list of fate names")
    else:
        unknown = [name for name in script if name not in SCRIPT_FATES]
        if unknown:
            problems.append(f"script: unknown fate {unknown[0]!r} (known: {', '.join(SCRIPT_FATES)})")
    redirects = (_is_number(config.redirect_rate) and config.redirect_rate > 0) or (
        is_str_list(script) and any(name.startswith("redirect-") for name in script)
    )
    if not isinstance(config.redirect_to, str):
        problems.append("redirect_to must be a base URL string")
    elif config.redirect_to and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", config.redirect_to):
        problems.append(f"redirect_to {config.redirect_to!r} must be an http:// or https:// base URL")
    elif redirects and not config.redirect_to:
        problems.append("redirect_to must be set (a base URL such as http://127.0.0.1:9/v1) for redirects")
    if config.embedded_order not in _EMBEDDED_ORDERS:
        problems.append("embedded_order must be one of " + ", ".join(_EMBEDDED_ORDERS))
    if not isinstance(config.case_sensitive_emails, bool):
        problems.append("case_sensitive_emails must be true or false")
    if config.quota_after is not None and not (_is_int(config.quota_after) and config.quota_after >= 0):
        problems.append("quota_after must be a number of requests >= 0, or None")
    if config.lookup_fault is not None and config.lookup_fault not in LOOKUP_FAULTS:
        problems.append("lookup_fault must be one of " + ", ".join(LOOKUP_FAULTS) + ", or None")
    if not _is_number(config.clock_skew):
        problems.append("clock_skew must be a number of seconds (negative: the server is behind)")
    return problems


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
