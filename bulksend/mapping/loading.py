"""Loading: a mapping file (or a dict in its shape) → a checked, compiled ``Mapping``."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import date
from typing import Any

import yaml

from bulksend.common.errors import MappingError
from bulksend.mapping.body import Compiler
from bulksend.mapping.compiled import Mapping
from bulksend.mapping.problems import join
from bulksend.mapping.questions import QuestionsError
from bulksend.reading.table import Header


def load_mapping(path: str, columns: Sequence[str], *, header: Header | None = None) -> Mapping:
    """Read and check the mapping file against the input's columns.

    Column names match after ``reading.normal_name`` (Unicode NFC, spaces,
    invisible characters). ``header`` (``Table.header``) adds the columns the
    table does not read: a mapping that uses a name several columns share is
    refused; and when a column is missing but one of the first rows holds every
    column the mapping names, the error says to pass ``--header-row`` with it.
    Raises MappingError with every problem of the file, or with the one reason
    the file cannot be read at all.
    """
    try:
        with open(path, "rb") as file:
            raw = file.read()
    except FileNotFoundError:
        raise MappingError(path, ["file not found"]) from None
    except IsADirectoryError:
        raise MappingError(path, ["is a directory, not a mapping file"]) from None
    except PermissionError:
        raise MappingError(path, ["cannot be read: permission denied"]) from None
    except OSError as error:
        raise MappingError(path, [f"cannot be read: {error.strerror or error}"]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        byte = raw[error.start]
        raise MappingError(
            path, [f"line {line}: not UTF-8 text (byte 0x{byte:02x}); save the file as UTF-8"]
        ) from None
    return parse_mapping(text, path, columns, header=header)


def mapping_from_dict(doc: dict[str, Any], name: str, columns: Sequence[str], *,
                      header: Header | None = None) -> Mapping:
    """A mapping given as a dict in the YAML file's shape (the Python API).

    ``doc`` is what ``yaml.safe_load`` of a mapping file returns, e.g.
    ``{"campaignId": {"value": "xvr69EYLKXvTkfYuk"}, "contact": {"email": "Email"}}``;
    it is checked exactly as that file would be. ``name`` names the mapping in
    messages (there are no line numbers: each problem names its key path).
    Raises MappingError with every problem, or TypeError when ``doc`` is not a dict.
    """
    if not isinstance(doc, dict):
        raise TypeError(f"mapping: expected a dict in the mapping file's shape or a path, "
                        f"not {type(doc).__name__}")
    text = yaml.safe_dump(_yaml_ready(name, doc, ""), sort_keys=False, allow_unicode=True)
    return parse_mapping(text, name, columns, header=header, lines=False)


def _yaml_ready(name: str, value: object, path: str) -> Any:
    """``value`` with tuples as lists; MappingError naming the first part a
    mapping file could not hold (an object, a set, a key that is not text)."""
    if value is None or isinstance(value, str | bool | int | float | date):
        return value
    if isinstance(value, list | tuple):
        return [_yaml_ready(name, item, f"{path}[{i}]") for i, item in enumerate(value)]
    hint = "a mapping holds text, numbers, booleans, dates, lists and dicts"
    if isinstance(value, dict):
        ready: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise MappingError(name, [f"{path or 'the mapping'}: key {key!r} is not text"], hint=hint)
            ready[key] = _yaml_ready(name, item, join(path, key))
        return ready
    raise MappingError(name, [f"{path or 'the mapping'}: a {type(value).__name__} cannot be written "
                              "in a mapping"], hint=hint)


def parse_mapping(text: str, path: str, columns: Sequence[str], *, header: Header | None = None,
                  lines: bool = True) -> Mapping:
    """Check mapping text against the input's columns; see load_mapping.
    ``lines=False``: problems name key paths only (a mapping given as a dict)."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        parts = [part for part in (error.context, error.problem) if part]
        what = " ".join(parts) if parts else "cannot be parsed"
        raise MappingError(path, [f"{where}YAML syntax error: {what}"]) from None
    except yaml.YAMLError as error:
        raise MappingError(path, [f"YAML syntax error: {error}"]) from None
    compiler = Compiler(columns, header, lines=lines)
    build = compiler.compile(root)
    if compiler.problems.only_questions:
        raise QuestionsError(path, compiler.problems.messages,
                             hint=f"answer {'it' if len(compiler.problems) == 1 else 'them'} in {path},"
                                  " then run validate again")
    if compiler.problems or build is None:
        raise MappingError(path, compiler.problems.messages, hint=compiler.columns.header_hint())
    return Mapping(
        path=path,
        digest=digest,
        key_paths=compiler.key_paths,
        columns_used=list(compiler.columns.used),
        campaign_id=compiler.campaign_id,
        build=build,
        due_dates=compiler.dates,
        folded=frozenset(compiler.specs.folded),
        fed=compiler.columns.fed,
        evidence=compiler.evidence,
        exclude=compiler.exclude,
    )
