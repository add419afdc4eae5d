"""The text ``bulksend init`` writes (a commented YAML mapping) and what it tells
the person afterwards; the decisions are tasks/scaffold.py's. Values go through
PyYAML's emitter, so a header such as ``yes``, ``a, b`` or ``#`` stays a
column name."""

from __future__ import annotations

import shlex
from typing import Any, Final

import yaml

from bulksend.common.errors import UsageError
from bulksend.mapping.items import PARTS, Catalogue
from bulksend.reading.table import Table
from bulksend.tasks.scaffold import PLACEHOLDER, Column, InitConfig, Plan, today

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
    return f"{line:<{_COMMENT_AT}} # {comment}" if comment else line


def _spec(column: str, **options: Any) -> dict[str, Any]:
    return {"column": column, **options, "required": False}


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
        raise UsageError(
            f"{config.contacts}: no column holds email addresses (by its header or its cells); "
            f"columns: {', '.join(repr(c) for c in columns) or 'none'}",
            hint="a contact needs an email: check --header-row and --sheet, or write the mapping "
                 "from mapping.example.yaml",
        )
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
        *_due(plan),
        "# Send the campaign's planned messages (the request email and its reminders); false: none.",
        _entry("sendMessage", True),
        "",
        "# What identifies a row: its campaign and the contact's email (compared ignoring case).",
        "# Rerunning the same command, or a newer export, never sends a second request to a key",
        "# already sent; a row repeating a key of the same file is `duplicate` and is not sent.",
        _entry("key", ["campaignId", "contact.email"]),
    ]
    return "\n".join(parts) + "\n"


def _campaign(config: InitConfig, catalogue: Catalogue | None) -> list[str]:
    if config.campaign is None:
        return ["# The campaign (a template in Collect) sent to every row. Replace " + PLACEHOLDER,
                "# with its id: 17 letters and digits, in the app's address bar when the campaign is",
                "# open; or run `bulksend init … --campaign ID --force` with COLLECT_API_KEY set",
                "# to list its documents and forms here.",
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
        why = f'column "{column}", by {plan.why.get(column, "its header")}'
        if name == "email":
            lines.append(_entry(name, column, 2, why + "; a row without one is invalid"))
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


def _data_entry(key: str, column: str, plan: Plan, profile: Column) -> str:
    found = plan.dates.get(column)
    if found is None:
        return _entry(key, _spec(column), 4, f'column "{column}"' + _empties(profile))
    note = f"dates like {found.example}, sent as YYYY-MM-DD"
    if found.ambiguous:
        note += "; day first is a guess: check"
    return _entry(key, _spec(column, type="date", format=found.fmt), 4, note)


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
    lines = [f'# Which of the campaign\'s elements to ask for: column "{column}" holds their names or',
             f"# ids, separated by {shown}. A name is sent as its element's id, checked before",
             "# anything is sent. An empty cell sends the whole campaign."]
    unknown = _unknown_items(columns[column], plan.split, catalogue)
    if unknown:
        lines.append(f"# Careful: not elements of the campaign: {', '.join(repr(u) for u in unknown)}.")
    return [*lines, _entry("items", _spec(column, split=plan.split))]


def _unknown_items(profile: Column, split: str, catalogue: Catalogue | None) -> list[str]:
    if catalogue is None:
        return []
    values = {v.strip() for cell in profile.samples for v in cell.split(split) if v.strip()}
    return sorted(v for v in values if catalogue.problem(v) is not None)[:5]


def _due(plan: Plan) -> list[str]:
    column = plan.roles.get("dueDate")
    if column is None:
        return []
    found = plan.dates[column]
    what = "a date-time" if found.has_time else "a date is the end of that day, 23:59,"
    lines = [f'# The due date: column "{column}", written like {found.example} (format {found.fmt}).',
             f"# {what[0].upper() + what[1:]} in the team's time zone (GET /team, read when sending);",
             "# add `timezone: Europe/Paris` (say) to choose one. A date already past makes the row",
             "# invalid (add `past: allow` to send it anyway)."]
    if found.ambiguous:
        lines.append("# Every date here reads as day/month and as month/day: day first is a guess;"
                     " check it with validate --preview.")
    return [*lines, _entry("dueDate", _spec(column, format=found.fmt)), ""]


def report(config: InitConfig, table: Table, total: int, columns: dict[str, Column], plan: Plan,
           catalogue: Catalogue | None) -> list[str]:
    """What init tells the person: each field and its column, then what to run next."""
    lines = [f"wrote {config.output} for {config.contacts} ({total} rows)"]

    def add(field: str, text: str) -> None:
        lines.append(f"  {field:<18} {text}")

    for name in _CONTACT_FIELDS:
        column = plan.roles.get(name)
        add(f"contact.{name}", f'<- "{column}" ({plan.why.get(column, "its header")})' if column
            else "(no column found)")
    if plan.data:
        add("contact.data", "<- " + ", ".join(f'"{c}" as {k}' for k, c in plan.data.items()))
    if "items" in plan.roles:
        add("items", f'<- "{plan.roles["items"]}", split on {plan.split!r}')
    if "dueDate" in plan.roles:
        found = plan.dates[plan.roles["dueDate"]]
        add("dueDate", f'<- "{plan.roles["dueDate"]}", dates like {found.example} ({found.fmt})')
    if config.campaign is None:
        add("campaignId", f"{PLACEHOLDER}: put your campaign's id in {config.output} "
                          "(or rerun with --campaign ID --force)")
    elif catalogue is None:
        add("campaignId", f"{config.campaign} (its elements are not listed: no API key)")
    else:
        add("campaignId", f'{config.campaign} "{catalogue.name}": its {len(catalogue.elements)} '
                          "elements are listed in the mapping")
    return [*lines, "next:", *(f"  {command}" for command in _commands(config))]
