"""Problems: how a row's error and a mapping file's problem are raised, located and worded.

Two kinds of failure, found at two times:

- ``RowError``, raised while mapping one row (``Mapping.apply``); its message
  becomes that row's one-line error in the results.
- ``Problem``, raised while checking one value of the mapping file; the
  compiler catches it and reports it to ``Problems``, which collects every
  problem of the file, each starting with its line and key path
  ("line 4, contact.email: …"), so that all of them are shown at once.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from typing import Final

from yaml.nodes import MappingNode, Node, SequenceNode

from bulksend.reading.cells import normal_name


class RowError(Exception):
    """A row cannot be mapped; the message is that row's one-line error."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Problem(Exception):
    """A problem of the mapping file found while checking one value."""

    def __init__(self, message: str, node: Node | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.node = node


class Problems:
    """Every problem of one mapping file, in the order found.

    ``lines=False`` (a mapping given as a dict, which has no lines): each
    problem starts with its key path only."""

    __slots__ = ("asked", "lines", "messages")

    def __init__(self, *, lines: bool = True) -> None:
        self.lines = lines
        self.messages: list[str] = []
        self.asked = 0  # how many of the messages are questions to answer (questions.py)

    def __len__(self) -> int:
        return len(self.messages)

    def add(self, message: str) -> None:
        """A problem worded in full, with its place already in it."""
        self.messages.append(message)

    def report(self, node: Node, path: str, message: str) -> None:
        """A problem of ``node`` (its line) at the key path ``path`` ("" for the file)."""
        if not self.lines:
            self.messages.append(f"{path or 'the mapping'}: {message}")
            return
        where = f"line {line(node)}, {path}" if path else f"line {line(node)}"
        self.messages.append(f"{where}: {message}")

    def ask(self, node: Node, path: str, message: str) -> None:
        """A question ``init`` left in the file (questions.py): reported as any
        problem, and counted, so that ``init`` can write a file that holds only those."""
        self.report(node, path, message)
        self.asked += 1

    @property
    def only_questions(self) -> bool:
        """Whether every problem is a question to answer (and there is one)."""
        return 0 < self.asked == len(self.messages)


def line(node: Node) -> int:
    """The file's line (from 1) where ``node`` starts."""
    return int(node.start_mark.line) + 1


def join(path: str, name: str) -> str:
    """The key path of ``name`` inside ``path`` ("" is the top level)."""
    return f"{path}.{name}" if path else name


def describe(node: Node) -> str:
    """What a YAML node is, for a message: "a mapping", "a list", "nothing" or its quoted text."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag.endswith(":null"):
        return "nothing"
    return f"{quote(str(node.value))}"


# Characters that str.splitlines() treats as line breaks but json.dumps leaves as is.
_EXTRA_BREAKS: Final = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def quote(text: str, limit: int = 80) -> str:
    """Quote a cell or name for a one-line message (escaped, shortened)."""
    if len(text) > limit:
        text = text[:limit] + "…"
    try:
        text.encode("utf-8")
        ascii_only = False
    except UnicodeEncodeError:  # lone surrogates: escape everything
        ascii_only = True
    return json.dumps(text, ensure_ascii=ascii_only).translate(_EXTRA_BREAKS)


def closest(word: str, candidates: Sequence[str]) -> str | None:
    """The candidate nearest to word, ignoring case, or None when none is close."""
    by_lower: dict[str, str] = {}
    for candidate in candidates:
        by_lower.setdefault(normal_name(candidate).lower(), candidate)
    found = difflib.get_close_matches(normal_name(word).lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[found[0]] if found else None


def suggest(word: str, candidates: Sequence[str]) -> str:
    """' (closest: "name")' for a misspelt word, or "" when no candidate is close."""
    near = closest(word, candidates)
    return f" (closest: {quote(near)})" if near is not None else ""
