"""Tests for bulksend.mapping: the YAML mapping, its checks, and row → payload + key."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bulksend.common.errors import MappingError
from bulksend.mapping import Mapped, Mapping, load_mapping, parse_mapping
from bulksend.reading.cells import INVISIBLE
from bulksend.reading.table import Row

REPO = Path(__file__).resolve().parent.parent
COLUMNS = ["Email", "First Name", "Last Name", "Company", "Brand", "Model", "Documents", "Due"]

PRODUCT_EXAMPLE = """\
campaignId: {value: xvr69EYLKXvTkfYuk}
contact:
  email: Email
  firstName: First Name
  lastName: Last Name
  company: {column: Company, required: false}
  data:
    brand: Brand
    model: {column: Model, default: Unknown}
items: {column: Documents, split: ";", required: false}
dueDate: {column: Due, format: "%d/%m/%Y", timezone: Europe/Paris}
sendMessage: true
key: [campaignId, contact.email]
"""


def cells_of(cells: dict[str, str]) -> dict[str, str]:
    """Every column of COLUMNS, empty unless given; keyword names use _ for spaces."""
    values = dict.fromkeys(COLUMNS, "")
    values.update({name.replace("_", " "): text for name, text in cells.items()})
    return values


def row(number: int = 2, extra: tuple[str, ...] = (), **cells: str) -> Row:
    return Row(number=number, values=cells_of(cells), extra=extra)


def elon(**cells: str) -> Row:
    base = {
        "Email": "Elon@Example.com",
        "First_Name": "Elon",
        "Last_Name": "Musk",
        "Company": "Tesla",
        "Brand": "Tesla",
        "Model": "Roadster",
        "Documents": "id1;id2",
        "Due": "31/03/2026",
    }
    base.update(cells)
    return Row(number=2, values=cells_of(base))


# Due dates are judged against this moment, not the real clock, so that the
# dates below (2026) never turn past (issue 17); test_due_dates.py uses the real one.
NOW = datetime(2026, 1, 1, tzinfo=UTC).timestamp()


def at_fixed_now(loaded: Mapping) -> Mapping:
    loaded.due_dates.clock = lambda: NOW
    return loaded


def mapping(text: str, columns: list[str] | None = None) -> Mapping:
    return at_fixed_now(parse_mapping(text, "m.yaml", COLUMNS if columns is None else columns))


def problems(text: str, columns: list[str] | None = None) -> list[str]:
    with pytest.raises(MappingError) as caught:
        mapping(text, columns)
    assert caught.value.path == "m.yaml"
    return caught.value.problems


def minimal(extra: str = "", contact: str = "  email: Email\n") -> str:
    return f"campaignId: {{value: c1}}\ncontact:\n{contact}{extra}"


def payload_of(text: str, target: Row) -> dict[str, Any]:
    mapped = mapping(text).apply(target)
    assert mapped.error is None, mapped.error
    assert mapped.payload is not None
    return mapped.payload


def error_of(text: str, target: Row) -> str:
    mapped = mapping(text).apply(target)
    assert mapped.payload is None and mapped.key is None
    assert mapped.error is not None
    return mapped.error


# --------------------------------------------------------------------------- #
# The PRODUCT.md example, end to end


def test_product_example_maps_a_full_row() -> None:
    mapped = mapping(PRODUCT_EXAMPLE).apply(elon())
    assert mapped == Mapped(
        row=2,
        payload={
            "campaignId": "xvr69EYLKXvTkfYuk",
            "contact": {
                "email": "Elon@Example.com",  # as the sheet writes it (issue 10, case 4)
                "firstName": "Elon",
                "lastName": "Musk",
                "company": "Tesla",
                "data": {"brand": "Tesla", "model": "Roadster"},
            },
            "items": ["id1", "id2"],
            "dueDate": "2026-03-31T23:59:00+02:00",  # 23:59 in the mapping's zone (issue 17)
            "sendMessage": True,
        },
        key="xvr69EYLKXvTkfYuk|elon@example.com",
        error=None,
    )
    assert mapped.payload is not None
    json.dumps(mapped.payload, allow_nan=False)  # the body is plain JSON


def test_product_example_optional_cells_are_left_out_and_defaults_filled() -> None:
    payload = payload_of(PRODUCT_EXAMPLE, elon(Company="  ", Model="", Documents=" ; ;"))
    assert "company" not in payload["contact"]
    assert payload["contact"]["data"]["model"] == "Unknown"
    assert "items" not in payload


def test_product_example_attributes() -> None:
    loaded = mapping(PRODUCT_EXAMPLE)
    assert loaded.path == "m.yaml"
    assert loaded.key_paths == ["campaignId", "contact.email"]
    assert loaded.columns_used == COLUMNS
    assert loaded.campaign_id == "xvr69EYLKXvTkfYuk"
    assert len(loaded.digest) == 64
    assert loaded.digest == mapping(PRODUCT_EXAMPLE).digest
    assert loaded.digest != mapping(PRODUCT_EXAMPLE + "# changed\n").digest


def test_example_file_at_repo_root_loads_and_matches_product_example() -> None:
    loaded = at_fixed_now(load_mapping(str(REPO / "mapping.example.yaml"), COLUMNS))
    assert loaded.apply(elon()) == Mapped(
        2,
        mapping(PRODUCT_EXAMPLE).apply(elon()).payload,
        "xvr69EYLKXvTkfYuk|elon@example.com",
        None,
    )


# --------------------------------------------------------------------------- #
# Spec forms


def test_bare_string_is_a_required_column() -> None:
    assert payload_of(minimal(), row(Email="a@b.co"))["contact"] == {"email": "a@b.co"}
    assert error_of(minimal(), row(Email="  ")) == 'column "Email" is empty (required)'


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("{value: hello}", "hello"),
        ("{value: 3}", 3),
        ("{value: [1, two]}", [1, "two"]),
        ("{value: {a: {b: true}}}", {"a": {"b": True}}),
        ("{value: 2026-03-01}", "2026-03-01"),
        ("true", True),
        ("2.5", 2.5),
        ("7", 7),
    ],
)
def test_constants_in_data(spec: str, expected: Any) -> None:
    payload = payload_of(minimal(f"data:\n  x: {spec}\n"), row(Email="a@b.co"))
    assert payload["data"] == {"x": expected}


def test_constant_lists_are_fresh_per_row() -> None:
    loaded = mapping(minimal("items: {value: [a, b]}\n"))
    first = loaded.apply(row(Email="a@b.co")).payload
    assert first is not None
    first["items"].append("c")
    second = loaded.apply(row(Email="a@b.co")).payload
    assert second is not None and second["items"] == ["a", "b"]


def test_template_joins_columns_strips_and_escapes_braces() -> None:
    text = minimal(
        'data:\n  name: {template: "{First Name} {Last Name}"}\n'
        '  literal: {template: "{{x}} {Brand}!"}\n'
        '  colon: {template: "{ Brand }"}\n'
    )
    payload = payload_of(text, row(Email="a@b.co", First_Name=" ", Last_Name=" Musk ", Brand="T"))
    assert payload["data"] == {"name": "Musk", "literal": "{x} T!", "colon": "T"}


def test_template_empty_is_an_empty_value() -> None:
    required = minimal('data:\n  name: {template: "{First Name} {Last Name}"}\n')
    error = error_of(required, row(Email="a@b.co"))
    assert error.startswith('template "{First Name} {Last Name}" is empty (required)')
    optional = minimal('data:\n  name: {template: "{First Name} {Last Name}", required: false}\n')
    assert "data" not in payload_of(optional, row(Email="a@b.co"))
    defaulted = minimal('data:\n  name: {template: "{First Name}", default: Customer}\n')
    assert payload_of(defaulted, row(Email="a@b.co"))["data"] == {"name": "Customer"}


def test_column_spec_options() -> None:
    text = minimal("data:\n  kept: {column: Brand, strip: false}\n  low: {column: Model, lower: true}\n")
    payload = payload_of(text, row(Email="a@b.co", Brand=" T ", Model="ROAD"))
    assert payload["data"] == {"kept": " T ", "low": "road"}


def test_contact_id_from_a_column_and_its_default_key() -> None:
    loaded = mapping("campaignId: {value: c1}\ncontact: Company\n")
    assert loaded.key_paths == ["campaignId", "contact"]
    mapped = loaded.apply(row(Company=" ct123 "))
    assert mapped.payload == {"campaignId": "c1", "contact": "ct123"}
    assert mapped.key == "c1|ct123"
    spec = mapping("campaignId: {value: c1}\ncontact: {column: Company}\n")
    assert spec.apply(row(Company="x")).payload == {"campaignId": "c1", "contact": "x"}


def test_campaign_from_a_column() -> None:
    loaded = mapping("campaignId: Brand\ncontact:\n  email: Email\n")
    assert loaded.campaign_id is None
    mapped = loaded.apply(row(Brand="camp", Email="A@B.co"))
    assert mapped.key == "camp|a@b.co"


def test_sample_and_other_top_level_fields() -> None:
    text = minimal(
        "sample: {itemId: Brand, url: {column: Model, required: false}}\n"
        "createdBy: {value: u1}\n"
        "assignedTo: {column: Company, type: email}\n"
        "sendCompletionMessage: {column: First Name}\n"
        "sendRejectionMessage: no\n"
        "sendReopenMessage: {value: 'yes'}\n"
        "esignTriggers: {column: Documents}\n"
        "esignDocs:\n  - {elementId: {value: e1}, url: Last Name}\n"
    )
    payload = payload_of(
        text,
        row(
            Email="a@b.co",
            Brand="it1",
            Model="https://x/y.pdf",
            Company="Boss@Co.com",
            First_Name="Y",
            Documents="s1, s2,,",
            Last_Name="https://d/e.pdf",
        ),
    )
    assert payload == {
        "campaignId": "c1",
        "contact": {"email": "a@b.co"},
        "sample": {"itemId": "it1", "url": "https://x/y.pdf"},
        "createdBy": "u1",
        "assignedTo": "Boss@Co.com",  # type email: as written (issue 10, case 4)
        "sendCompletionMessage": True,
        "sendRejectionMessage": False,
        "sendReopenMessage": True,
        "esignTriggers": ["s1", "s2"],
        "esignDocs": [{"elementId": "e1", "url": "https://d/e.pdf"}],
    }
    error = error_of(text, row(Email="a@b.co", Brand="it1", First_Name="y", Last_Name="u"))
    assert error == "sample.url is empty but sample needs both itemId and url"


def test_empty_nested_objects_are_omitted() -> None:
    text = minimal(
        "data:\n  a: {column: Brand, required: false}\n",
        contact="  email: Email\n  data:\n    b: {column: Model, required: false}\n",
    )
    assert payload_of(text, row(Email="a@b.co")) == {
        "campaignId": "c1",
        "contact": {"email": "a@b.co"},
    }


def test_merge_keys_and_anchors() -> None:
    text = (
        "campaignId: {value: c1}\n"
        "contact:\n  email: Email\n"
        "data:\n  a: &opt {column: Brand, required: false}\n"
        "  b: {<<: *opt, column: Model}\n"
    )
    assert payload_of(text, row(Email="a@b.co", Model="m"))["data"] == {"b": "m"}


# --------------------------------------------------------------------------- #
# Types


@pytest.mark.parametrize(
    ("cell", "expected"),
    [("42", 42), (" -7 ", -7), ("+3", 3), ("007", 7)],
)
def test_int(cell: str, expected: int) -> None:
    text = minimal("data:\n  n: {column: Brand, type: int}\n")
    assert payload_of(text, row(Email="a@b.co", Brand=cell))["data"] == {"n": expected}


@pytest.mark.parametrize("cell", ["4.5", "1e3", "x", "1 000"])
def test_int_rejects(cell: str) -> None:
    text = minimal("data:\n  n: {column: Brand, type: int}\n")
    error = error_of(text, row(Email="a@b.co", Brand=cell))
    assert error == f'column "Brand": "{cell}" is not a whole number'


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        *[("true", True), ("YES", True), ("y", True), ("1", True)],
        *[("False", False), ("no", False), ("N", False), ("0", False)],
    ],
)
def test_bool(cell: str, expected: bool) -> None:
    text = minimal("sendMessage: Brand\n")
    assert payload_of(text, row(Email="a@b.co", Brand=cell))["sendMessage"] is expected


def test_bool_rejects() -> None:
    error = error_of(minimal("sendMessage: Brand\n"), row(Email="a@b.co", Brand="maybe"))
    assert error.startswith('column "Brand": "maybe" is not true/false')


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        # Issue 17: a day ends at 23:59 in the zone; a time is read in it; an offset is kept.
        ("2026-03-01", "2026-03-01T23:59:00+01:00"),
        ("2026-03-01T10:30", "2026-03-01T10:30:00+01:00"),
        ("2026-03-01 10:30:00", "2026-03-01T10:30:00+01:00"),
        ("2026-03-01T23:30:00Z", "2026-03-01T23:30:00+00:00"),
    ],
)
def test_date_iso_input(cell: str, expected: str) -> None:
    text = minimal("dueDate: {column: Due, timezone: Europe/Paris}\n")
    assert payload_of(text, row(Email="a@b.co", Due=cell))["dueDate"] == expected


def test_a_spreadsheet_date_cell_passes_a_format_written_for_the_csv() -> None:
    # reading.py gives a real date cell as ISO text; the format is for the CSV export.
    # (No timezone: 23:59 in the team's zone, known at send time; shown without an offset till then.)
    text = minimal('dueDate: {column: Due, format: "%d/%m/%Y"}\n')
    day = "2026-03-31T23:59:00"
    assert payload_of(text, row(Email="a@b.co", Due="31/03/2026"))["dueDate"] == day
    assert payload_of(text, row(Email="a@b.co", Due="2026-03-31"))["dueDate"] == day
    assert payload_of(text, row(Email="a@b.co", Due="2026-03-31 00:00:00"))["dueDate"] == day
    # Anything else still has to match the format.
    assert error_of(text, row(Email="a@b.co", Due="03/31/2026")).endswith("not a date in format %d/%m/%Y")
    assert error_of(text, row(Email="a@b.co", Due="2026-02-31")).endswith("is not a valid date")


def test_date_without_format_hints_at_format() -> None:
    error = error_of(minimal("dueDate: Due\n"), row(Email="a@b.co", Due="31/03/2026"))
    assert error.startswith('column "Due": "31/03/2026" is not an ISO 8601 date')
    assert "set format" in error


def test_impossible_dates_are_row_errors() -> None:
    formatted = minimal('dueDate: {column: Due, format: "%d/%m/%Y"}\n')
    assert (
        error_of(formatted, row(Email="a@b.co", Due="31/02/2026"))
        == 'column "Due": "31/02/2026" is not a date in format %d/%m/%Y'
    )
    iso = minimal("dueDate: Due\n")
    assert error_of(iso, row(Email="a@b.co", Due="2026-02-31")) == (
        'column "Due": "2026-02-31" is not a valid date'
    )


@pytest.mark.parametrize(
    ("spec", "cell", "expected"),
    [
        (
            "{column: Due, type: datetime, timezone: Europe/Paris}",
            "2026-03-01T10:00",
            "2026-03-01T10:00:00+01:00",
        ),
        (
            "{column: Due, type: datetime, timezone: Europe/Paris}",
            "2026-07-01 10:00",
            "2026-07-01T10:00:00+02:00",
        ),
        ("{column: Due, type: datetime}", "2026-03-01T10:00:00Z", "2026-03-01T10:00:00+00:00"),
        ("{column: Due, type: datetime}", "2026-03-01T10:00+05:30", "2026-03-01T10:00:00+05:30"),
        (
            '{column: Due, type: datetime, format: "%d/%m/%Y %H:%M", timezone: America/New_York}',
            "01/03/2026 09:15",
            "2026-03-01T09:15:00-05:00",
        ),
    ],
)
def test_datetime(spec: str, cell: str, expected: str) -> None:
    text = minimal(f"dueDate: {spec}\n")
    assert payload_of(text, row(Email="a@b.co", Due=cell))["dueDate"] == expected


def test_datetime_without_offset_or_timezone_is_a_row_error() -> None:
    # In data; the dueDate uses the team's zone instead (issue 17, tests/test_due_dates.py).
    text = minimal("data:\n  when: {column: Due, type: datetime}\n")
    error = error_of(text, row(Email="a@b.co", Due="2026-03-01T10:00"))
    assert error == 'column "Due": "2026-03-01T10:00" has no UTC offset; set timezone in the mapping'


def test_list_split_trims_and_drops_empties() -> None:
    text = minimal('items: {column: Documents, split: " | "}\n')
    payload = payload_of(text, row(Email="a@b.co", Documents="a | b |  | c"))
    assert payload["items"] == ["a", "b", "c"]
    semicolons = minimal('items: {column: Documents, split: ";"}\n')
    assert error_of(semicolons, row(Email="a@b.co", Documents=" ; ;")) == (
        'column "Documents" is empty (required)'
    )


@pytest.mark.parametrize(
    "cell",
    [
        *["elon", "elon@", "@x.com", "elon@x", "a b@x.com", "Elon <e@x.com>"],
        *["a@b.com; c@d.com", "a@@x.com", "a@x..com", 'a"b@x.com'],
    ],
)
def test_email_rejects(cell: str) -> None:
    error = error_of(minimal(), row(Email=cell))
    assert error.startswith('column "Email": ') and error.endswith("is not an email address")


@pytest.mark.parametrize("cell", ["a@b.co", " ELON.Musk+x@Mail.Example.COM ", "é@exämple.fr"])
def test_email_is_stripped_and_sent_as_written_but_keyed_lower_cased(cell: str) -> None:
    # Issue 10, case 4: GET /contacts?email= is exact and case-sensitive
    # (collect-api.md §6), so the address goes out as written; the key still
    # ignores case, as before (keys of earlier runs are unchanged).
    mapped = mapping(minimal()).apply(row(Email=cell))
    assert mapped.payload is not None
    assert mapped.payload["contact"]["email"] == cell.strip()
    assert mapped.key == "c1|" + cell.strip().lower()


def test_email_type_in_data_and_string_type_on_contact_email() -> None:
    text = minimal(
        "data:\n  boss: {column: Brand, type: email}\n",
        contact="  email: {column: Email, type: string}\n",
    )
    payload = payload_of(text, row(Email="Not An Email", Brand="B@X.org"))
    assert payload["contact"]["email"] == "Not An Email"
    assert payload["data"]["boss"] == "B@X.org"  # as written (issue 10, case 4)


# --------------------------------------------------------------------------- #
# Defaults, required, omission


def test_default_is_converted_at_load() -> None:
    text = minimal(
        'dueDate: {column: Due, format: "%d/%m/%Y", default: "01/04/2026"}\n'
        "sendMessage: {column: Brand, default: no}\n"
        "items: {column: Documents, default: [x, y]}\n"
        "data:\n  n: {column: Model, type: int, default: 5}\n"
    )
    payload = payload_of(text, row(Email="a@b.co"))
    assert payload["dueDate"] == "2026-04-01T23:59:00"  # the team's zone is added at send time
    assert payload["sendMessage"] is False
    assert payload["items"] == ["x", "y"]
    assert payload["data"] == {"n": 5}


def test_optional_empty_fields_are_never_sent_as_empty_strings() -> None:
    text = minimal(
        "createdBy: {column: Brand, required: false}\n"
        "dueDate: {column: Due, required: false}\n"
        "sendMessage: {column: Model, required: false}\n",
        contact="  email: Email\n  firstName: {column: First Name, required: false}\n",
    )
    assert payload_of(text, row(Email="a@b.co")) == {
        "campaignId": "c1",
        "contact": {"email": "a@b.co"},
    }


def test_optional_campaign_still_required_by_the_api() -> None:
    text = "campaignId: {column: Brand, required: false}\ncontact:\n  email: Email\n"
    assert error_of(text, row(Email="a@b.co")) == "campaignId is empty (the API requires it)"


# --------------------------------------------------------------------------- #
# Keys


def test_custom_key() -> None:
    text = minimal("data:\n  ref: Brand\nkey: [data.ref]\n")
    loaded = mapping(text)
    assert loaded.key_paths == ["data.ref"]
    assert loaded.apply(row(Email="a@b.co", Brand="R1")).key == "R1"


def test_key_of_non_text_values_and_separator_escaping() -> None:
    text = minimal(
        "items: Documents\ndata:\n  ref: Brand\n  n: {column: Model, type: int}\n"
        "key: [items, data.ref, data.n]\n"
    )
    mapped = mapping(text).apply(row(Email="a@b.co", Documents="x,y", Brand="a|b\\", Model="3"))
    assert mapped.key == '["x","y"]|a\\|b\\\\|3'


def test_empty_key_part_is_a_row_error() -> None:
    text = minimal("data:\n  ref: {column: Brand, required: false}\nkey: [campaignId, data.ref]\n")
    assert error_of(text, row(Email="a@b.co")) == "key part data.ref is empty"


# --------------------------------------------------------------------------- #
# Load problems: all at once, each with its line and key path


def test_all_load_problems_are_reported_together_with_lines() -> None:
    text = """\
campaignId: {value: c1}
contact:
  email: E-mail
  firstname: First Name
  lastName: {colum: Last Name}
  data: [a, b]
items: {column: Documents, split: ";", type: lst}
dueDate: {column: Due, format: "%d/%m/%Y", timezone: Europe/Pariss}
sendMesage: true
sendMessage: {column: Brand, format: "%d", split: ","}
data:
  x: {template: "{First Nam} {{lit}}"}
  y: {column: Model, type: int, default: abc}
  z: {column: Model, type: bool, shout: true}
  w: {column: Model, value: 3}
  v: {column: Model, required: maybe}
  u: {column: Model, type: int, format: "%d"}
  t: {column: Model, type: datetime, format: "%d/%m/%Y %H:%M"}
  s: {column: Model, type: date, format: "%Q"}
  r:
  q: [a]
  p: {template: "{Brand"}
createdBy: {column: Brand, type: int}
key: [campaignId, contact.mail]
"""
    assert problems(text) == [
        'line 3, contact.email: column "E-mail" is not in the file (closest: "Email")',
        'line 4, contact.firstname: not a contact field (closest: "firstName");'
        " contact fields are email, firstName, lastName, company, data",
        'line 5, contact.lastName.colum: unknown option (closest: "column");'
        " a spec takes column, value or template plus"
        " default, required, type, split, format, timezone, lower, strip",
        "line 6, contact.data: expected a mapping of data fields, found a list",
        'line 7, items.type: unknown type "lst" (closest: "list");'
        " types are string, int, bool, date, datetime, list, email",
        'line 8, dueDate.timezone: unknown time zone "Europe/Pariss" (closest: "Europe/Paris")'
        " (an IANA name such as Europe/Paris)",
        'line 9, sendMesage: unknown key (closest: "sendMessage"); the keys are the fields of'
        " POST /request (campaignId, contact, items, data, sample, dueDate, createdBy,"
        " assignedTo, send…Message, esignDocs, esignTriggers) and key",
        "line 10, sendMessage.split: applies to type list, not bool",
        "line 10, sendMessage.format: applies to type date or datetime, not bool",
        'line 12, data.x.template: column "First Nam" is not in the file (closest: "First Name")',
        'line 13, data.y.default: "abc" is not a whole number',
        "line 14, data.z.shout: unknown option; a spec takes column, value or template plus"
        " default, required, type, split, format, timezone, lower, strip",
        "line 15, data.w: has both column and value: use only one",
        'line 16, data.v.required: must be true or false, found "maybe"',
        "line 17, data.u.format: applies to type date or datetime, not int",
        "line 18, data.t.format: has no %z and no timezone is set, so the times would have"
        " no UTC offset; add timezone (e.g. timezone: Europe/Paris)",
        "line 19, data.s.format: is not a strptime format: 'Q' is a bad directive in format '%Q'",
        "line 20, data.r: has no value: name a column, or use {value: …}",
        "line 21, data.q: expected a column name or a spec, found a list"
        " (a constant list is written {value: [a, b]})",
        'line 22, data.p.template: has a "{" that is never closed (write "{{" for a brace)',
        "line 23, createdBy.type: type int does not fit this field (it takes string, date, datetime, email)",
        'line 24, key: "contact.mail" is not a field of this mapping (closest: "contact.email")',
    ]


def test_error_message_lists_every_problem() -> None:
    with pytest.raises(MappingError) as caught:
        mapping("campaignId: {value: c1}\ncontact:\n  email: Mail\nfoo: 1\n")
    assert str(caught.value).startswith("m.yaml: 2 problems: line 3, contact.email: column")


def test_closest_column_ignores_case() -> None:
    assert problems(minimal(contact="  email: EMAIL ADDRESS\n"), ["Email address"]) == [
        'line 3, contact.email: column "EMAIL ADDRESS" is not in the file (closest: "Email address")'
    ]
    assert problems(minimal(contact="  email: Zzz\n"), ["Email"]) == [
        'line 3, contact.email: column "Zzz" is not in the file'
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "line 1: the file is empty; a mapping needs at least campaignId and contact"),
        ("# only a comment\n", "line 1: the file is empty; a mapping needs at least campaignId and contact"),
        ("- a\n- b\n", "line 1: expected a mapping of request fields (campaignId, contact, …), found a list"),
        (
            "just text\n",
            'line 1: expected a mapping of request fields (campaignId, contact, …), found "just text"',
        ),
        (
            "campaignId: x\ncontact: [\n",
            "line 3: YAML syntax error: while parsing a flow node"
            " expected the node content, but found '<stream end>'",
        ),
        (
            "campaignId: x\n---\ncontact: y\n",
            "line 2: YAML syntax error: expected a single document in the stream but found another document",
        ),
    ],
)
def test_whole_file_problems(text: str, expected: str) -> None:
    assert problems(text) == [expected]


def test_missing_required_keys_and_repeated_keys() -> None:
    assert problems("createdBy: {value: u}\ncreatedBy: {value: v}\n") == [
        "line 2, createdBy: appears twice",
        "line 1, campaignId: is missing (POST /request requires it)",
        "line 1, contact: is missing (POST /request requires it)",
    ]


def test_shape_problems() -> None:
    text = (
        "campaignId: [a]\ncontact: [b]\ndata: Brand\nsample: {itemId: Brand}\nesignDocs: Brand\nkey: {a: b}\n"
    )
    assert problems(text) == [
        "line 1, campaignId: expected a column name or a spec, found a list"
        " (a constant list is written {value: [a, b]})",
        "line 2, contact: expected a mapping of contact fields (email, firstName, …)"
        " or a column holding a contact id, found a list",
        'line 3, data: expected a mapping of data fields, found "Brand"',
        "line 4, sample: needs url as well",
        "line 5, esignDocs: expected a list of documents (each a mapping such as"
        ' {elementId: …, url: …}) or {value: [...]}, found "Brand"',
        "line 6, key: expected a list of payload paths, found a mapping",
    ]


def test_inline_contact_needs_email() -> None:
    assert problems(minimal(contact="  firstName: First Name\n")) == [
        "line 3, contact: an inline contact needs email"
    ]


def test_constant_contact_needs_email() -> None:
    # The inline form's rule holds for a constant contact too (bad-input corpus).
    assert problems("campaignId: {value: c1}\ncontact: {value: {firstName: Ann}}\n") == [
        "line 2, contact: an inline contact needs email"
    ]
    assert problems("campaignId: {value: c1}\ncontact: {value: {}}\n") == [
        "line 2, contact: an inline contact needs email"
    ]
    # A constant contact id (text) is not an inline contact and needs no email.
    loaded = mapping("campaignId: {value: c1}\ncontact: {value: ct_123}\n")
    assert loaded.key_paths == ["campaignId", "contact"]
    assert payload_of("campaignId: {value: c1}\ncontact: {value: ct_123}\n", row()) == {
        "campaignId": "c1",
        "contact": "ct_123",
    }


def test_constant_contact_fields_are_checked_as_inline_ones() -> None:
    assert problems("campaignId: {value: c1}\ncontact: {value: {email: a@b.co, phone: '1'}}\n") == [
        "line 2, contact.phone: not a contact field;"
        " contact fields are email, firstName, lastName, company, data"
    ]
    block = (
        "campaignId: {value: c1}\ncontact:\n  value:\n    email: a@b.co\n    firstname: Ann\n    data: 3\n"
    )
    assert problems(block) == [
        'line 5, contact.firstname: not a contact field (closest: "firstName");'
        " contact fields are email, firstName, lastName, company, data",
        "line 6, contact.data: expected a mapping of data fields, found 3",
    ]
    assert problems("campaignId: {value: c1}\ncontact: {value: {email: nope}}\n") == [
        'line 2, contact.email: "nope" is not an email address'
    ]
    text = "campaignId: {value: c1}\ncontact: {value: {email: ' A@B.co ', firstName: 7, data: {x: 1}}}\n"
    assert mapping(text).key_paths == ["campaignId", "contact.email"]
    assert payload_of(text, row())["contact"] == {"email": "a@b.co", "firstName": "7", "data": {"x": 1}}


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        ("{value: 3}", 'line 2, sample: expected a mapping {itemId: …, url: …}, found "3"'),
        ("{value: [a, b]}", "line 2, sample: expected a mapping {itemId: …, url: …}, found a list"),
        ("{value: {itemId: i1}}", "line 2, sample: needs url as well"),
        (
            "{value: {itemId: i1, url: ''}}",
            "line 2, sample.url: is empty: give a value, or leave the field out",
        ),
        (
            "{value: {itemId: i1, url: u, x: 1}}",
            "line 2, sample.x: not a sample field; sample fields are itemId, url",
        ),
        ("{value: {itemId: [i1], url: u}}", 'line 2, sample.itemId: ["i1"] is not text'),
    ],
)
def test_constant_sample_must_be_itemid_and_url(sample: str, expected: str) -> None:
    text = f"campaignId: {{value: c1}}\nsample: {sample}\ncontact:\n  email: Email\n"
    assert problems(text) == [expected]


def test_constant_sample() -> None:
    text = minimal("sample: {value: {itemId: 7, url: 'https://x/y.pdf'}}\n")
    assert payload_of(text, row(Email="a@b.co"))["sample"] == {"itemId": "7", "url": "https://x/y.pdf"}


def test_constant_type_problems() -> None:
    text = minimal(
        "sendMessage: {value: maybe}\n"
        "dueDate: {value: 2026-02-31x}\n"
        "items: {value: {a: 1}}\n"
        "createdBy: {value: [x]}\n",
        contact="  email: {value: not-an-email}\n",
    )
    assert problems(text) == [
        'line 3, contact.email: "not-an-email" is not an email address',
        'line 4, sendMessage: "maybe" is not true/false (or yes/no, y/n, 1/0)',
        'line 5, dueDate: "2026-02-31x" is not an ISO 8601 date (YYYY-MM-DD);'
        ' set format in the mapping, e.g. format: "%d/%m/%Y"',
        'line 6, items: {"a": 1} is not a list of text',
        'line 7, createdBy: ["x"] is not text',
    ]


def test_recursive_and_exploding_aliases_are_refused() -> None:
    assert problems("campaignId: &a {value: [*a]}\ncontact:\n  email: Email\n") == [
        "line 1, campaignId: contains itself (a recursive alias)"
    ]
    levels = "".join(f"      l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 8))
    text = minimal("data:\n  x:\n    value:\n      l0: &l0 lol\n" + levels)
    assert problems(text) == ["line 7, data.x: is too large (more than 100,000 values)"]


def test_key_problems() -> None:
    assert problems(minimal("key: [campaignId, campaignId, 3]\n")) == [
        'line 4, key: "campaignId" is listed twice',
        'line 4, key: expected a payload path, found "3"',
    ]
    assert problems(minimal("key: []\n")) == [
        "line 4, key: expected a list of payload paths, found an empty list"
    ]
    assert mapping(minimal("key: contact.email\n")).key_paths == ["contact.email"]


# --------------------------------------------------------------------------- #
# load_mapping: the file itself


def test_load_mapping_file_problems(tmp_path: Path) -> None:
    with pytest.raises(MappingError) as caught:
        load_mapping(str(tmp_path / "nope.yaml"), COLUMNS)
    assert caught.value.problems == ["file not found"]
    with pytest.raises(MappingError) as caught:
        load_mapping(str(tmp_path), COLUMNS)
    assert caught.value.problems == ["is a directory, not a mapping file"]
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"campaignId: {value: c}\ncontact:\n  email: \xe9mail\n")
    with pytest.raises(MappingError) as caught:
        load_mapping(str(latin), COLUMNS)
    assert caught.value.problems == ["line 3: not UTF-8 text (byte 0xe9); save the file as UTF-8"]
    assert str(caught.value).startswith(f"{latin}: line 3: not UTF-8")


def test_load_mapping_reads_utf8_with_bom(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes("\ufeff".encode() + minimal().encode())
    assert load_mapping(str(path), COLUMNS).apply(row(Email="a@b.co")).key == "c1|a@b.co"


# --------------------------------------------------------------------------- #
# Row errors


def test_extra_cells_make_the_row_invalid() -> None:
    loaded = mapping(PRODUCT_EXAMPLE)
    assert loaded.apply(row(extra=("x", "y"))).error == ('row has 2 more cells than the header ("x", "y")')
    assert loaded.apply(row(extra=("z",))).error == 'row has 1 more cell than the header ("z")'


def test_row_errors_quote_values_on_one_line() -> None:
    error = error_of(minimal(), row(Email="a\nb\u2028c"))
    assert error == 'column "Email": "a\\nb\\u2028c" is not an email address'
    long = error_of(minimal(), row(Email="x" * 500))
    assert len(long) < 140


# --------------------------------------------------------------------------- #
# Property: any text row maps cleanly or is rejected cleanly

PROPERTY_MAPPING = PRODUCT_EXAMPLE.replace(
    "key: [campaignId, contact.email]\n",
    "sendReopenMessage: {column: Brand, required: false}\n"
    "esignTriggers: {column: Model, required: false}\n"
    'createdBy: {template: "{First Name}-{{x}}-{Last Name}", required: false}\n'
    "data:\n"
    "  n: {column: Company, type: int, required: false}\n"
    "  when: {column: Due, type: datetime, timezone: America/Sao_Paulo, required: false}\n"
    "  day: {column: Documents, type: date, timezone: Asia/Tokyo, required: false}\n"
    "  who: {column: Last Name, type: email, required: false}\n",
)
cell = st.one_of(
    st.text(),
    st.sampled_from(
        [
            "",
            " ",
            "1",
            "yes",
            "a@b.co",
            "2026-01-01",
            "9999-12-31T23:59:59-14:00",
            "0001-01-01T00:00:00+14:00",
            "31/02/2026",
            "01/01/0001",
        ]
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    cells=st.fixed_dictionaries({name: cell for name in COLUMNS}),
    extra=st.lists(st.text(min_size=1), max_size=2).map(tuple),
)
def test_any_text_row_maps_or_is_rejected_cleanly(cells: dict[str, str], extra: tuple[str, ...]) -> None:
    loaded = mapping(PROPERTY_MAPPING)
    mapped = loaded.apply(Row(number=5, values=cells, extra=extra))
    assert mapped.row == 5
    if mapped.error is None:
        assert mapped.payload is not None and mapped.key
        json.dumps(mapped.payload, allow_nan=False)
        assert "" not in _leaves(mapped.payload)
        email = mapped.payload["contact"]["email"]
        assert email == email.strip() and INVISIBLE.search(email) is None
        assert mapped.key.endswith("|" + email.lower())
    else:
        assert mapped.payload is None and mapped.key is None
        assert mapped.error and len(mapped.error.splitlines()) == 1
        assert "\n" not in mapped.error and "\r" not in mapped.error


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


@pytest.mark.parametrize(("text", "problem"), [
    ("campaignId: {value: !!int x}\ncontact: {email: Email}\n",
     "line 1, campaignId: cannot read value 'x' as int"),
    ("campaignId: {value: c}\ncontact: {email: Email}\nsendMessage: !!bool maybe\n",
     "line 3, sendMessage: cannot read value 'maybe' as bool"),
    ("campaignId: {value: c}\ncontact: {email: Email, firstName: !!float 1e}\n",
     "line 2, contact.firstName: cannot read value '1e' as float"),
    # Other constructors raise other things: AttributeError from !!timestamp.
    ("campaignId: !!timestamp nope\ncontact: {email: Email}\n",
     "line 1, campaignId: cannot read value 'nope' as timestamp, as its tag !!timestamp asks"),
    ("campaignId: {value: c}\ncontact: {email: Email}\ndueDate: {value: !!timestamp 2020-02-30}\n",
     "line 3, dueDate: cannot read value '2020-02-30' as timestamp"),
])
def test_an_explicit_tag_a_value_does_not_fit_is_a_mapping_problem(text: str, problem: str) -> None:
    # PyYAML raises ValueError/KeyError/AttributeError there, not YAMLError: it was a traceback.
    with pytest.raises(MappingError) as caught:
        parse_mapping(text, "m.yaml", ["Email"])
    assert problem in str(caught.value)
