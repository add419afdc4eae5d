"""Columns: the mapping's column names matched to the input's header, and read per row.

Names match after ``reading.normal_name`` (Unicode NFC, runs of spaces,
characters no one can see), so "First  Name" finds "First Name"; a name that
does not match is reported with the closest header name and, when the two only
look alike, the character where they differ.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from typing import Any

from yaml.nodes import Node

from bulksend.mapping.getters import Finish, Getter, Values
from bulksend.mapping.problems import Problems, closest, quote
from bulksend.mapping.questions import choices
from bulksend.reading.cells import normal_name
from bulksend.reading.table import Header


class Columns:
    """The input's columns, as the mapping uses them; reports to ``problems``.

    ``header`` (``Table.header``) adds what the table does not read: the names
    several columns share, and the first rows (for the --header-row hint)."""

    def __init__(self, columns: Sequence[str], header: Header | None, problems: Problems) -> None:
        self.columns = list(columns)
        self.column_set = frozenset(columns)
        self.by_normal: dict[str, list[str]] = {}  # normal_name -> the header's names
        for column in self.columns:
            self.by_normal.setdefault(normal_name(column), []).append(column)
        self.header = header
        self.problems = problems
        self.asked: dict[str, None] = {}  # every column name the mapping gives (ordered set)
        self.missing = False  # a column the mapping names is not in the file
        self.used: dict[str, None] = {}  # the header's names the mapping reads (ordered set)
        self.fed: dict[str, list[tuple[str, str]]] = {}  # column -> (payload path, spec type) it fills

    def use(self, node: Node, path: str, column: str) -> str | None:
        """The header's name for a column the mapping names: the same text, or
        the one name equal to it after ``normal_name`` (NFC, spaces, invisible
        characters); None, with the problem reported, when there is none."""
        self.asked.setdefault(column, None)
        key = normal_name(column)
        matches = [column] if column in self.column_set else self.by_normal.get(key, [])
        ambiguous = self.header.ambiguous.get(key) if self.header is not None else None
        if ambiguous is not None and column not in self.column_set:
            self.problems.report(node, path, f"column {quote(column)} is ambiguous: the file has it on"
                                 f" columns {', '.join(ambiguous)}; rename all but one in the file's"
                                 " header row")
            return None
        if len(matches) > 1:
            self.problems.report(node, path, f"column {quote(column)} matches several columns of the file"
                                 f" ({', '.join(quote(m) for m in matches)}); name one exactly")
            return None
        if matches:
            self.used.setdefault(matches[0], None)
            return matches[0]
        asked = choices(column)
        if asked and all(normal_name(choice) in self.by_normal for choice in asked):
            listed = " or ".join(quote(choice) for choice in asked)
            self.problems.ask(node, path, f"a question to answer: which column is it, {listed}? Keep the"
                              " one to use (init's comment above says what each holds)")
            return None
        self.missing = True
        near = closest(column, self.columns)
        differs = None if near is None else _difference(column, near)
        hint = "" if near is None else f" (closest: {quote(near)}{': ' + differs if differs else ''})"
        self.problems.report(node, path, f"column {quote(column)} is not in the file{hint}")
        return None

    def feeds(self, column: str, path: str, spec_type: str) -> None:
        """Note that ``column`` fills the payload's ``path`` as ``spec_type`` (for ``Mapping.fed``)."""
        self.fed.setdefault(column, []).append((path, spec_type))

    def header_hint(self) -> str | None:
        """When a column is missing and one of the file's first rows holds every
        column the mapping names: that row, and the option that reads it; else,
        for a spreadsheet, the sheet read (issue 24: it may be another tab)."""
        if not self.missing or self.header is None or not self.asked:
            return None
        row = self.header.row_holding(self.asked)
        if row is None:
            sheet = self.header.sheet
            return None if sheet is None else (f"the sheet read is {sheet}, its header on row"
                                               f" {self.header.row}: --sheet reads another")
        return (f"row {row} of the file holds every column the mapping names (the header was read on"
                f" row {self.header.row}): pass --header-row {row}")


def column_getter(column: str, *, strip: bool, then: Finish) -> Getter:
    """One column's cell, stripped if ``strip``, then finished by ``then``."""
    finish = then.closure(f"column {quote(column)} is empty (required)")

    def get(values: Values) -> Any:
        text = values.get(column, "")
        return finish(text.strip() if strip else text)

    return get


def _shown(text: str) -> str:
    """Characters for a message, each one a person cannot tell apart by eye
    (not printable ASCII) with its code point: "é" (U+00E9)."""
    quoted = json.dumps(text, ensure_ascii=False)
    codes = " ".join(f"U+{ord(c):04X}" for c in text if not (c.isascii() and c.isprintable()))
    return f"{quoted} ({codes})" if codes else quoted


def _difference(wanted: str, found: str) -> str | None:
    """Where a mapping's column name first differs from a header name that
    looks the same (the difference is in characters that are not printable
    ASCII), e.g. 'the mapping has "é" (U+00E9) where the file has "e"'; None
    when the difference is plain to see."""
    matcher = difflib.SequenceMatcher(None, wanted, found, autojunk=False)
    for tag, a1, a2, b1, b2 in matcher.get_opcodes():
        ours, theirs = wanted[a1:a2], found[b1:b2]
        if tag == "equal":
            continue
        if (ours + theirs).isascii() and (ours + theirs).isprintable():
            return None
        if tag == "replace":
            return f"the mapping has {_shown(ours)} where the file has {_shown(theirs)}"
        if tag == "delete":
            return f"the mapping has {_shown(ours)} that the file has not"
        return f"the file has {_shown(theirs)} that the mapping has not"
    return None
