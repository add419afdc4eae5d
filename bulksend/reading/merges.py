"""Merged cells: a range a spreadsheet shows as one cell gives its value to every
cell it covers (issue 24).

A person who merges "ACME" over rows 2 to 4 of the Company column means each of
those rows is ACME's; the file holds the value in the top-left cell only, and
the covered cells empty (ECMA-376 Part 1, §18.3.1.55 ``<mergeCell>``; the same
in .xls MERGEDCELLS and .ods ``number-rows-spanned``). Read as stored, two of
three rows would be sent without their company and due date. The readers fill
them, and say so: ``merged_note`` is shown by ``validate`` and the top of ``send``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["Merge", "MergeFiller", "merged_note", "sheet_merges"]

# ((first row, first column), (last row, last column)), 0-based, inclusive: calamine's form.
Merge = tuple[tuple[int, int], tuple[int, int]]
_SHOWN = 4  # ranges named in the note


def sheet_merges(ranges: Iterable[Any] | None) -> list[Merge]:
    """The ranges of more than one cell, in row order, from calamine's
    ``merged_cell_ranges`` (or a reader's list in the same form)."""
    found: list[Merge] = []
    for (r0, c0), (r1, c1) in ranges or ():
        if (r1, c1) != (r0, c0) and r1 >= r0 and c1 >= c0:
            found.append(((int(r0), int(c0)), (int(r1), int(c1))))
    return sorted(found)


class MergeFiller:
    """Fills the cells merged ranges cover, row by row, in order. ``offset``:
    the sheet column of a record's first cell (calamine skips empty leading
    columns). False when there is nothing to fill."""

    def __init__(self, merges: list[Merge], offset: int = 0) -> None:
        self._waiting = list(merges)  # not yet reached, in row order
        self._open: list[tuple[Merge, str]] = []  # reached: the range and its value
        self._offset = offset

    def __bool__(self) -> bool:
        return bool(self._waiting or self._open)

    def fill(self, number: int, cells: list[str]) -> list[str]:
        """``cells`` of sheet row ``number`` (1-based), with covered cells filled."""
        row = number - 1
        self._open = [(m, v) for m, v in self._open if m[1][0] >= row]
        while self._waiting and self._waiting[0][0][0] <= row:
            merge = self._waiting.pop(0)
            if merge[1][0] < row:
                continue  # a range on rows never read (blank): nothing to carry
            at = merge[0][1] - self._offset
            value = cells[at] if merge[0][0] == row and 0 <= at < len(cells) else ""
            self._open.append((merge, value))
        for ((r0, c0), (_r1, c1)), value in self._open:
            if not value:
                continue
            for column in range(c0, c1 + 1):
                at = column - self._offset
                if at < 0 or (row == r0 and column == c0):
                    continue
                if at >= len(cells):
                    cells = cells + [""] * (at + 1 - len(cells))
                cells[at] = value
        return cells


def merged_note(merges: list[Merge]) -> str:
    """What validate says about the merged ranges of the sheet read; "" for none."""
    if not merges:
        return ""
    shown = ", ".join(_reference(m) for m in merges[:_SHOWN])
    more = f" and {len(merges) - _SHOWN} more" if len(merges) > _SHOWN else ""
    s = "s" if len(merges) > 1 else ""
    return f"merged cell{s} {shown}{more}: the value is read into every cell the range covers"


def _reference(merge: Merge) -> str:
    (r0, c0), (r1, c1) = merge
    return f"{_letter(c0)}{r0 + 1}:{_letter(c1)}{r1 + 1}"


def _letter(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters
