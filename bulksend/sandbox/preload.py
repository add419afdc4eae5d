"""Contacts and requests that exist before any POST (``preload``): read and checked.

A preload is a JSON file path or a dict ``{"contacts": [...], "requests": [...]}``
(format in ``bulksend sandbox --help`` and docs/operations.md). ``parse_preload``
returns the records, normalised, and every problem at once, each naming the file
(or "preload") and the entry; the store adds the records to its world.
"""

from __future__ import annotations

import json
from typing import Any, Final

from bulksend.sandbox.bodies import EMAIL, Invalid, parse_due_date
from bulksend.sandbox.catalogue import (
    DEMO_CAMPAIGN_ID,
    ONBOARDING_CAMPAIGN_ID,
    SEEDED_CONTACT_IDS,
    SEEDED_REQUEST_ID,
)

__all__ = ["parse_preload"]

_PRELOAD_CONTACT_KEYS: Final = frozenset({"_id", "email", "firstName", "lastName", "company", "data"})
_PRELOAD_REQUEST_KEYS: Final = frozenset(
    {"_id", "campaignId", "email", "contactId", "status", "createdAt", "dueDate", "data"}
)


def parse_preload(value: object) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """Read and check a preload (a JSON file path or a dict); return (records, problems).

    The records are normalised: timestamps in the ISO form the sandbox writes,
    ``status`` defaulting to "pending", contacts' ``data`` kept as custom attributes.
    Problems name the file (or "preload") and the entry, e.g. ``requests[2].status``.
    """
    empty: dict[str, list[dict[str, Any]]] = {"contacts": [], "requests": []}
    if value is None:
        return empty, []
    where = "preload"
    if isinstance(value, str):
        where = value
        try:
            with open(value, encoding="utf-8") as handle:
                value = json.load(handle)
        except OSError as exc:
            return empty, [f"preload file {where}: cannot be read ({exc.strerror or exc})"]
        except UnicodeDecodeError:
            return empty, [f"preload file {where}: not UTF-8 text"]
        except json.JSONDecodeError as exc:
            return empty, [f"{where}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})"]
    if not isinstance(value, dict) or set(value) - {"contacts", "requests"}:
        return empty, [f"{where}: must be an object with only `contacts` and `requests` (arrays)"]
    problems: list[str] = []
    records = {"contacts": [], "requests": []} | {k: v for k, v in value.items() if isinstance(v, list)}
    for key in ("contacts", "requests"):
        if key in value and not isinstance(value[key], list):
            problems.append(f"{where}: `{key}` must be an array")
    taken = {*SEEDED_CONTACT_IDS.values(), SEEDED_REQUEST_ID}
    emails: dict[str, str] = dict(SEEDED_CONTACT_IDS)  # email -> whose it is
    contacts = [_preload_contact(entry, f"{where}: contacts[{i}]", taken, emails, problems)
                for i, entry in enumerate(records["contacts"])]
    contact_ids = {*SEEDED_CONTACT_IDS.values(), *(c["_id"] for c in contacts if c.get("_id"))}
    requests = [_preload_request(entry, f"{where}: requests[{i}]", taken, contact_ids, problems)
                for i, entry in enumerate(records["requests"])]
    return {"contacts": contacts, "requests": requests}, problems


def _preload_common(
    entry: object, where: str, allowed: frozenset[str], taken: set[str], problems: list[str]
) -> dict[str, Any]:
    """Checks shared by contacts and requests: an object, known keys, a free `_id`, `data`."""
    if not isinstance(entry, dict):
        problems.append(f"{where} must be an object")
        return {}
    unknown = sorted(set(entry) - allowed)
    if unknown:
        problems.append(f"{where}: unknown field {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
    if "_id" in entry:
        if not (isinstance(entry["_id"], str) and entry["_id"]):
            problems.append(f"{where}._id must be a non-empty string")
        elif entry["_id"] in taken:
            problems.append(f"{where}._id {entry['_id']!r} is already used")
        else:
            taken.add(entry["_id"])
    if "data" in entry and not isinstance(entry["data"], dict):
        problems.append(f"{where}.data must be an object")
    return dict(entry)


def _preload_contact(
    entry: object, where: str, taken: set[str], emails: dict[str, str], problems: list[str]
) -> dict[str, Any]:
    record = _preload_common(entry, where, _PRELOAD_CONTACT_KEYS, taken, problems)
    if not record:
        return record
    address = record.get("email")
    if not (isinstance(address, str) and EMAIL.fullmatch(address)):
        problems.append(f"{where}.email {address!r} is not an email address")
    elif address in emails:
        problems.append(f"{where}.email {address} is already a contact ({emails[address]}): list it once")
    else:
        record.setdefault("_id", None)
        emails[address] = record["_id"] or where
    for key in ("firstName", "lastName", "company"):
        if key in record and not isinstance(record[key], str):
            problems.append(f"{where}.{key} must be a string")
    return record


def _preload_request(
    entry: object, where: str, taken: set[str], contact_ids: set[str], problems: list[str]
) -> dict[str, Any]:
    record = _preload_common(entry, where, _PRELOAD_REQUEST_KEYS, taken, problems)
    if not record:
        return record
    if record.get("campaignId") not in {DEMO_CAMPAIGN_ID, ONBOARDING_CAMPAIGN_ID}:
        known = f"{DEMO_CAMPAIGN_ID} (Vehicle documents) or {ONBOARDING_CAMPAIGN_ID} (Employee onboarding)"
        campaign = record.get("campaignId")
        problems.append(f"{where}.campaignId {campaign!r} is not a sandbox campaign: use {known}")
    if ("email" in record) == ("contactId" in record):
        problems.append(f"{where}: give exactly one of `email` and `contactId`")
    elif "email" in record and not (isinstance(record["email"], str) and EMAIL.fullmatch(record["email"])):
        problems.append(f"{where}.email {record['email']!r} is not an email address")
    elif "contactId" in record and record["contactId"] not in contact_ids:
        problems.append(f"{where}.contactId {record['contactId']!r} is not a seeded or preloaded contact _id")
    status = record.setdefault("status", "pending")
    if not (isinstance(status, str) and status):
        problems.append(f"{where}.status must be a status name such as pending, completed or cancelled")
    for key in ("createdAt", "dueDate"):
        if record.get(key) is None:
            continue
        try:
            record[key] = _timestamp(record[key])
        except Invalid:
            problems.append(
                f"{where}.{key} {record[key]!r} is not a timestamp "
                "(\"2022-07-04 07:20:06 UTC\" or ISO 8601, §1)"
            )
    return record


def _timestamp(value: object) -> str:
    """A §1 timestamp in either documented form, as the ISO UTC form the sandbox writes."""
    if isinstance(value, str) and value.endswith(" UTC"):
        value = value.removesuffix(" UTC") + "+00:00"
    result = parse_due_date(value)
    if result is None:
        raise Invalid(400, "a timestamp is required")
    return result
