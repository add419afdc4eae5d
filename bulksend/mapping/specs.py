"""Specs: one leaf field of the mapping file, compiled into its getter.

A leaf field is written one of three ways (PRODUCT.md, "Mapping file"):

- a column name: ``firstName: First Name``;
- a constant: ``campaignId: {value: xvr69EYLKXvTkfYuk}``, or a bare YAML
  number, boolean or date;
- a spec: ``{column: …}`` or ``{template: …}`` with options (SPEC_OPTIONS).

The field's kind (fields.KINDS) gives its default type and the types that fit.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any, Final

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from bulksend.mapping.columns import Columns, column_getter
from bulksend.mapping.converters import DEFAULT_SPLIT, TYPES, bad_format, converter, find_zone
from bulksend.mapping.duedates import DueDates, due_constant, past_option
from bulksend.mapping.evidence import Evidence, order_name
from bulksend.mapping.fields import KINDS
from bulksend.mapping.getters import (
    OMIT,
    Converter,
    DefaultPerRow,
    Finish,
    Getter,
    Shape,
    constant_getter,
    shape_of,
)
from bulksend.mapping.nodes import Nodes, typed_constant
from bulksend.mapping.problems import Problem, Problems, describe, join, quote, suggest
from bulksend.mapping.questions import choices
from bulksend.mapping.templates import parse_template, template_getter

SPEC_OPTIONS: Final = (
    "column",
    "value",
    "template",
    "default",
    "required",
    "type",
    "split",
    "format",
    "timezone",
    "lower",
    "strip",
    "past",  # dueDate only: `past: allow`
)


@dataclass(slots=True)
class _Spec:
    """What a `{column: …}` or `{template: …}` spec says, once its options are checked."""

    path: str
    kind: str  # the field's kind (fields.KINDS)
    source: str  # "column" or "template"
    text: str  # the column's name or the template
    type: str  # the spec type (converters.TYPES)
    strip: bool
    required: bool
    lower: bool
    split: str
    fmt: str | None
    zone_name: str | None
    zone: tzinfo | None
    allow_past: bool
    column: str = ""  # the header's name of the column
    template: tuple[str, tuple[str, ...]] = ("", ())  # templates.parse_template, columns matched
    where: str = ""  # the prefix of the field's row errors


class _Options:
    """A spec's options by name; each read reports what is wrong with it."""

    def __init__(self, problems: Problems, nodes: Nodes, node: MappingNode, path: str) -> None:
        self.problems = problems
        self.nodes = nodes
        self.path = path
        self.found = {name: (key, value) for name, key, value in nodes.entries(node, path)}

    def __contains__(self, name: str) -> bool:
        return name in self.found

    def node(self, name: str) -> Node:
        """The value node of option ``name`` (which is present)."""
        return self.found[name][1]

    def report(self, name: str, message: str) -> None:
        self.problems.report(self.node(name), join(self.path, name), message)

    def flag(self, name: str, fallback: bool) -> bool:
        """A true/false option; ``fallback`` when absent or wrong (reported)."""
        if name not in self.found:
            return fallback
        value_node = self.node(name)
        value: Any = None
        if isinstance(value_node, ScalarNode) and value_node.tag.endswith(":bool"):
            value = self.nodes.scalar(value_node)
        if not isinstance(value, bool):
            self.report(name, f"must be true or false, found {describe(value_node)}")
            return fallback
        return value

    def text(self, name: str, *, blank: bool = False) -> str | None:
        """A text option (``blank``: all spaces will do); None when absent or wrong (reported)."""
        if name not in self.found:
            return None
        value_node = self.node(name)
        if not (isinstance(value_node, ScalarNode) and value_node.tag.endswith(":str")):
            self.report(name, f"must be text, found {describe(value_node)}")
            return None
        value = str(value_node.value)
        if not (value if blank else value.strip()):
            self.report(name, "is empty")
            return None
        return value


class Specs:
    """Compiles the leaf fields of one mapping file; problems go to ``problems``.

    ``folded`` collects the payload paths of emails: sent as written, compared
    ignoring case in the key (issue 10)."""

    def __init__(self, problems: Problems, nodes: Nodes, columns: Columns, dates: DueDates,
                 evidence: Evidence | None = None) -> None:
        self.problems = problems
        self.nodes = nodes
        self.columns = columns
        self.dates = dates
        self.evidence = evidence if evidence is not None else Evidence()  # what the rows show (issue 24)
        self.folded: set[str] = set()

    def value_spec(self, node: Node, path: str, kind: str) -> tuple[Getter, Shape] | None:
        """A leaf field of kind ``kind`` at ``path``: a column name, a constant, a
        template or a column spec. None when a problem was reported."""
        default_type, allowed = KINDS[kind]
        if isinstance(node, ScalarNode):
            if node.tag.endswith(":str"):
                return self._column_name(node, path, kind, default_type)
            if node.tag.endswith(":null"):
                self.problems.report(node, path, "has no value: name a column, or use {value: …}")
                return None
            return self.constant(node, path, kind)
        if isinstance(node, SequenceNode):
            self.problems.report(
                node,
                path,
                "expected a column name or a spec, found a list (a constant list is written {value: [a, b]})",
            )
            return None
        assert isinstance(node, MappingNode)
        return self._spec_mapping(node, path, kind, default_type, allowed)

    def constant(self, node: Node, path: str, kind: str) -> tuple[Getter, Shape] | None:
        """A constant field (``node`` is the value itself); None when a problem was reported."""
        if kind == "due":
            return due_constant(self.dates, self.nodes, node, path)
        try:
            value = self.nodes.plain(node)
            if kind != "any":
                default_type = KINDS[kind][0]
                value = typed_constant(value, default_type, node,
                                       converter("", default_type, DEFAULT_SPLIT, None, None))
            elif value is None:
                raise Problem("is empty: give a value, or leave the field out", node)
        except Problem as problem:
            self.problems.report(problem.node or node, path, problem.message)
            return None
        return constant_getter(value), shape_of(value)

    def _column_name(self, node: ScalarNode, path: str, kind: str,
                     default_type: str) -> tuple[Getter, Shape] | None:
        """`field: Column Name`: that column, required, of the field's default type."""
        column = str(node.value)
        if not column.strip():
            self.problems.report(node, path, "is empty: name a column, or use {value: …}")
            return None
        found = self.columns.use(node, path, column)
        if found is None:
            return None
        if path == "contact.email":
            self.evidence.email_from(found)  # shown when another column holds addresses too
        self.columns.feeds(found, path, default_type)
        where = f"column {quote(found)}: "
        convert = (
            self.dates.converter(where, default_type, None, None, None, allow_past=False)
            if kind == "due"
            else converter(where, default_type, DEFAULT_SPLIT, None, None, self.evidence)
        )
        if default_type == "email":
            self.folded.add(path)  # sent as written; the key ignores case (issue 10)
        getter = column_getter(found, strip=True, then=Finish(False, convert, OMIT, required=True))
        return getter, None

    # -- {column | value | template: …, options} ---------------------------- #

    def _spec_mapping(
        self, node: MappingNode, path: str, kind: str, default_type: str, allowed: frozenset[str]
    ) -> tuple[Getter, Shape] | None:
        before = len(self.problems)
        options = _Options(self.problems, self.nodes, node, path)
        source = self._source(node, path, options)
        if source is None:
            return None
        if source == "value":
            others = [name for name in options.found if name != "value" and name in SPEC_OPTIONS]
            if others:
                self.problems.report(node, path,
                                     f"a constant takes no other options (found {', '.join(others)})")
            if len(self.problems) != before:
                return None
            return self.constant(options.node("value"), path, kind)
        spec = self._read(options, source, kind, default_type, allowed)
        if spec is None:
            return None  # the source's text is wrong, reported by _Options.text
        self._source_columns(options, spec)
        if len(self.problems) != before:
            return None
        for used in [spec.column] if source == "column" else spec.template[1]:
            # A template's columns are read as text, whatever the field's type.
            self.columns.feeds(used, path, spec.type if source == "column" else "string")
        default = self._default(options, spec)
        if default is None:
            return None
        return self._getter(spec, default), None

    def _source(self, node: MappingNode, path: str, options: _Options) -> str | None:
        """The one of column, value or template the spec has; None (reported) otherwise.
        Unknown options are reported here too."""
        unknown = False
        for name, (key_node, _value) in options.found.items():
            if name not in SPEC_OPTIONS:
                self.problems.report(
                    key_node,
                    join(path, name),
                    f"unknown option{suggest(name, SPEC_OPTIONS)}; "
                    "a spec takes column, value or template plus "
                    "default, required, type, split, format, timezone, lower, strip",
                )
                unknown = True
        sources = [name for name in ("column", "value", "template") if name in options]
        if len(sources) == 1:
            return sources[0]
        what = (
            f"has both {' and '.join(sources)}: use only one"
            if sources
            else "needs one of column, value or template"
        )
        if sources or not unknown:  # an unknown option is most likely the misspelt source
            self.problems.report(node, path, what)
        return None

    def _read(
        self, options: _Options, source: str, kind: str, default_type: str, allowed: frozenset[str]
    ) -> _Spec | None:
        """Read and check the options of a column or template spec, each problem reported."""
        path = options.path
        strip = options.flag("strip", True)
        required = options.flag("required", True)
        spec_type = options.text("type")
        split = options.text("split", blank=True)
        fmt = self._format(options)
        zone_name = options.text("timezone")
        past = past_option(self.problems, options.found.get("past"), path, due=kind == "due")
        source_text = options.text(source)
        kind_type = (default_type if spec_type is None
                     else self._type(options, spec_type, default_type, allowed))
        # An email is sent as written (the API's contact look-up is exact) and
        # compared ignoring case in the key, unless the mapping sets lower:
        # true lowers both, false neither (the keys of earlier runs stay the same).
        lower = options.flag("lower", False)
        if kind_type == "email" and ("lower" not in options or lower):
            self.folded.add(path)
        zone = self._check_typed(options, kind, kind_type, split, fmt, zone_name)
        if source_text is None:
            return None
        return _Spec(path=path, kind=kind, source=source, text=source_text, type=kind_type, strip=strip,
                     required=required, lower=lower, split=split if split is not None else DEFAULT_SPLIT,
                     fmt=fmt, zone_name=zone_name, zone=zone, allow_past=past == "allow")

    @staticmethod
    def _type(options: _Options, spec_type: str, default_type: str, allowed: frozenset[str]) -> str:
        """The spec's `type` when it is one that fits the field, else the default type (reported)."""
        if spec_type not in TYPES:
            options.report("type", f"unknown type {quote(spec_type)}{suggest(spec_type, TYPES)};"
                           f" types are {', '.join(TYPES)}")
        elif spec_type not in allowed:
            options.report("type", f"type {spec_type} does not fit this field"
                           f" (it takes {', '.join(t for t in TYPES if t in allowed)})")
        else:
            return spec_type
        return default_type

    def _format(self, options: _Options) -> str | None:
        """The `format` option; None when absent, wrong, or a question init left
        (questions.py: "%d/%m/%Y or %m/%d/%Y"), which is asked (issue 24)."""
        fmt = options.text("format")
        asked = choices(fmt) if fmt is not None else []
        if not asked or not all(bad_format(choice) is None for choice in asked):
            return fmt
        column = options.text("column") if "column" in options else None
        whose = f"column {quote(column)}" if column else "the column"
        listed = " or ".join(f"{quote(c)} ({order_name(c)})" for c in asked)
        self.problems.ask(options.node("format"), join(options.path, "format"),
                          f"a question to answer: the rows of {whose} do not tell day first from month"
                          f" first; which does the file mean, {listed}? Keep that one format")
        return None

    @staticmethod
    def _check_typed(options: _Options, kind: str, kind_type: str, split: str | None, fmt: str | None,
                     zone_name: str | None) -> tzinfo | None:
        """Check the options that apply to some types only; the `timezone`'s zone, if any."""
        if split is not None and kind_type != "list":
            options.report("split", f"applies to type list, not {kind_type}")
        is_date = kind_type in ("date", "datetime")
        if fmt is not None:
            bad = f"applies to type date or datetime, not {kind_type}" if not is_date else bad_format(fmt)
            if bad is not None:
                options.report("format", bad)
        zone: tzinfo | None = None
        if zone_name is not None:
            if not is_date:
                options.report("timezone", f"applies to type date or datetime, not {kind_type}")
            else:
                zone = find_zone(zone_name)
                if zone is None:
                    hint = suggest(zone_name, sorted(zoneinfo.available_timezones()))
                    options.report("timezone", f"unknown time zone {quote(zone_name)}{hint}"
                                   " (an IANA name such as Europe/Paris)")
        # A dueDate with no zone uses the team's (DueDates).
        if (kind_type == "datetime" and kind != "due" and fmt is not None and zone_name is None
                and "%z" not in fmt):
            options.report(
                "format",
                "has no %z and no timezone is set, so the times would have no UTC offset;"
                " add timezone (e.g. timezone: Europe/Paris)",
            )
        return zone

    def _source_columns(self, options: _Options, spec: _Spec) -> None:
        """Match the spec's column, or its template's columns, to the header."""
        source_node = options.node(spec.source)
        if spec.source == "column":
            spec.column = self.columns.use(source_node, join(spec.path, "column"), spec.text) or spec.text
            spec.where = f"column {quote(spec.column)}: "
            if spec.path == "contact.email":
                self.evidence.email_from(spec.column)  # shown when another column holds addresses too
            return
        try:
            fmt, names = parse_template(spec.text)
        except Problem as problem:
            options.report("template", problem.message)
        else:
            found = [self.columns.use(source_node, join(spec.path, "template"), name) for name in names]
            spec.template = fmt, tuple(f or n for f, n in zip(found, names, strict=True))
        spec.where = f"template {quote(spec.text)}: "

    def _default(self, options: _Options, spec: _Spec) -> Any:
        """The spec's `default`, checked against its type: OMIT when it has none,
        a ``DefaultPerRow`` for a dueDate, None when a problem was reported."""
        if "default" not in options:
            return OMIT
        default_node = options.node("default")
        due = spec.kind == "due"
        convert: Converter | None = (
            self.dates.converter(f"{spec.path}.default: ", spec.type, spec.fmt, spec.zone_name, spec.zone,
                                 allow_past=spec.allow_past, fix="correct the default")
            if due
            else converter("", spec.type, spec.split, spec.fmt, spec.zone)
        )
        try:
            value = self.nodes.plain(default_node)
            default = typed_constant(value.lower() if spec.lower and isinstance(value, str) else value,
                                     spec.type, default_node, convert)
        except Problem as problem:
            self.problems.report(problem.node or default_node, join(spec.path, "default"), problem.message)
            return None
        if due and convert is not None:
            # Resolved for each row, like the cells: the zone and the clock are known then.
            return DefaultPerRow(convert, str(value).strip())
        return default

    def _getter(self, spec: _Spec, default: Any) -> Getter:
        column = spec.column if spec.source == "column" else None
        convert = (
            self.dates.converter(spec.where, spec.type, spec.fmt, spec.zone_name, spec.zone,
                                 allow_past=spec.allow_past, evidence=self.evidence, column=column)
            if spec.kind == "due"
            else converter(spec.where, spec.type, spec.split, spec.fmt, spec.zone, self.evidence, column)
        )
        then = Finish(spec.lower, convert, default, spec.required)
        if spec.source == "column":
            return column_getter(spec.column, strip=spec.strip, then=then)
        fmt, names = spec.template
        return template_getter(spec.text, fmt, names, strip=spec.strip, then=then)
