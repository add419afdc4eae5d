"""Where send's and validate's contacts and mapping come from: a path, rows
in memory (a list of dicts, a pandas DataFrame), or a mapping given as a dict;
and the ``exclude=`` lists as paths."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bulksend.api.arguments import check_flags, check_sheet, check_texts
from bulksend.common.errors import UsageError

if TYPE_CHECKING:
    from bulksend.reading.table import Table

MAPPING_DICT_NAME = "<mapping dict>"  # how messages name a mapping given as a dict


@dataclass(frozen=True)
class Source:
    name: str  # the contacts' name in messages: the path, or <rows> / <DataFrame>
    path: str | None = None  # the file read, if one is
    open: Callable[[], Table] | None = None  # opens an in-memory table
    frame: Any = None  # the DataFrame, if one was given
    reading: dict[str, Any] = field(default_factory=dict)  # how a file is read: sheet, encoding, …


def contacts_source(contacts: object, **file_options: Any) -> Source:
    """Where send's and validate's contacts come from, and how a file is read
    (``file_options``: sheet, encoding, delimiter, header_row, include_hidden;
    each checked, UsageError). TypeError for contacts of none of the kinds taken."""
    check_sheet(file_options.get("sheet"))
    check_texts(encoding=file_options.get("encoding"), delimiter=file_options.get("delimiter"))
    check_flags(include_hidden=file_options.get("include_hidden", False))
    if isinstance(contacts, str | os.PathLike):
        path = os.fspath(contacts)
        if not isinstance(path, str):
            raise TypeError("contacts: a path must be text, not bytes")
        return Source(path, path, reading=file_options)
    from bulksend.reading import frames

    given = [name for name, value in file_options.items() if value not in (None, False)]
    if given:
        raise UsageError(f"{', '.join(given)}: apply to a contacts file only, not to contacts in memory")
    if frames.is_dataframe(contacts):
        return Source(frames.FRAME_NAME, open=lambda: frames.table_from_frame(contacts), frame=contacts)
    if isinstance(contacts, MappingABC | bytes | bytearray) or not isinstance(contacts, Iterable):
        raise TypeError(f"contacts: expected a path, a list of dicts or a pandas DataFrame, "
                        f"not {type(contacts).__name__}")
    records = list(contacts)  # read once: the engine reads the rows twice (check, then send)
    return Source(frames.RECORDS_NAME, open=lambda: frames.table_from_records(records))


def mapping_source(mapping: object) -> tuple[str, dict[str, Any] | None]:
    if isinstance(mapping, str | os.PathLike):
        path = os.fspath(mapping)
        if not isinstance(path, str):
            raise TypeError("mapping: a path must be text, not bytes")
        return path, None
    if isinstance(mapping, MappingABC):
        return MAPPING_DICT_NAME, dict(mapping)
    raise TypeError(f"mapping: expected a path or a dict in the mapping file's shape, "
                    f"not {type(mapping).__name__}")


def exclude_paths(exclude: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None,
                   ) -> tuple[str, ...]:
    """``exclude`` as a tuple of paths: one path, or an iterable of them. TypeError otherwise."""
    if exclude is None:
        return ()
    given = [exclude] if isinstance(exclude, str | os.PathLike) else list(exclude)
    paths = tuple(os.fspath(path) for path in given)
    if not all(isinstance(path, str) for path in paths):
        raise TypeError("exclude: a path, or a list of paths, as text")
    return paths
