"""Reading: a spreadsheet or CSV export, row by row, every cell as text."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Row:
    """One data row of the input, as a person sees it in a spreadsheet."""

    number: int  # spreadsheet row number: header is 1, first data row 2; blank rows count
    values: dict[str, str]  # header name -> cell text ("" when empty or missing)
    extra: tuple[str, ...] = ()  # non-empty cells beyond the header's width: row is invalid
