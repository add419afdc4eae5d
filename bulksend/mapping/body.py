"""The request body: the mapping file's top level and its objects, compiled.

``Compiler.compile`` walks the file's top-level keys (fields.TOP_KEYS): each
leaf field goes to specs.py; the objects are compiled here — the contact
(inline, or a contact id), `data` (free keys), `sample` ({itemId, url}) and
`esignDocs` (a list of objects) — and the `key` to keys.py. Every problem is
reported (problems.py) and the walk goes on, so that all are shown at once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from bulksend.mapping.columns import Columns
from bulksend.mapping.converters import DEFAULT_SPLIT, converter
from bulksend.mapping.duedates import DueDates
from bulksend.mapping.evidence import Evidence
from bulksend.mapping.fields import CONTACT_FIELDS, SAMPLE_FIELDS, TOP_KEYS
from bulksend.mapping.getters import (
    OMIT,
    Getter,
    Shape,
    Values,
    constant_getter,
    list_of_objects_getter,
    object_getter,
    shape_of,
)
from bulksend.mapping.keys import compile_key
from bulksend.mapping.nodes import Nodes, typed_constant
from bulksend.mapping.problems import Problem, Problems, RowError, describe, join, suggest
from bulksend.mapping.questions import PLACEHOLDER
from bulksend.mapping.specs import Specs
from bulksend.reading.table import Header


class Compiler:
    """Compiles one mapping file's node tree against the input's ``columns``.

    After ``compile``: ``problems`` holds every problem found (the mapping is
    usable only when there are none), and ``key_paths``, ``campaign_id`` (a
    constant campaignId), ``dates``, ``columns`` and ``specs.folded`` what the
    ``Mapping`` is made of. ``lines=False``: problems name key paths only."""

    def __init__(self, columns: Sequence[str], header: Header | None = None, *, lines: bool = True) -> None:
        self.problems = Problems(lines=lines)
        self.nodes = Nodes(self.problems)
        self.columns = Columns(columns, header, self.problems)
        self.dates = DueDates()  # shared by the dueDate's converters and the Mapping
        self.evidence = Evidence()  # what the rows show about the choices made (issue 24)
        self.specs = Specs(self.problems, self.nodes, self.columns, self.dates, self.evidence)
        self.key_paths: list[str] = []
        self.campaign_id: str | None = None
        self.exclude: tuple[str, ...] = ()  # `exclude`: do-not-contact lists, as the file names them

    def compile(self, root: Node | None) -> Getter | None:
        """The getter of the whole payload; None when the file is not a mapping at all."""
        if root is None:
            self.problems.add("line 1: the file is empty; a mapping needs at least campaignId and contact")
            return None
        if not isinstance(root, MappingNode):
            self.problems.report(
                root,
                "",
                f"expected a mapping of request fields (campaignId, contact, …), found {describe(root)}",
            )
            return None
        fields: list[tuple[str, Getter]] = []
        shape: dict[str, Any] = {}
        key_node: Node | None = None
        contact_is_inline: bool | None = None
        for name, name_node, value_node in self.nodes.entries(root, ""):
            kind = TOP_KEYS.get(name)
            compiled: tuple[Getter, Shape] | None
            if kind is None:
                self.problems.report(
                    name_node,
                    name,
                    f"unknown key{suggest(name, list(TOP_KEYS))}; the keys are the fields of"
                    " POST /request (campaignId, contact, items, data, sample, dueDate,"
                    " createdBy, assignedTo, send…Message, esignDocs, esignTriggers) and key",
                )
                continue
            if kind == "key":
                key_node = value_node
                continue
            if kind == "exclude":
                self.exclude = self.exclude_files(value_node)
                continue
            if kind == "contact":
                contact = self.contact(value_node)
                if contact is None:
                    contact_is_inline = True  # known to be present; no key problems on top
                    shape["contact"] = {"email": None}
                    continue
                compiled, contact_is_inline = (contact[0], contact[1]), contact[2]
            else:
                compiled = self.field(name, kind, value_node)
            if compiled is not None:
                fields.append((name, compiled[0]))
                shape[name] = compiled[1]
            else:
                shape.setdefault(name, None)  # reported already; keep key paths quiet
        names = {key.value for key, _value in root.value if isinstance(key, ScalarNode)}
        for required in ("campaignId", "contact"):
            if required not in names:
                self.problems.report(root, required, "is missing (POST /request requires it)")
                shape.setdefault(required, None)
        self.key_paths = compile_key(self.problems, key_node, shape, contact_is_inline)
        return object_getter(fields)

    def exclude_files(self, node: Node) -> tuple[str, ...]:
        """`exclude`: one file name, or a list of them (do-not-contact lists, issue 28)."""
        items = list(node.value) if isinstance(node, SequenceNode) else [node]
        names = []
        for item in items:
            if isinstance(item, ScalarNode) and item.tag.endswith(":str") and str(item.value).strip():
                names.append(str(item.value).strip())
            else:
                self.problems.report(item, "exclude", "expected the file name of a do-not-contact list"
                                     f" (or a list of them), found {describe(item)}")
        return tuple(names)

    def field(self, name: str, kind: str, node: Node) -> tuple[Getter, Shape] | None:
        """A top-level field other than contact and key."""
        if kind == "object":
            return self.free_object(node, name)
        if kind == "sample":
            return self.sample(node, name)
        if kind == "esignDocs":
            return self.esign_docs(node)
        compiled = self.specs.value_spec(node, name, kind)
        if name == "campaignId" and compiled is not None and _is_constant_node(node):
            value = compiled[0]({})
            self.campaign_id = value if isinstance(value, str) else None
            if value == PLACEHOLDER:  # init's stand-in, never a campaign (issue 24)
                self.problems.ask(node, name, f"{PLACEHOLDER} is the stand-in bulksend init wrote: put your"
                                  " campaign's id in its place (17 letters and digits, in the app's address"
                                  " bar when the campaign is open)")
                return None
        return compiled

    # -- objects ------------------------------------------------------------ #

    def free_object(self, node: Node, path: str) -> tuple[Getter, Shape] | None:
        """`data` and `contact.data`: free keys, each a value spec."""
        if isinstance(node, MappingNode):
            entries = self.nodes.entries(node, path)
            if len(entries) == 1 and entries[0][0] == "value" and isinstance(entries[0][2], MappingNode):
                return self.specs.constant(entries[0][2], path, "any")  # {value: {…}}
            fields: list[tuple[str, Getter]] = []
            shape: dict[str, Any] = {}
            for name, _key, value_node in entries:
                compiled = self.specs.value_spec(value_node, join(path, name), "any")
                if compiled is not None:
                    fields.append((name, compiled[0]))
                    shape[name] = compiled[1]
            return object_getter(fields), shape
        self.problems.report(node, path, f"expected a mapping of data fields, found {describe(node)}")
        return None

    def fixed_object(
        self, node: MappingNode, path: str, known: dict[str, str], what: str
    ) -> tuple[Getter, Shape] | None:
        """An object of the fields ``known`` (name → kind), such as the inline contact;
        ``what`` names it in messages."""
        fields: list[tuple[str, Getter]] = []
        shape: dict[str, Any] = {}
        for name, key_node, value_node in self.nodes.entries(node, path):
            field_path = join(path, name)
            kind = known.get(name)
            if kind is None:
                self.unknown_field(key_node, field_path, name, known, what)
                continue
            compiled = (
                self.free_object(value_node, field_path)
                if kind == "object"
                else self.specs.value_spec(value_node, field_path, kind)
            )
            if compiled is not None:
                fields.append((name, compiled[0]))
            shape[name] = None if compiled is None else compiled[1]
        return object_getter(fields), shape

    def unknown_field(self, node: Node, path: str, name: str, known: dict[str, str], what: str) -> None:
        hint = suggest(name, list(known))
        self.problems.report(node, path, f"not a {what} field{hint}; {what} fields are {', '.join(known)}")

    def constant_object(
        self, node: MappingNode, path: str, known: dict[str, str], what: str
    ) -> dict[str, Any] | None:
        """A constant object of fixed fields ({value: {…}} for contact or sample),
        each field checked as the same field written inline would be; None
        when a problem was reported."""
        try:
            value = self.nodes.plain(node)  # also applies merge keys to node
        except Problem as problem:
            self.problems.report(problem.node or node, path, problem.message)
            return None
        # The later of repeated keys wins, as in plain().
        nodes = {str(k.value): (k, v) for k, v in node.value if isinstance(k, ScalarNode)}
        checked: dict[str, Any] = {}
        good = True
        for name, field_value in value.items():
            key_node, field_node = nodes.get(name, (node, node))
            field_path = join(path, name)
            kind = known.get(name)
            if kind is None:
                self.unknown_field(key_node, field_path, name, known, what)
                good = False
                continue
            try:
                checked[name] = _constant_field(field_value, kind, field_node)
            except Problem as problem:
                self.problems.report(problem.node or field_node, field_path, problem.message)
                good = False
        return checked if good else None

    # -- the fields that are objects ------------------------------------------ #

    def contact(self, node: Node) -> tuple[Getter, Shape, bool] | None:
        """The inline contact (→ True) or a contact id (→ False)."""
        if isinstance(node, MappingNode) and not any(
            isinstance(key, ScalarNode) and key.value in ("column", "value", "template")
            for key, _value in node.value
        ):
            compiled = self.fixed_object(node, "contact", CONTACT_FIELDS, "contact")
            names = {key.value for key, _value in node.value if isinstance(key, ScalarNode)}
            if "email" not in names:
                self.problems.report(node, "contact", "an inline contact needs email")
            return None if compiled is None else (*compiled, True)
        if isinstance(node, SequenceNode):
            self.problems.report(
                node,
                "contact",
                "expected a mapping of contact fields (email, firstName, …)"
                " or a column holding a contact id, found a list",
            )
            return None
        if isinstance(node, MappingNode):
            value_node = next(
                (v for k, v in node.value if isinstance(k, ScalarNode) and k.value == "value"),
                None,
            )
            if isinstance(value_node, MappingNode):
                # A constant inline contact: {value: {email: …}}, held to the
                # inline form's rules (known fields, email required).
                value = self.constant_object(value_node, "contact", CONTACT_FIELDS, "contact")
                if value is None:
                    return None
                if "email" not in value:
                    self.problems.report(value_node, "contact", "an inline contact needs email")
                    return None
                return constant_getter(value), shape_of(value), True
        compiled = self.specs.value_spec(node, "contact", "string")
        return None if compiled is None else (*compiled, False)

    def sample(self, node: Node, path: str) -> tuple[Getter, Shape] | None:
        """`sample`: {itemId: …, url: …} as fields, or as a constant {value: {…}}."""
        if isinstance(node, MappingNode) and not _is_constant(node):
            compiled = self.fixed_object(node, path, SAMPLE_FIELDS, "sample")
            names = {k.value for k, _v in node.value if isinstance(k, ScalarNode)}
            for missing in (field for field in SAMPLE_FIELDS if field not in names):
                self.problems.report(node, path, f"needs {missing} as well")
            return None if compiled is None else (_sample_getter(compiled[0]), compiled[1])
        if isinstance(node, MappingNode):
            return self.constant_sample(node.value[0][1], path)
        self.problems.report(node, path, f"expected a mapping {{itemId: …, url: …}}, found {describe(node)}")
        return None

    def constant_sample(self, node: Node, path: str) -> tuple[Getter, Shape] | None:
        """`sample: {value: {itemId: …, url: …}}`: both fields, and nothing else."""
        if not isinstance(node, MappingNode):
            self.problems.report(node, path,
                                 f"expected a mapping {{itemId: …, url: …}}, found {describe(node)}")
            return None
        value = self.constant_object(node, path, SAMPLE_FIELDS, "sample")
        if value is None:
            return None
        missing = [field for field in SAMPLE_FIELDS if field not in value]
        for field in missing:
            self.problems.report(node, path, f"needs {field} as well")
        return None if missing else (constant_getter(value), shape_of(value))

    def esign_docs(self, node: Node) -> tuple[Getter, Shape] | None:
        """`esignDocs`: a list of objects, or a constant list of them."""
        # collect-api.md §4: an array of objects (likely elementId, url or data, name).
        if isinstance(node, SequenceNode):
            items: list[Getter] = []
            for index, item in enumerate(node.value):
                compiled = self.free_object(item, f"esignDocs[{index}]")
                if compiled is not None:
                    items.append(compiled[0])
            return list_of_objects_getter(items), None
        if isinstance(node, MappingNode):
            entries = self.nodes.entries(node, "esignDocs")
            if len(entries) == 1 and entries[0][0] == "value":
                value_node = entries[0][2]
                if isinstance(value_node, SequenceNode) and all(
                    isinstance(item, MappingNode) for item in value_node.value
                ):
                    return self.specs.constant(value_node, "esignDocs", "any")
        self.problems.report(
            node,
            "esignDocs",
            "expected a list of documents (each a mapping such as {elementId: …, url: …})"
            f" or {{value: [...]}}, found {describe(node)}",
        )
        return None


def _constant_field(value: Any, kind: str, node: Node) -> Any:
    """One field of a constant object, checked as the same field written inline would be."""
    if kind == "object":
        if not isinstance(value, dict):
            raise Problem(f"expected a mapping of data fields, found {json.dumps(value)}", node)
        return value
    return typed_constant(value, kind, node, converter("", kind, DEFAULT_SPLIT, None, None))


def _sample_getter(inner: Getter) -> Getter:
    # collect-api.md §4: sample is {itemId, url} and both keys are expected.
    def get(values: Values) -> Any:
        value = inner(values)
        if value is not OMIT and len(value) != len(SAMPLE_FIELDS):
            missing = next(name for name in SAMPLE_FIELDS if name not in value)
            raise RowError(f"sample.{missing} is empty but sample needs both itemId and url")
        return value

    return get


def _is_constant(node: MappingNode) -> bool:
    return (
        len(node.value) == 1
        and isinstance(node.value[0][0], ScalarNode)
        and node.value[0][0].value == "value"
    )


def _is_constant_node(node: Node) -> bool:
    if isinstance(node, MappingNode):
        return _is_constant(node)
    return isinstance(node, ScalarNode) and not node.tag.endswith(":str")
