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

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from bulksend.mapping.problems import quote

__all__ = ["Evidence", "OrderWitness", "date_text", "day_month_swapped", "reads", "twin_format"]

ORDER_CHECKS: Final = 10_000  # distinct date cells tried the other way before giving up
_EXAMPLES: Final = 3
OTHERS_ROWS: Final = 200  # rows whose other columns are scanned for addresses
_ADDRESS: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# A spreadsheet's date cell as reading/cells.py writes it: read as such, whatever the format.
_SHEET_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}(?: \d{2}:\d{2}:\d{2})?")


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


def twin_format(fmt: str) -> str | None:
    """``fmt`` with day and month exchanged, dotted formats included
    (``%d.%m.%y`` -> ``%m.%d.%y``): the reading a row may show instead of the
    mapping's (a dotted date is day first by convention, but a row such as
    ``6.20.27`` can only be month first). None as for ``day_month_swapped``."""
    swapped = day_month_swapped(fmt)
    if swapped is not None or "%d.%m" not in fmt or "%m" not in fmt:
        return swapped
    return fmt.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")


def reads(text: str, fmt: str) -> bool:
    """Whether strptime reads ``text`` in ``fmt``."""
    try:
        datetime.strptime(text, fmt)
    except ValueError:
        return False
    return True


def date_text(text: str) -> str:
    """A date cell as it is read: full-width digits and separators (typed on a
    Japanese or Chinese keyboard: U+FF12 U+FF15 U+FF0F ... for "25/...") as
    their ASCII forms (Unicode NFKC), then trimmed."""
    return unicodedata.normalize("NFKC", text).strip() if not text.isascii() else text.strip()


@dataclass
class OrderWitness:
    """Whether a column's dates are told day first from month first (``fmt`` versus ``other``).

    ``decided``: the first row that reads only as ``fmt``; ``contrary``: the
    first that reads only as ``other``. A contrary row with no deciding one is
    evidence against the mapping's order: ``refusal`` says so, and validate
    and send stop (issue 24) rather than send every date read both ways swapped.
    ``quiet``: a dotted format (day first wherever dates are so written): no
    line while no row decides."""

    where: str  # the prefix of the field's row errors: 'column "Due": '
    fmt: str
    other: str
    column: str | None = None  # the column it reads (None: a template), for ``Evidence.observe``
    quiet: bool = False
    decided: tuple[int, str] | None = None  # the first row (and its cell) that reads only as fmt
    contrary: tuple[int, str] | None = None  # the first row (and its cell) that reads only as other
    against: int = 0  # distinct cells that read only as other
    both: int = 0  # distinct cells that read both ways
    checks: int = 0
    seen: set[str] = field(default_factory=set)
    sheet: int = 0  # cells read as a spreadsheet's date cells (YYYY-MM-DD), not in fmt
    sheet_first: tuple[int, str] | None = None

    def sheet_date(self, row: int, text: str) -> None:
        """A cell read as a spreadsheet's date cell, whatever the format."""
        self.sheet += 1
        if self.sheet_first is None:
            self.sheet_first = (row, text)

    def see(self, row: int, text: str) -> None:
        """A cell that ``fmt`` read: does it read the other way too?"""
        if self.decided is not None or self.checks >= ORDER_CHECKS or text in self.seen:
            return
        self.seen.add(text)
        self.checks += 1
        if reads(text, self.other):
            self.both += 1
        else:
            self.decided = (row, text)

    def refute(self, row: int, text: str) -> bool:
        """A cell that ``fmt`` did not read: whether it reads as ``other`` (noted)."""
        if not reads(text, self.other):
            return False
        if text not in self.seen and self.checks < ORDER_CHECKS:
            self.seen.add(text)
            self.checks += 1
            self.against += 1
        if self.contrary is None:
            self.contrary = (row, text)
        return True

    def observe(self, row: int, text: str) -> None:
        """A cell seen by the check pass, not mapped: read as the converter would."""
        if self.decided is not None or not text or text in self.seen or _SHEET_DATE.fullmatch(text):
            return
        if reads(text, self.fmt):
            self.see(row, text)
        elif self.contrary is None:
            self.refute(row, text)

    def refusal(self) -> str | None:
        """Why the rows refuse the mapping's order (a row reads only the other
        way and none only this way); None when they do not."""
        if self.contrary is None or self.decided is not None:
            return None
        row, text = self.contrary
        mine, theirs = order_name(self.fmt), order_name(self.other)
        return (f"{self.where}row {row} ({quote(text)}) reads only {theirs} (format {self.other}) and no"
                f" row reads only {mine}, as the mapping's format {self.fmt} says: the dates that read"
                " both ways would be sent with day and month swapped")

    def line(self) -> str | None:
        """What the rows showed, on one line; None when no cell was seen."""
        if self.decided is not None:
            row, text = self.decided
            found = (f"{self.where}dates read {order_name(self.fmt)} (format {self.fmt}): row {row}"
                     f" ({quote(text)}) reads no other way")
            if self.contrary is not None:
                row, text = self.contrary
                s = "s" if self.against > 1 else ""
                found += (f"; {self.against} cell{s} read only {order_name(self.other)}, e.g. row {row}"
                          f" ({quote(text)}): invalid")
            return found + self._sheet_dates()
        if self.both and not self.quiet:
            return (f"{self.where}no date tells day from month ({self.both} read both ways); read"
                    f" {order_name(self.fmt)} (format {self.fmt}) because the mapping says so"
                    + self._sheet_dates())
        return None

    def _sheet_dates(self) -> str:
        """The spreadsheet's own date cells beside text dates: read as such, but a
        file that passed through a program set to the other order has them swapped."""
        if self.sheet_first is None:
            return ""
        row, text = self.sheet_first
        s = "s" if self.sheet > 1 else ""
        return (f"; {self.sheet} cell{s} written YYYY-MM-DD (the sheet's own dates, e.g. row {row}"
                f" {quote(text)}) read as such: check them if the file passed through a program set to"
                " the other order")


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

    __slots__ = ("_email", "_multi", "_normalised", "_orders", "_others", "_scanned", "_watched", "row",
                 "scanning")

    def __init__(self) -> None:
        self.row = 0
        self._orders: list[OrderWitness] = []
        self._watched: list[OrderWitness] = []  # witnesses of a column, still undecided
        self._normalised: dict[str, _Changed] = {}
        self._multi: dict[str, _Changed] = {}
        self._email: str | None = None  # the column contact.email reads
        self._others: dict[str, int] = {}  # other columns holding addresses: rows seen holding one
        self._scanned = 0
        self.scanning = False  # Mapping.apply calls scan() while True

    def email_from(self, column: str) -> None:
        """contact.email reads ``column``: the first rows' other columns are
        scanned for addresses (``scan``), to show that choice when another
        column holds them too (issue 24: "Personal email" beside "Work email")."""
        self._email = column
        self.scanning = True

    def scan(self, values: dict[str, str]) -> None:
        """One row mapped: its other columns that hold an address, counted (the
        first OTHERS_ROWS rows)."""
        self._scanned += 1
        if self._scanned >= OTHERS_ROWS:
            self.scanning = False
        for name, cell in values.items():
            if "@" in cell and name != self._email and _ADDRESS.fullmatch(cell.strip()):
                self._others[name] = self._others.get(name, 0) + 1

    def order(self, where: str, fmt: str | None, column: str | None = None) -> OrderWitness | None:
        """A witness for a date format that has a day/month twin (a dotted one
        included: quiet); None otherwise. ``column``: the column it reads."""
        other = twin_format(fmt) if fmt else None
        if fmt is None or other is None or other == fmt:
            return None
        witness = OrderWitness(where, fmt, other, column, quiet=day_month_swapped(fmt) is None)
        self._orders.append(witness)
        if column is not None:
            self._watched.append(witness)
        return witness

    def observe(self, values: dict[str, str], row: int) -> bool:
        """The cells of a row the check pass reads without mapping it: each
        date column whose order no row has decided yet is shown its cell.
        Returns whether any such column is left (False: no need to call again)."""
        if not self._watched:
            return False
        for witness in self._watched:
            assert witness.column is not None
            witness.observe(row, date_text(values.get(witness.column, "")))
        self._watched = [w for w in self._watched if w.decided is None and w.checks < ORDER_CHECKS]
        return bool(self._watched)

    def refusals(self) -> list[str]:
        """Each date column whose rows refuse the mapping's order (OrderWitness.refusal)."""
        return [found for found in (w.refusal() for w in self._orders) if found is not None]

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
        if self._others and self._email is not None:
            first = "" if self._scanned < OTHERS_ROWS else "the first "
            others = ", ".join(f"{quote(name)} also holds addresses ({count} of {first}{self._scanned} rows)"
                               for name, count in self._others.items())
            found.append(f"email from {quote(self._email)}, the column the mapping names; {others}")
        return found
