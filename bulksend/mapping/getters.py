"""Getters: the closures a compiled mapping is made of, run once per row.

A getter takes the row's ``values`` (header name → cell text) and returns the
field's payload value, or ``OMIT`` when an optional field is empty (an empty
value is left out of the payload, never sent as ""), or raises ``RowError``
whose message becomes the row's one-line error. Exceptions are cheap when not
raised, and invalid rows are the exception, so this keeps the happy path free
of result checking. This module holds the getters every kind of field shares;
columns.py and templates.py hold the ones that read cells.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from bulksend.mapping.problems import RowError


class _Omit:
    """The value of an optional field that is empty: left out of the payload."""

    def __repr__(self) -> str:
        return "<omitted>"


OMIT: Final = _Omit()

Values = dict[str, str]
Getter = Callable[[Values], Any]  # returns a payload value or OMIT, or raises RowError
# Cell text (stripped, non-empty) → payload value; None for "empty"; or raises RowError.
Converter = Callable[[str], Any]
# The shape of the payload a mapping can produce, for checking key paths:
# a dict of child shapes for an object, None for a leaf.
Shape = dict[str, Any] | None


class DefaultPerRow:
    """A `default` resolved anew for each row that falls back on it (a dueDate's:
    the team's zone and the clock are known only when the row is mapped)."""

    __slots__ = ("convert", "text")

    def __init__(self, convert: Converter, text: str) -> None:
        self.convert = convert
        self.text = text

    def __call__(self) -> Any:
        return self.convert(self.text)


@dataclass(frozen=True, slots=True)
class Finish:
    """What a field's text (a cell's, or a template's) becomes: lower-cased if
    ``lower``, converted when present, else the ``default`` (OMIT: none), else a
    row error when ``required``, else omitted."""

    lower: bool
    convert: Converter | None
    default: Any
    required: bool

    def closure(self, empty: str) -> Callable[[str], Any]:
        """The finishing step as a closure for the row's getter; ``empty`` is its row error."""
        return _finisher(empty, self.lower, self.convert, self.default, self.required)


def _finisher(empty: str, lower: bool, convert: Converter | None, default: Any,
              required: bool) -> Callable[[str], Any]:
    copy_default = isinstance(default, list | dict)
    resolve = default if isinstance(default, DefaultPerRow) else None

    def finish(text: str) -> Any:
        if text:
            if lower:
                text = text.lower()
            if convert is None:
                return text
            value = convert(text)
            if value is not None:
                return value
        if resolve is not None:
            return resolve()
        if default is not OMIT:
            return copy.deepcopy(default) if copy_default else default
        if required:
            raise RowError(empty)
        return OMIT

    return finish


def constant_getter(value: Any) -> Getter:
    """The same value for every row."""
    if isinstance(value, list | dict):
        # A fresh copy per row: a later stage may add to a payload it was given.
        return lambda values: copy.deepcopy(value)
    return lambda values: value


def object_getter(fields: list[tuple[str, Getter]]) -> Getter:
    """Build an object of the fields that are not omitted; omit it when none is left."""
    pairs = tuple(fields)

    def get(values: Values) -> Any:
        built: dict[str, Any] = {}
        for name, getter in pairs:
            value = getter(values)
            if value is not OMIT:
                built[name] = value
        return built if built else OMIT

    return get


def list_of_objects_getter(items: list[Getter]) -> Getter:
    """A list of the items that are not omitted; omit it when none is left."""
    parts = tuple(items)

    def get(values: Values) -> Any:
        built = [value for value in (getter(values) for getter in parts) if value is not OMIT]
        return built if built else OMIT

    return get


def shape_of(value: Any) -> Shape:
    """The shape (see ``Shape``) of a constant value."""
    if isinstance(value, dict):
        return {name: shape_of(item) for name, item in value.items()}
    return None
