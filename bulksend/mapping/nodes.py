"""YAML nodes: the mapping file's keys and constants, read from PyYAML's node tree.

The mapping is composed, not loaded (``yaml.compose``): each node keeps its
line for the problems, and a value is turned into Python only where the
mapping says it is a constant (``Nodes.plain``), then checked against the
field's type (``typed_constant``).
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from typing import Any, NoReturn

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from bulksend.mapping.getters import Converter
from bulksend.mapping.problems import Problem, Problems, RowError, join


class Nodes:
    """Reads one mapping file's nodes; reports the problems of its keys to ``problems``."""

    def __init__(self, problems: Problems) -> None:
        self.problems = problems
        self.constructor = SafeConstructor()
        self.walked: set[int] = set()  # ids of mapping nodes whose keys were checked
        self.plain_budget = 100_000  # YAML values read as constants, all told

    def entries(self, node: MappingNode, path: str) -> list[tuple[str, Node, Node]]:
        """The (name, key node, value node) of a mapping; reports odd and repeated keys.

        YAML merge keys (``<<: *anchor``) are applied first; a key of the mapping
        itself then overrides a merged one, as in PyYAML's own loading.
        """
        report = id(node) not in self.walked  # report each mapping's problems once
        self.walked.add(id(node))
        if report:
            seen: set[str] = set()
            for key_node, _value in node.value:
                if isinstance(key_node, ScalarNode) and not key_node.tag.endswith(":merge"):
                    name = str(key_node.value)
                    if name in seen:
                        self.problems.report(key_node, join(path, name), "appears twice")
                    seen.add(name)
        try:
            self.constructor.flatten_mapping(node)
        except yaml.YAMLError as error:
            if report:
                self.problems.report(node, path, f"cannot merge: {getattr(error, 'problem', error)}")
        found: dict[str, tuple[str, Node, Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                if report:
                    self.problems.report(key_node, path, "a key must be plain text")
                continue
            name = str(key_node.value)
            found.pop(name, None)  # the later one wins and takes the later place
            found[name] = (name, key_node, value_node)
        return list(found.values())

    def scalar(self, node: ScalarNode) -> Any:
        """A scalar as YAML reads it (text, number, boolean, date, None); Problem otherwise."""
        try:
            return self.constructor.construct_object(node)
        except yaml.YAMLError as error:
            raise Problem(f"cannot read value: {getattr(error, 'problem', error)}", node) from None
        except Exception:
            # An explicit tag on a value it does not fit (`!!int x`, `!!bool x`,
            # `!!timestamp x`): PyYAML's constructors raise whatever their parsing
            # meets (ValueError, TypeError, AttributeError...), not YAMLError.
            kind = node.tag.rsplit(":", 1)[-1]
            raise Problem(f"cannot read value {node.value!r} as {kind}, as its tag !!{kind} asks: "
                          f"remove the tag or write a value of that kind", node) from None

    def plain(self, node: Node, inside: frozenset[int] = frozenset()) -> Any:
        """A YAML value as JSON-ready Python (dates as ISO text); Problem otherwise.

        Aliases are followed, so a value that contains itself, or one that grows
        past a sane size through nested aliases ("billion laughs"), is refused.
        """
        self.plain_budget -= 1
        if self.plain_budget < 0:
            raise Problem("is too large (more than 100,000 values)", node)
        if id(node) in inside:
            raise Problem("contains itself (a recursive alias)", node)
        if isinstance(node, ScalarNode):
            return self._plain_scalar(node)
        inside = inside | {id(node)}
        if isinstance(node, SequenceNode):
            return [self.plain(item, inside) for item in node.value]
        if isinstance(node, MappingNode):
            try:
                self.constructor.flatten_mapping(node)
            except yaml.YAMLError as error:
                raise Problem(f"cannot merge: {getattr(error, 'problem', error)}", node) from None
            built: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, ScalarNode):
                    raise Problem("a key must be plain text", key_node)
                built[str(key_node.value)] = self.plain(value_node, inside)
            return built
        raise Problem("unsupported YAML value", node)  # pragma: no cover

    def _plain_scalar(self, node: ScalarNode) -> Any:
        value = self.scalar(node)
        if isinstance(value, datetime | date):
            return value.isoformat()
        if isinstance(value, float) and not math.isfinite(value):
            raise Problem(f"{node.value} cannot be sent as JSON", node)
        if value is None or isinstance(value, str | bool | int | float):
            return value
        raise Problem(f"a {type(value).__name__} value cannot be sent as JSON", node)


_EXPECTED = {
    "string": "text",
    "email": "an email address",
    "int": "a whole number",
    "bool": "true or false",
    "list": "a list of text",
    "date": "a date (YYYY-MM-DD)",
    "datetime": "a date and time with a UTC offset",
}


def typed_constant(value: Any, kind: str, node: Node, convert: Converter | None) -> Any:
    """Check a constant (a `value` or a `default`, as ``Nodes.plain`` read it)
    against the spec type ``kind``; the value to send, or Problem."""
    if value is None:
        raise Problem("is empty: give a value, or leave the field out", node)
    if isinstance(value, str):
        return _typed_text(value, kind, node, convert)
    if kind == "string" and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "bool" and (isinstance(value, bool) or value in (0, 1)):
        return bool(value)
    if kind == "list" and isinstance(value, list):
        items = [item for item in value if item is not None]
        if all(isinstance(item, str | int) and not isinstance(item, bool) for item in items):
            kept = [str(item).strip() for item in items]
            return [item for item in kept if item] or _problem("is an empty list", node)
    raise Problem(f"{json.dumps(value, default=str)} is not {_EXPECTED[kind]}", node)


def _typed_text(value: str, kind: str, node: Node, convert: Converter | None) -> Any:
    """A constant written as text, converted as a cell of the same text would be."""
    text = value.strip()
    if not text:
        raise Problem("is empty: give a value, or leave the field out", node)
    if kind == "email":
        text = text.lower()
    if convert is None:
        return text
    try:
        converted = convert(text)
    except RowError as error:
        raise Problem(error.message, node) from None
    if converted is None:
        raise Problem("is empty: give a value, or leave the field out", node)
    return converted


def _problem(message: str, node: Node) -> NoReturn:
    raise Problem(message, node)
