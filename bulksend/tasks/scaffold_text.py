"""The text ``bulksend init`` writes (a commented YAML mapping) and what it tells
the person afterwards; the decisions are tasks/scaffold.py's. Values go through
PyYAML's emitter, so a header such as ``yes``, ``a, b`` or ``#`` stays a
column name."""

from __future__ import annotations

import shlex
from datetime import datetime
from typing import Any, Final

import yaml

from bulksend.common.errors import UsageError
from bulksend.mapping.items import PARTS, Catalogue
from bulksend.mapping.problems import quote
from bulksend.mapping.questions import PLACEHOLDER, question
from bulksend.reading.cells import normal_name
from bulksend.reading.table import Table
from bulksend.tasks.headers import role_of
from bulksend.tasks.scaffold import Column, DateFormat, InitConfig, Plan, today

__all__ = ["render", "report"]

_COMMENT_AT: Final = 46  # column where a field's comment starts
_CONTACT_FIELDS: Final = ("email", "firstName", "lastName", "company")


def _flow(value: Any) -> str:
    """``value`` as YAML on one line (a mapping or list in flow style)."""
    text: str = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, allow_unicode=True,
                               width=10**6)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _entry(key: str, value: Any, indent: int = 0, comment: str = "") -> str:
    line = f"{' ' * indent}{_flow(key)}: {_flow(value)}"
    return f"{line:<{_COMMENT_AT}} # {_one_line(comment)}" if comment else line


def _one_line(text: str) -> str:
    """``text`` fit for a YAML comment: a line break in it would end the comment."""
    return " ".join(text.splitlines())


def _name(column: str) -> str:
    """A column's name for a comment or a message: quoted, a line break as \\n."""
    return quote(column, limit=60)


def _column(column: str) -> str:
    """A column's name as the mapping writes it: a header cell with line breaks
    as the one line it reads as (names match after ``normal_name``), so that
    the mapping keeps one field a line."""
    return normal_name(column) if len(column.splitlines()) > 1 else column


def _spec(column: str, *, required: bool = False, **options: Any) -> dict[str, Any]:
    return {"column": _column(column), **options, "required": required}


def _filled(profile: Column, total: int) -> str:
    return f"{profile.filled} of {total} rows fill it"


def _commands(config: InitConfig) -> list[str]:
    args = [config.contacts, "-m", str(config.output)]
    for option, value in (("--sheet", config.sheet), ("--encoding", config.encoding),
                          ("--delimiter", config.delimiter), ("--header-row", config.header_row)):
        if value is not None:
            args += [option, str(value)]
    read = shlex.join(args)
    return [f"bulksend validate {read} --preview 3", f"bulksend send {read} --sandbox"]


def render(config: InitConfig, table: Table, total: int, columns: dict[str, Column], plan: Plan,
           catalogue: Catalogue | None) -> str:
    """The mapping's text. UsageError when no column can be the contact's email."""
    if "email" not in plan.roles:
        raise _no_email(config, table, columns)
    validate, rehearse = _commands(config)
    parts = [
        f"# bulksend mapping for {config.contacts}, written by `bulksend init` on {today():%Y-%m-%d}.",
        f"# Read as: {table.describe()}; {total} rows.",
        "# Each field below is a field of the request sent for every row (POST /v1/request):",
        "#   Email                                 a bare name is a column of the file",
        "#   {column: Company, required: false}    left out of the request when the cell is empty",
        "#   {value: …}                            a constant, the same for every row",
        "# More: mapping.example.yaml and the README's \"Mapping file\".",
        "#",
        "# Next:",
        f"#   {validate}   # every row checked, 3 requests shown",
        f"#   {rehearse}   # the whole run against a local sandbox; no key",
        "",
        *_campaign(config, catalogue),
        "",
        *_contact(plan, columns),
        "",
        *_items(plan, columns, catalogue),
        "",
        *_due(plan, columns),
        "# Send the campaign's planned messages (the request email and its reminders); false: none.",
        _entry("sendMessage", True),
        "",
        "# What identifies a row: its campaign and the contact's email (compared ignoring case).",
        "# Rerunning the same command, or a newer export, never sends a second request to a key",
        "# already sent; a row repeating a key of the same file is `duplicate` and is not sent.",
        _entry("key", ["campaignId", "contact.email"]),
    ]
    return "\n".join(parts) + "\n"


def _no_email(config: InitConfig, table: Table, columns: dict[str, Column]) -> UsageError:
    """No column can be the contact's email: the sheet read (and why), a title
    merged over the header row, a row below that names the email (issue 24, M1, M2)."""
    where = config.contacts
    if table.sheet is not None:
        why = next((c.split(": ", 1)[1] for c in table.guesses() if c.startswith(f'sheet "{table.sheet}":')),
                   "")
        where += f', sheet "{table.sheet}"' + (f" ({why})" if why else "")
    listed = ", ".join(repr(c) for c in columns) or "nothing"
    header = f"row {table.header_row} holds {listed}"
    if table.title:
        header = f"row {table.header_row} is a title merged over {table.title} ({listed}), not column names"
    below = next((n for n, cells in table.header.peek() if n > table.header_row
                  and any(role_of(c) == "email" for c in cells)), None)
    hint = (f"the column names are on row {below}: pass --header-row {below}" if below is not None
            else "a contact needs an email: check --header-row and --sheet, or write the mapping"
                 " from mapping.example.yaml")
    if table.sheet is not None and below is None:
        hint += " (--sheet picks another tab)"
    return UsageError(f"{where}: no column holds email addresses (by its header or its cells); {header}",
                      hint=hint)


def _campaign(config: InitConfig, catalogue: Catalogue | None) -> list[str]:
    if config.campaign is None:
        return ["# QUESTION: the campaign (a template in Collect) sent to every row. Replace " + PLACEHOLDER,
                "# with its id: 17 letters and digits, in the app's address bar when the campaign is",
                "# open; or run `bulksend init … --campaign ID --force` with COLLECT_API_KEY set",
                "# to list its documents and forms here. validate and send refuse the stand-in.",
                _entry("campaignId", {"value": PLACEHOLDER})]
    if catalogue is None:
        return ["# The campaign sent to every row. Its documents and forms are not listed: no API key",
                "# was set (COLLECT_API_KEY or --api-key-file) when this was written.",
                _entry("campaignId", {"value": config.campaign})]
    lines = [f"# The campaign sent to every row: \"{catalogue.name}\" (GET /campaigns/{config.campaign}).",
             "# Its elements, which items may name by name or by id:"]
    for part in PARTS:
        for element in (e for e in catalogue.elements if e.part == part):
            lines.append(f"#   {part[:-1]:<9} \"{element.name}\"  ({element.id})")
    if not catalogue.elements:
        lines.append("#   (none)")
    return [*lines, _entry("campaignId", {"value": config.campaign})]


def _contact(plan: Plan, columns: dict[str, Column]) -> list[str]:
    lines = ["# The contact the request goes to: created, or matched by email, in Collect.", "contact:"]
    for name in _CONTACT_FIELDS:
        column = plan.roles.get(name)
        if column is None:
            lines.append(f"  # {name}: (no column found)")
            continue
        if name == "email" and plan.email_choices:
            lines += _email_question(plan, columns)
            continue
        why = f"column {_name(column)}, by {plan.why.get(column, 'its header')}"
        if name == "email":
            lines.append(_entry(name, _column(column), 2, why + "; a row without one is invalid"))
            continue
        if name == "firstName" and plan.whole_name:
            why += "; the whole name"
        lines.append(_entry(name, _spec(column), 2, why + _empties(columns[column])))
    if plan.data:
        lines.append("  # The contact's custom data: the file's other columns, by key (rename keys freely).")
        lines.append("  data:")
        for key, column in plan.data.items():
            lines.append(_data_entry(key, column, plan, columns[column]))
    return lines


def _email_question(plan: Plan, columns: dict[str, Column]) -> list[str]:
    """The contact's email when several columns hold addresses: the question (issue 24)."""
    lines = ["  # QUESTION: several columns hold email addresses; validate and send stop until",
             "  # email names the one requests go to (delete the others and \"or\"):"]
    for name in plan.email_choices:
        profile = columns[name]
        shown = ", ".join(repr(s) for s in profile.samples[:2])
        lines.append(_one_line(f"  #   {_name(name)}: {_filled(profile, plan.total)}, e.g. {shown}"))
    return [*lines, _entry("email", plan.roles["email"], 2)]


def _data_entry(key: str, column: str, plan: Plan, profile: Column) -> str:
    kept = plan.as_text.get(column)
    if kept is not None:
        return _entry(key, _spec(column), 4, f"dates like {kept.example}, sent as written: {_undecided(kept)}"
                      + _empties(profile))
    found = plan.dates.get(column)
    if found is None:
        return _entry(key, _spec(column), 4, f"column {_name(column)}" + _empties(profile))
    note = f"dates like {found.example}, sent as YYYY-MM-DD"
    if found.decided is not None:
        note += f"; {_order(found.fmt)} (row {found.decided[0]}: {found.decided[1]})"
    return _entry(key, _spec(column, type="date", format=found.fmt), 4, note)


def _undecided(kept: DateFormat) -> str:
    """Why a data column's dates are sent as written."""
    if kept.conflict and kept.decided is not None and kept.contrary is not None:
        return (f"rows disagree on the order of day and month (row {kept.decided[0]}: {kept.decided[1]},"
                f" row {kept.contrary[0]}: {kept.contrary[1]})")
    return "every one reads day first and month first alike"


def _order(fmt: str) -> str:
    return "month first" if fmt.find("%m") < fmt.find("%d") else "day first"


def _empties(profile: Column) -> str:
    rows = "row" if profile.empty == 1 else "rows"
    return f"; empty in {profile.empty} {rows}" if profile.empty else ""


def _items(plan: Plan, columns: dict[str, Column], catalogue: Catalogue | None) -> list[str]:
    column = plan.roles.get("items")
    if column is None:
        names = catalogue.names()[:2] if catalogue is not None else []
        example = _entry("items", {"value": names or ["ID card", "Proof of address"]})
        return ["# Every row is sent the whole campaign. To ask for only some of its elements, by name:",
                f"# {example}"]
    shown = "a line break" if plan.split == "\n" else f'"{plan.split}"'
    profile = columns[column]
    required = profile.mostly_filled()
    lines = [f"# Which of the campaign's elements to ask for: column {_name(column)} holds their names or",
             f"# ids, separated by {shown}. A name is sent as its element's id, checked before",
             "# anything is sent."]
    if required:
        lines.append(f"# {_filled(profile, plan.total)}: a row whose cell is empty is invalid (required:"
                     " false sends it the whole campaign).")
    else:
        lines.append("# An empty cell sends the whole campaign.")
    unknown = _unknown_items(profile, plan.split, catalogue)
    if unknown:
        lines.append(f"# Careful: not elements of the campaign: {', '.join(repr(u) for u in unknown)}.")
    return [*lines, _entry("items", _spec(column, split=plan.split, required=required))]


def _unknown_items(profile: Column, split: str, catalogue: Catalogue | None) -> list[str]:
    if catalogue is None:
        return []
    values = {v.strip() for cell in profile.samples for v in cell.split(split) if v.strip()}
    return sorted(v for v in values if catalogue.problem(v) is not None)[:5]


def _due(plan: Plan, columns: dict[str, Column]) -> list[str]:
    column = plan.roles.get("dueDate")
    if column is None:
        if plan.not_due is None:
            return []
        named, cell = plan.not_due
        return [f"# No due date: column {_name(named)} is named like one, but none of its cells is a date"
                f" (e.g. {cell!r}); it is sent as contact.data.", ""]
    found = plan.dates[column]
    profile = columns[column]
    required = profile.mostly_filled()
    what = "a date-time" if found.has_time else "a date is the end of that day, 23:59,"
    lines = [f"# The due date: column {_name(column)}, written like {found.example} (format {found.fmt}).",
             f"# {what[0].upper() + what[1:]} in the team's time zone (GET /team, read when sending);",
             "# add `timezone: Europe/Paris` (say) to choose one. A date already past makes the row",
             "# invalid (add `past: allow` to send it anyway)."]
    if required:
        lines.append(f"# {_filled(profile, plan.total)}: a row without a due date is invalid"
                     " (required: false sends it with none).")
    fmt: str = found.fmt
    if found.ambiguous and found.other is not None:
        fmt = question([found.fmt, found.other])
        lines += _order_question(found)
    elif found.decided is not None:
        lines.append(f"# {_order(found.fmt)[0].upper()}{_order(found.fmt)[1:]}: row {found.decided[0]}"
                     f" ({found.decided[1]}) reads no other way.")
    elif found.dotted:
        lines.append(f"# Day first: dates written with dots are ({found.example} is {_reading(found)});"
                     " no row reads otherwise.")
    lines += [f"# {line}" for line in _due_cautions(found)]
    return [*lines, _entry("dueDate", _spec(column, format=fmt, required=required)), ""]


def _order_question(found: DateFormat) -> list[str]:
    """The mapping's comment for the question of the order of day and month."""
    keep = (f'# the file uses: "{found.fmt}" ({_order(found.fmt)}) or "{found.other}"'
            f" ({_order(found.other or '')}).")
    if found.conflict and found.decided is not None and found.contrary is not None:
        return [f"# QUESTION: the rows disagree: row {found.decided[0]} ({found.decided[1]}) reads only"
                f" {_order(found.fmt)}, row {found.contrary[0]} ({found.contrary[1]}) only"
                f" {_order(found.other or '')}; validate and send stop until format keeps the one",
                keep[:-1] + "; the rows written the other way are then invalid."]
    return [f"# QUESTION: every date here reads day first and month first alike ({found.example}:",
            f"# {_both(found)}); validate and send stop until format keeps the one", keep]


def _due_cautions(found: DateFormat) -> list[str]:
    """What to check in the due date's cells: those no format reads (invalid
    rows), the spreadsheet's date cells beside text dates."""
    lines = []
    if found.misses:
        shown = ", ".join(f"row {row}: {cell!r}" for row, cell in found.missed)
        s = "s" if found.misses > 1 else ""
        lines.append(f"Careful: {found.misses} cell{s} fit no date format ({shown}): validate lists those"
                     " rows invalid until they are corrected.")
    if found.sheet_dates and (found.decided is not None or found.ambiguous):
        lines.append(f"Careful: {found.sheet_dates} cell(s) are the sheet's own dates beside text dates:"
                     " a file opened in a program set to the other order of day and month swaps the dates"
                     " it could read; check them.")
    return lines


def _reading(found: DateFormat) -> str:
    day = datetime.strptime(found.example, found.fmt)
    return f"{day.day} {day:%B}" if _order(found.fmt) == "day first" else f"{day:%B} {day.day}"


def _both(found: DateFormat) -> str:
    """How one date reads in both orders: "6 March or June 3"."""
    readings = []
    for fmt in (found.fmt, found.other or found.fmt):
        day = datetime.strptime(found.example, fmt)
        readings.append(f"{day.day} {day:%B}" if _order(fmt) == "day first" else f"{day:%B} {day.day}")
    return " or ".join(readings)


def report(config: InitConfig, table: Table, total: int, columns: dict[str, Column], plan: Plan,
           catalogue: Catalogue | None) -> list[str]:
    """What init tells the person: each field, its column and why, the questions
    left in the mapping (issue 24), then what to run next."""
    lines = [f"wrote {config.output} for {config.contacts} ({total} rows)"]
    questions: list[str] = []

    def add(field: str, text: str) -> None:
        lines.append(_one_line(f"  {field:<18} {text}"))

    for name in _CONTACT_FIELDS:
        column = plan.roles.get(name)
        if name == "email" and plan.email_choices:
            listed = " or ".join(_name(c) for c in plan.email_choices)
            add("contact.email", f"? {listed}: each holds addresses")
            questions.append(f"contact.email: which column, {listed}?")
            continue
        add(f"contact.{name}", f'<- {_name(column)} ({plan.why.get(column, "its header")})' if column
            else "(no column found)")
    if plan.data:
        add("contact.data", "<- " + ", ".join(f"{_name(c)} as {k}" for k, c in plan.data.items()))
    if "items" in plan.roles:
        required = ", required" if columns[plan.roles["items"]].mostly_filled() else ""
        add("items", f'<- {_name(plan.roles["items"])}, split on {plan.split!r}{required}')
    if "dueDate" in plan.roles:
        lines.append(_due_report(plan, columns, questions))
    elif plan.not_due is not None:
        add("dueDate", f"(none): {_name(plan.not_due[0])} is named like a due date but holds no date"
                       f" (e.g. {plan.not_due[1]!r}); sent as contact.data")
    for column, kept in plan.as_text.items():
        add("contact.data", f"{_name(column)}: dates like {kept.example} sent as written (day and month"
                            " cannot be told apart" + (": the rows disagree)" if kept.conflict else ")"))
    if config.campaign is None:
        add("campaignId", f"? {PLACEHOLDER}: put your campaign's id in {config.output} "
                          "(or rerun with --campaign ID --force)")
        questions.append(f"campaignId: your campaign's id in place of {PLACEHOLDER}")
    elif catalogue is None:
        add("campaignId", f"{config.campaign} (its elements are not listed: no API key)")
    else:
        add("campaignId", f'{config.campaign} "{catalogue.name}": its {len(catalogue.elements)} '
                          "elements are listed in the mapping")
    if questions:
        lines.append(f"to answer in {config.output} (validate and send stop until then):")
        lines += [f"  {q}" for q in questions]
    return [*lines, "next:", *(f"  {command}" for command in _commands(config))]


def _due_report(plan: Plan, columns: dict[str, Column], questions: list[str]) -> str:
    column = plan.roles["dueDate"]
    found = plan.dates[column]
    text = f"<- {_name(column)}, dates like {found.example}"
    if found.conflict and found.decided is not None and found.contrary is not None:
        text += (f": ? {found.fmt} or {found.other} (row {found.decided[0]} {found.decided[1]} reads only"
                 f" {_order(found.fmt)}, row {found.contrary[0]} {found.contrary[1]} only"
                 f" {_order(found.other or '')})")
    elif found.ambiguous and found.other is not None:
        text += f": ? {found.fmt} or {found.other} (every date reads both ways)"
    elif found.decided is not None:
        text += f" ({found.fmt}: {_order(found.fmt)}, as row {found.decided[0]} {found.decided[1]} shows)"
    elif found.dotted:
        text += f" ({found.fmt}: day first, as dates written with dots are; no row reads otherwise)"
    else:
        text += f" ({found.fmt})"
    if found.ambiguous and found.other is not None:
        questions.append(f"dueDate.format: {found.fmt} ({_order(found.fmt)}) or {found.other}"
                         f" ({_order(found.other)})?")
    if columns[column].mostly_filled():
        text += f", required ({_filled(columns[column], plan.total)})"
    if found.misses:
        text += (f"; {found.misses} cell(s) fit no date format (row {found.missed[0][0]}:"
                 f" {found.missed[0][1]!r}): invalid rows")
    return _one_line(f"  {'dueDate':<18} {text}")
