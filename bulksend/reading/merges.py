"""Merged cells: a range a spreadsheet shows as one cell gives its value to the
rows it covers, in its first column (issue 24).

A person who merges "ACME" over rows 2 to 4 of the Company column means each of
those rows is ACME's; the file holds the value in the top-left cell only, and
the covered cells empty (ECMA-376 Part 1, §18.3.1.55 ``<mergeCell>``; the same
in .xls MERGEDCELLS and .ods ``number-rows-spanned``). Read as stored, two of
three rows would be sent without their company and due date. The readers fill
them down, and say so: ``merged_notes`` are shown by ``validate`` and the top of
``send``.

A range across columns is another thing: "Eve Marie Smith" typed over First
name and Last name, or a long company name spilling over Branch, is one value
laid over several fields, not the same value in each. It stays in the range's
first column (filled down the rows the range spans); the other columns keep the
nothing they hold, and the note names them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bulksend.reading.cells import column_letter

__all__ = ["Merge", "MergeFiller", "merged_notes", "sheet_merges"]

# ((first row, first column), (last row, last column)), 0-based, inclusive: calamine's form.
Merge = tuple[tuple[int, int], tuple[int, int]]
_SHOWN = 8  # ranges named in a note


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
        """``cells`` of sheet row ``number`` (1-based), with the cells below a
        range's top-left cell, in its first column, filled."""
        row = number - 1
        self._open = [(m, v) for m, v in self._open if m[1][0] >= row]
        while self._waiting and self._waiting[0][0][0] <= row:
            merge = self._waiting.pop(0)
            if merge[1][0] < row:
                continue  # a range on rows never read (blank): nothing to carry
            at = merge[0][1] - self._offset
            value = cells[at] if merge[0][0] == row and 0 <= at < len(cells) else ""
            self._open.append((merge, value))
        for ((r0, c0), _end), value in self._open:
            at = c0 - self._offset
            if not value or row == r0 or at < 0:
                continue
            if at >= len(cells):
                cells = cells + [""] * (at + 1 - len(cells))
            cells[at] = value
        return cells


def merged_notes(merges: list[Merge]) -> list[str]:
    """What validate says about the merged ranges of the sheet read, one line
    for the ranges down one column and one for those across columns; [] for none."""
    down = [m for m in merges if m[0][1] == m[1][1]]
    across = [m for m in merges if m[0][1] != m[1][1]]
    notes = []
    if down:
        notes.append(f"merged cell{_s(down)} {_listed(down)}: the value is read into every cell the range"
                     " covers")
    if across:
        notes.append(f"merged cell{_s(across)} {_listed(across)} across columns: the value is read into the"
                     " first column only (" + "; ".join(_first(m) for m in across[:_SHOWN]) + "), the"
                     " other columns are empty")
    return notes


def _s(merges: list[Merge]) -> str:
    return "s" if len(merges) > 1 else ""


def _listed(merges: list[Merge]) -> str:
    shown = ", ".join(reference(m) for m in merges[:_SHOWN])
    return shown + (f" and {len(merges) - _SHOWN} more" if len(merges) > _SHOWN else "")


def _first(merge: Merge) -> str:
    (r0, c0), (r1, _c1) = merge
    into = f"{column_letter(c0)}{r0 + 1}" + (f":{column_letter(c0)}{r1 + 1}" if r1 > r0 else "")
    return f"{reference(merge)} into {into}"


def reference(merge: Merge) -> str:
    """The range as a spreadsheet names it: "D2:E4"."""
    (r0, c0), (r1, c1) = merge
    return f"{column_letter(c0)}{r0 + 1}:{column_letter(c1)}{r1 + 1}"

