"""A campaign's elements, and the items a row asks for, named by id or by name (issue 15).

POST /request's ``items`` is "an array of itemId" (collect-api.md §4); a
campaign's elements, read through GET /campaigns/{id} (§6), carry an ``id``, per
schema an ``itemId``, and a ``name`` ("Passport"). People know the names; the
API wants ids. An item is therefore taken as written when it is one of the
campaign's ids or itemIds (§9 leaves open which one the API wants), and
otherwise as an element's name: matched ignoring case, accents kept, spaces
collapsed, it becomes that element's ``id``. A name two elements share, or
one no element has, is refused, listing the campaign's names.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["Catalogue", "Element", "ItemProblem", "resolve_payload_items"]

PARTS: Final = ("documents", "forms", "texts", "pages")  # the element arrays of GET /campaigns/{id}
_SHOWN_NAMES: Final = 12  # names listed in one message


class ItemProblem(ValueError):
    """An item that names no element of its campaign, or several. ``str()`` is the
    whole message, the campaign's names included; ``short`` leaves them out."""

    def __init__(self, short: str, names: str = "") -> None:
        super().__init__(f"{short}; its elements: {names}" if names else short)
        self.short = short


def name_key(name: str) -> str:
    """How element names are compared: NFC, case-folded, runs of spaces as one."""
    return " ".join(unicodedata.normalize("NFC", name).casefold().split())


@dataclass(frozen=True)
class Element:
    """One element of a campaign: its ``id`` (what ``items`` is sent as), its
    ``itemId`` when the answer has one, its ``name`` and the array it is in
    (``documents``, ``forms``, ``texts`` or ``pages``)."""

    id: str
    item_id: str | None
    name: str
    part: str


@dataclass
class Catalogue:
    """The elements of one campaign, as GET /campaigns/{id} answered (§6)."""

    campaign_id: str
    name: str
    elements: tuple[Element, ...]
    _by_name: dict[str, list[Element]] = field(default_factory=dict, repr=False)
    _ids: frozenset[str] = field(default=frozenset(), repr=False)
    _resolved: dict[str, str] = field(default_factory=dict, repr=False)  # item -> id, for speed

    def __post_init__(self) -> None:
        for element in self.elements:
            self._by_name.setdefault(name_key(element.name), []).append(element)
        self._ids = frozenset(
            key for e in self.elements for key in (e.id, e.item_id) if key
        )

    @classmethod
    def from_body(cls, campaign_id: str, body: Mapping[str, Any]) -> Catalogue:
        """Read the answer of GET /campaigns/{campaign_id} (a JSON object). Elements
        without an ``id`` (and ``itemId``) are left out; a missing name is ""."""
        elements = []
        for part in PARTS:
            for entry in body.get(part) or []:
                if not isinstance(entry, dict):
                    continue
                element_id = entry.get("id") or entry.get("itemId")
                if not element_id:
                    continue
                item_id = entry.get("itemId")
                elements.append(Element(str(element_id), str(item_id) if item_id else None,
                                        str(entry.get("name") or ""), part))
        return cls(campaign_id, str(body.get("name") or ""), tuple(elements))

    def names(self) -> list[str]:
        """The elements' names in the campaign's order (documents, forms, texts, pages)."""
        return [e.name for e in self.elements if e.name]

    def names_text(self) -> str:
        """The names for a message: '"ID card", "Proof of address", …' (at most 12)."""
        names = self.names()
        shown = ", ".join(f'"{n}"' for n in names[:_SHOWN_NAMES])
        if len(names) > _SHOWN_NAMES:
            shown += f", … ({len(names)} in all)"
        return shown or "(no elements)"

    def title(self) -> str:
        """The campaign for a message: its id, and its name in brackets when known."""
        return f"{self.campaign_id} ({self.name})" if self.name else self.campaign_id

    def resolve(self, item: str) -> str:
        """The id to send for ``item``: the item itself when it is an element's
        ``id`` or ``itemId``, else the ``id`` of the one element so named.
        Raises ItemProblem when no element, or several, have that name."""
        found = self._resolved.get(item)
        if found is not None:
            return found
        if item in self._ids:
            found = item
        else:
            matches = self._by_name.get(name_key(item), [])
            if len(matches) > 1:
                ids = ", ".join(e.id for e in matches)
                raise ItemProblem(f"item {item!r} names {len(matches)} elements of campaign "
                                  f"{self.title()} (ids {ids}): give the id instead")
            if not matches:
                raise ItemProblem(f"item {item!r} is neither the name nor the id of an element of "
                                  f"campaign {self.title()}", self.names_text())
            found = matches[0].id
        if len(self._resolved) < 10_000:
            self._resolved[item] = found
        return found

    def problem(self, item: str) -> ItemProblem | None:
        """Why ``item`` cannot be sent in this campaign, or None when it can."""
        try:
            self.resolve(item)
        except ItemProblem as exc:
            return exc
        return None

    def name_of(self, item: str) -> str | None:
        """The name of the element ``item`` (an id, itemId or name) stands for, or None."""
        try:
            element_id = self.resolve(item)
        except ItemProblem:
            return None
        return next((e.name for e in self.elements if element_id in (e.id, e.item_id)), None)


def resolve_payload_items(payload: dict[str, Any], catalogues: Mapping[str, Catalogue]) -> None:
    """Replace, in place, the names in ``payload["items"]`` by element ids, using
    the catalogue of the payload's campaign (a campaign with none is left as it
    is: it was not checked). Raises ItemProblem for the first item that names no
    element, or several."""
    items = payload.get("items")
    catalogue = catalogues.get(str(payload.get("campaignId", "")))
    if catalogue is None or not isinstance(items, Sequence) or isinstance(items, str):
        return
    payload["items"] = [catalogue.resolve(str(item)) for item in items]
