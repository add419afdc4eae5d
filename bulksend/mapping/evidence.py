"""Evidence: what the rows showed about the choices a mapping makes for them (issue 24).

Every choice made for the person is shown with its evidence (PRODUCT.md, step
0). Some are seen only while rows are mapped: which rows tell the order of day
and month of a date format, which addresses were written in other forms and are
sent normalised (full-width letters, an ideographic full stop), which cells hold
several addresses (Google Contacts' ``a ::: b``) of which the first is sent.
The compiled converters note them here; ``Mapping.guesses`` words them, and
``validate`` and the top of ``send`` print them.

The cost is kept off the hot path: a date's order is checked on distinct cells
only until a row decides it (or ``ORDER_CHECKS`` cells read both ways), and an
address is noted only when it was not sent as written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from bulksend.mapping.problems import quote

__all__ = ["Evidence", "OrderWitness", "day_month_swapped"]

ORDER_CHECKS: Final = 10_000  # distinct date cells tried the other way before giving up
_EXAMPLES: Final = 3


def day_month_swapped(fmt: str) -> str | None:
    """``fmt`` with its day (%d) and month (%m) exchanged, or None when it has not
    both in digits (a month name, %b, is never ambiguous) or writes them with
    dots: 06.03.2027 is day first wherever dates are so written (German, French,
    Swiss, Nordic, Slavic exports); only "/" and "-" are written both ways; nor
    when the year comes first (year-month-day)."""
    if "%d" not in fmt or "%m" not in fmt or "%d.%m" in fmt:
        return None
    year = min((fmt.find(y) for y in ("%Y", "%y") if y in fmt), default=len(fmt))
    if year < fmt.find("%d") and year < fmt.find("%m"):
        return None  # year first (ISO 8601, 2027/03/06) is year-month-day wherever it is written
    return fmt.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")


def order_name(fmt: str) -> str:
    """"day first" or "month first" (or "year first") for a date format."""
    spots = {name: fmt.find(d) for name, d in (("day", "%d"), ("month", "%m"), ("year", "%Y"))}
    present = {name: at for name, at in spots.items() if at >= 0}
    return f"{min(present, key=lambda n: present[n])} first" if present else "as written"


@dataclass
class OrderWitness:
    """Whether a column's dates are told day first from month first (``fmt`` versus ``other``)."""

    where: str  # the prefix of the field's row errors: 'column "Due": '
    fmt: str
    other: str
    decided: tuple[int, str] | None = None  # the first row (and its cell) that reads only as fmt
    both: int = 0  # distinct cells that read both ways
    checks: int = 0

    def see(self, row: int, text: str) -> None:
        """A cell that ``fmt`` read: does it read the other way too?"""
        if self.decided is not None or self.checks >= ORDER_CHECKS:
            return
        self.checks += 1
        try:
            datetime.strptime(text, self.other)
        except ValueError:
            self.decided = (row, text)
            return
        self.both += 1

    def line(self) -> str | None:
        """What the rows showed, on one line; None when no cell was seen."""
        if self.decided is not None:
            row, text = self.decided
            return (f"{self.where}dates read {order_name(self.fmt)} (format {self.fmt}): row {row}"
                    f" ({quote(text)}) reads no other way")
        if self.both:
            return (f"{self.where}no date tells day from month ({self.both} read both ways); read"
                    f" {order_name(self.fmt)} (format {self.fmt}) because the mapping says so")
        return None


@dataclass
class _Changed:
    """Cells sent otherwise than written: how many, and the first few (row, cell, sent)."""

    count: int = 0
    examples: list[tuple[int, str, str]] = field(default_factory=list)

    def add(self, row: int, cell: str, sent: str) -> None:
        """One more cell sent as ``sent`` instead of as written."""
        self.count += 1
        if len(self.examples) < _EXAMPLES:
            self.examples.append((row, cell, sent))

    def shown(self) -> str:
        """The first cells, each with its row and what was sent."""
        return "; ".join(f"row {row}: {quote(cell)} as {quote(sent)}" for row, cell, sent in self.examples)


class Evidence:
    """What one mapping's converters saw; ``row`` is the row being mapped
    (``Mapping.apply`` sets it before each row)."""

    __slots__ = ("_multi", "_normalised", "_orders", "row")

    def __init__(self) -> None:
        self.row = 0
        self._orders: list[OrderWitness] = []
        self._normalised: dict[str, _Changed] = {}
        self._multi: dict[str, _Changed] = {}

    def order(self, where: str, fmt: str | None) -> OrderWitness | None:
        """A witness for a date format that has a day/month twin; None otherwise."""
        other = day_month_swapped(fmt) if fmt else None
        if fmt is None or other is None or other == fmt:
            return None
        witness = OrderWitness(where, fmt, other)
        self._orders.append(witness)
        return witness

    def normalised(self, where: str, cell: str, sent: str) -> None:
        """An address sent in its normal form (NFKC, IDNA dots, domain case), not as written."""
        self._normalised.setdefault(where, _Changed()).add(self.row, cell, sent)

    def several(self, where: str, cell: str, sent: str) -> None:
        """A cell holding several addresses (Google's " ::: "), of which the first is sent."""
        self._multi.setdefault(where, _Changed()).add(self.row, cell, sent)

    def lines(self) -> list[str]:
        """One line per choice the rows showed, with the rows that show it."""
        found = [line for line in (w.line() for w in self._orders) if line is not None]
        for where, changed in self._normalised.items():
            s = "es" if changed.count > 1 else ""
            found.append(f"{where}{changed.count} address{s} written with other characters (full-width"
                         f" letters, another full stop, ...) sent in the normal form: {changed.shown()}")
        for where, changed in self._multi.items():
            s = "s" if changed.count > 1 else ""
            found.append(f'{where}{changed.count} cell{s} holding several addresses (" ::: ", as Google'
                         f" Contacts writes them): the first is sent: {changed.shown()}")
        return found
