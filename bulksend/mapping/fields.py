"""Fields: which fields a mapping file may fill, and which spec types fit each.

The top-level keys follow the POST /request body (collect-api.md §4), plus
`key`; body.py compiles them, specs.py compiles each leaf field.
"""

from __future__ import annotations

from typing import Final

from bulksend.mapping.converters import TYPES

# What a field of the request body holds, and so which spec types fit it.
# A kind maps to (default type, allowed types); "any" is the free-form `data`.
KINDS: Final[dict[str, tuple[str, frozenset[str]]]] = {
    "string": ("string", frozenset({"string", "email", "date", "datetime"})),
    "email": ("email", frozenset({"email", "string"})),
    "due": ("date", frozenset({"date", "datetime"})),  # the request's dueDate (duedates.py)
    "bool": ("bool", frozenset({"bool"})),
    "list": ("list", frozenset({"list"})),
    "any": ("string", frozenset(TYPES)),
}

# Top-level keys follow the POST /request body (collect-api.md §4), plus `key` and `exclude`.
# A value is a kind of KINDS, or names the part of body.py that compiles it.
TOP_KEYS: Final[dict[str, str]] = {
    "campaignId": "string",
    "contact": "contact",
    "items": "list",
    "data": "object",
    "sample": "sample",
    "dueDate": "due",
    "createdBy": "string",
    "assignedTo": "string",
    "sendMessage": "bool",
    "sendCompletionMessage": "bool",
    "sendRejectionMessage": "bool",
    "sendReopenMessage": "bool",
    "esignDocs": "esignDocs",
    "esignTriggers": "list",
    "key": "key",
    # Not a body field: the do-not-contact list(s) every send with this mapping
    # reads (issue 28; sending/choosing.py), so a nightly job cannot forget it.
    "exclude": "exclude",
}
# The inline contact as the API's example sends it (collect-api.md §4); phone or
# language are not documented for contacts, so they are refused, not passed on.
CONTACT_FIELDS: Final[dict[str, str]] = {
    "email": "email",
    "firstName": "string",
    "lastName": "string",
    "company": "string",
    "data": "object",
}
# collect-api.md §4: sample is {itemId, url} and both keys are expected.
SAMPLE_FIELDS: Final[dict[str, str]] = {"itemId": "string", "url": "string"}
