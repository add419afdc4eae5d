"""Mapping: one spreadsheet row → one POST /request body and the row's key.

The YAML mapping file (PRODUCT.md, "Mapping file") is read once, checked against
the input's columns — every problem at once, each naming its line and key path —
and compiled into a tree of closures. ``Mapping.apply`` then runs those closures
for each row: no YAML, no regex compilation and no walking of the spec per row.

This package's surface is what it exports here. Its modules, by what they compile:

- ``loading``: ``load_mapping``, ``parse_mapping``, ``mapping_from_dict``: text → ``Mapping``.
- ``compiled``: ``Mapping`` (``apply``, the per-row hot path) and ``Mapped``, a row's result.
- ``body``: the request body's top level and objects (contact, data, sample, esignDocs).
- ``fields``: which fields exist (the POST /request body) and which types fit each.
- ``specs``: one leaf field: a column name, a constant, or a spec with options.
- ``columns``: column names matched to the header; reading a cell.
- ``converters``: the types (string, int, bool, date, datetime, list, email).
- ``duedates``: the dueDate: end of day, zones, past and far-ahead dates.
- ``templates``: "{First Name} {Last Name}".
- ``keys``: the row's key: key paths, emails compared ignoring case.
- ``getters``: the closures every field shares, and ``OMIT``.
- ``nodes``: the file's YAML nodes read as keys and constants.
- ``problems``: row errors, the file's problems with their line numbers, and their wording.
"""

from __future__ import annotations

from bulksend.mapping.compiled import Mapped, Mapping
from bulksend.mapping.converters import TYPES
from bulksend.mapping.duedates import END_OF_DAY, FAR_AHEAD_SECONDS, DueDates
from bulksend.mapping.fields import CONTACT_FIELDS, SAMPLE_FIELDS, TOP_KEYS
from bulksend.mapping.loading import load_mapping, mapping_from_dict, parse_mapping
from bulksend.mapping.specs import SPEC_OPTIONS

__all__ = [
    "CONTACT_FIELDS",
    "END_OF_DAY",
    "FAR_AHEAD_SECONDS",
    "SAMPLE_FIELDS",
    "SPEC_OPTIONS",
    "TOP_KEYS",
    "TYPES",
    "DueDates",
    "Mapped",
    "Mapping",
    "load_mapping",
    "mapping_from_dict",
    "parse_mapping",
]
