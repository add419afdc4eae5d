"""Keys: a row's identity, read from its payload at the mapping's key paths.

The key (PRODUCT.md, "Mapping file": `key`) is what the journal knows a row by:
two rows with the same key are one request, sent once. It is the payload's
values at the key paths ("campaignId", "contact.email", ...), each as text,
joined by "|". Emails are compared ignoring case: a key path that is one is
lower-cased, and one that holds some (an object) has those lower-cased inside.
The default key is campaignId and the contact's email (or the contact id).
"""

from __future__ import annotations

import json
from typing import Any, Final

from yaml.nodes import Node, ScalarNode, SequenceNode

from bulksend.mapping.problems import Problems, RowError, describe, join, quote, suggest

KEY_SEPARATOR: Final = "|"

# One key path, ready for each row: (path, its steps, whether it is an email,
# the steps inside it to the emails it holds).
KeyPart = tuple[str, tuple[str, ...], bool, tuple[tuple[str, ...], ...]]


def key_plan(key_paths: list[str], folded: frozenset[str]) -> tuple[KeyPart, ...]:
    """The key paths split into steps once; ``folded`` are the payload paths of emails."""
    return tuple(
        (path, tuple(path.split(".")), path in folded,
         tuple(tuple(f.split(".")[len(path.split(".")):]) for f in folded if f.startswith(path + ".")))
        for path in key_paths
    )


def row_key(payload: dict[str, Any], plan: tuple[KeyPart, ...]) -> str:
    """A mapped payload's key; RowError when a key part is empty."""
    parts = []
    for path, steps, fold, inside in plan:
        value: Any = payload
        for step in steps:
            value = value.get(step) if isinstance(value, dict) else None
        if value is None or value == "" or value == [] or value == {}:
            raise RowError(f"key part {path} is empty")
        if fold and isinstance(value, str):
            value = value.lower()
        elif inside:
            value = _folded(value, inside)
        parts.append(key_text(value))
    return KEY_SEPARATOR.join(parts)


def key_text(value: Any) -> str:
    """One key part as text: a string as is, anything else as compact sorted JSON;
    the separator (and the escape) escaped, so that two different rows never share a key."""
    text = (
        value
        if isinstance(value, str)
        else json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    )
    # Escape the separator so that two different rows never share a key.
    if "\\" in text or KEY_SEPARATOR in text:
        text = text.replace("\\", "\\\\").replace(KEY_SEPARATOR, "\\" + KEY_SEPARATOR)
    return text


def key_parts(key: str) -> list[str]:
    """A key's parts as ``row_key`` joined them, the separator's escapes undone
    (``a\\|b|c`` -> ``["a|b", "c"]``)."""
    parts, current, escaped = [], [], False
    for char in key:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == KEY_SEPARATOR:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _folded(value: Any, inside: tuple[tuple[str, ...], ...]) -> Any:
    """A copy of ``value`` with the strings at the paths ``inside`` lower-cased."""
    if not isinstance(value, dict):
        return value
    copied = dict(value)
    for steps in inside:
        if steps and steps[0] in copied:
            item = copied[steps[0]]
            if len(steps) > 1:
                copied[steps[0]] = _folded(item, (steps[1:],))
            elif isinstance(item, str):
                copied[steps[0]] = item.lower()
    return copied


def compile_key(problems: Problems, node: Node | None, shape: dict[str, Any],
                inline: bool | None) -> list[str]:
    """The key paths of the mapping's `key` (``node``; None: the default key),
    each checked against the payload's ``shape``; ``inline`` says whether the
    contact is inline (None: unknown). Problems are reported, the paths kept are returned."""
    if node is None:
        return ["campaignId", "contact.email"] if inline in (True, None) else ["campaignId", "contact"]
    items: list[Node]
    if isinstance(node, ScalarNode) and node.tag.endswith(":str"):
        items = [node]
    elif isinstance(node, SequenceNode) and node.value:
        items = list(node.value)
    else:
        found = "an empty list" if isinstance(node, SequenceNode) else describe(node)
        problems.report(node, "key", f"expected a list of payload paths, found {found}")
        return []
    paths: list[str] = []
    known = _all_paths(shape)
    for item in items:
        if not (isinstance(item, ScalarNode) and item.tag.endswith(":str")):
            problems.report(item, "key", f"expected a payload path, found {describe(item)}")
            continue
        path = str(item.value).strip()
        if path in paths:
            problems.report(item, "key", f"{quote(path)} is listed twice")
            continue
        if not _has_path(shape, path):
            problems.report(item, "key",
                            f"{quote(path)} is not a field of this mapping{suggest(path, known)}")
            continue
        paths.append(path)
    return paths


def _has_path(shape: dict[str, Any], path: str) -> bool:
    node: Any = shape
    for step in path.split("."):
        if not isinstance(node, dict) or step not in node:
            return False
        node = node[step]
    return True


def _all_paths(shape: dict[str, Any], prefix: str = "") -> list[str]:
    found: list[str] = []
    for name, child in shape.items():
        path = join(prefix, name)
        found.append(path)
        if isinstance(child, dict):
            found.extend(_all_paths(child, path))
    return found
