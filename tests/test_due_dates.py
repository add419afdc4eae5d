"""Due dates as Collect keeps them (issue 17): the end of the day, in the right zone.

Every test runs the real CLI against the real sandbox and asserts the dueDate the
server received: its text (an ISO 8601 instant with an offset) and the instant it
names. Dates are computed from today, so no test ages: the daylight-saving days
are next year's last Sundays of March and October, always ahead.
"""

from __future__ import annotations

import calendar
import csv
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import KEY, Result, read_results, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

from bulksend.mapping import END_OF_DAY, load_mapping, parse_mapping
from bulksend.reading.sources import open_table
from bulksend.reading.table import Row
from bulksend.sandbox import DEMO_CAMPAIGN_ID, Sandbox, SandboxConfig, running_sandbox
from bulksend.tasks.demo import SAMPLES_TODAY, find_samples, write_demo_contacts

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")
TODAY = date.today()
SOON = TODAY + timedelta(days=10)
PAST = TODAY - timedelta(days=2)  # before now in every zone on Earth
NEXT_YEAR = TODAY.year + 1


def last_sunday(year: int, month: int) -> date:
    last = date(year, month, calendar.monthrange(year, month)[1])
    return last - timedelta(days=(last.weekday() - 6) % 7)


# The EU changes clocks at 01:00 UTC on the last Sundays of March and October:
# Paris skips 02:00-03:00 on the first and lives 02:00-03:00 twice on the second.
SPRING = last_sunday(NEXT_YEAR, 3)
AUTUMN = last_sunday(NEXT_YEAR, 10)


def mapping_text(due: str) -> str:
    return (f"campaignId: {{value: {DEMO_CAMPAIGN_ID}}}\n"
            "contact:\n  email: Email\n  firstName: First Name\n"
            f"dueDate: {due}\n")


def write_csv(path: Path, dues: list[str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Email", "First Name", "Due"])
        for i, due in enumerate(dues):
            writer.writerow([f"person{i}@example.com", f"Person{i}", due])


def dmy(day: date) -> str:
    return day.strftime("%d/%m/%Y")


def end_of(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, END_OF_DAY, tzinfo=zone)


@pytest.fixture
def team_tz() -> str:
    return "America/New_York"  # not the sandbox's default: proves the zone is read from GET /team


@pytest.fixture
def sandbox(team_tz: str) -> Iterator[Sandbox]:
    with running_sandbox(SandboxConfig(api_key=KEY, seed=1, team_tz=team_tz)) as sb:
        yield sb


def send(tmp_path: Path, sandbox: Sandbox, due_spec: str, dues: list[str], *extra: str) -> Result:
    (tmp_path / "mapping.yaml").write_text(mapping_text(due_spec), encoding="utf-8")
    write_csv(tmp_path / "contacts.csv", dues)
    return run_cli("send", "contacts.csv", "-m", "mapping.yaml", "--results", "results.csv",
                   "--api-url", sandbox.url, "--rate", "none", "--no-progress", *extra, cwd=tmp_path)


def received(sandbox: Sandbox) -> dict[str, str]:
    """email -> the dueDate text of the body the sandbox received."""
    return {c["email"]: c["received"]["dueDate"] for c in sandbox.created}


def assert_instants(got: dict[str, str], expected: dict[str, datetime]) -> None:
    """Each dueDate received is the expected instant, written with the expected offset."""
    assert got == {email: moment.isoformat() for email, moment in expected.items()}
    for email, text in got.items():
        sent = datetime.fromisoformat(text)
        assert sent.utcoffset() is not None, text  # an instant, never a floating wall time
        assert sent == expected[email]


# --------------------------------------------------------------------------- #
# A due day: 23:59 that day, in the mapping's zone or else the team's


def test_a_date_ends_at_2359_in_the_mappings_timezone(tmp_path: Path, sandbox: Sandbox) -> None:
    r = send(tmp_path, sandbox, '{column: Due, format: "%d/%m/%Y", timezone: Asia/Tokyo}', [dmy(SOON)])

    assert r.code == 0, r.stdout + r.stderr
    assert_instants(received(sandbox), {"person0@example.com": end_of(SOON, TOKYO)})
    assert "dueDate: a due date with no time is sent as 23:59 that day in Asia/Tokyo" in r.stderr


@pytest.mark.parametrize("batch", [(), ("--batch",)])
def test_a_date_with_no_mapping_zone_ends_in_the_teams_zone(tmp_path: Path, sandbox: Sandbox,
                                                            batch: tuple[str, ...]) -> None:
    r = send(tmp_path, sandbox, "Due", [SOON.isoformat(), SOON.isoformat()], *batch)

    assert r.code == 0, r.stdout + r.stderr
    assert_instants(received(sandbox), {"person0@example.com": end_of(SOON, NEW_YORK),
                                        "person1@example.com": end_of(SOON, NEW_YORK)})
    assert {c["endpoint"] for c in sandbox.created} == {"/requests" if batch else "/request"}
    assert "in America/New_York (the team's time zone, from GET /team)" in r.stderr


@pytest.mark.parametrize("team_tz", ["Europe/Paris"])
def test_the_sandbox_default_team_zone_is_paris(tmp_path: Path, sandbox: Sandbox) -> None:
    r = send(tmp_path, sandbox, '{column: Due, format: "%d/%m/%Y"}', [dmy(SOON)])

    assert r.code == 0, r.stdout + r.stderr
    assert SandboxConfig().team_tz == "Europe/Paris"
    assert_instants(received(sandbox), {"person0@example.com": end_of(SOON, PARIS)})


def test_validate_and_dry_run_say_which_zone_they_would_use(tmp_path: Path, sandbox: Sandbox) -> None:
    (tmp_path / "mapping.yaml").write_text(mapping_text("Due"), encoding="utf-8")
    write_csv(tmp_path / "contacts.csv", [SOON.isoformat()])

    r = run_cli("validate", "contacts.csv", "-m", "mapping.yaml", cwd=tmp_path, key=None)
    assert r.code == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[-1] == (
        "mapping.yaml: dueDate: a due date with no time is sent as 23:59 that day in the team's time"
        " zone, read from GET /team when sending (no timezone in the mapping; until then it is shown"
        " without an offset)")

    r = run_cli("send", "contacts.csv", "-m", "mapping.yaml", "--dry-run", "--no-progress",
                "--api-url", sandbox.url, cwd=tmp_path, key=None)
    assert r.code == 0, r.stdout + r.stderr
    assert "read from GET /team when sending" in r.stderr
    _header, rows = read_results(tmp_path / "contacts-dry-run.csv")
    assert json.loads(rows[0]["payload"])["dueDate"] == f"{SOON.isoformat()}T23:59:00"  # no offset yet
    assert sandbox.stats["gets"] == 0 and sandbox.created == []  # no network in either

    tokyo = mapping_text("{column: Due, timezone: Asia/Tokyo}")
    (tmp_path / "mapping.yaml").write_text(tokyo, encoding="utf-8")
    r = run_cli("validate", "contacts.csv", "-m", "mapping.yaml", cwd=tmp_path, key=None)
    assert r.stdout.splitlines()[-1] == (
        "mapping.yaml: dueDate: a due date with no time is sent as 23:59 that day in Asia/Tokyo"
        " (the mapping's timezone)")


# --------------------------------------------------------------------------- #
# Date-times: an offset is kept; none means the mapping's zone or the team's


def test_date_times_with_and_without_an_offset(tmp_path: Path, sandbox: Sandbox) -> None:
    day = SOON.isoformat()
    r = send(tmp_path, sandbox, "Due", [f"{day}T10:00:00+05:30", f"{day}T10:00Z", f"{day} 17:30",
                                        f"{day} 00:00:00"])

    assert r.code == 0, r.stdout + r.stderr
    wall = datetime.combine(SOON, datetime.min.time())
    assert_instants(received(sandbox), {
        "person0@example.com": datetime.fromisoformat(f"{day}T10:00:00+05:30"),
        "person1@example.com": wall.replace(hour=10, tzinfo=UTC),
        "person2@example.com": wall.replace(hour=17, minute=30, tzinfo=NEW_YORK),  # the team's zone
        # A spreadsheet's date cell exported as text: still a due day.
        "person3@example.com": end_of(SOON, NEW_YORK),
    })


def test_a_datetime_type_takes_midnight_literally_in_the_mappings_zone(tmp_path: Path,
                                                                         sandbox: Sandbox) -> None:
    r = send(tmp_path, sandbox, "{column: Due, type: datetime, timezone: Asia/Tokyo}",
             [f"{SOON.isoformat()} 00:00:00"])

    assert r.code == 0, r.stdout + r.stderr
    assert_instants(received(sandbox), {
        "person0@example.com": datetime.combine(SOON, datetime.min.time(), tzinfo=TOKYO)})


# --------------------------------------------------------------------------- #
# Daylight saving: the offset of the day itself; gaps and overlaps as a calendar reads them


@pytest.mark.parametrize(("team_tz", "spec"), [
    ("America/New_York", '{column: Due, timezone: Europe/Paris}'),  # the mapping's zone
    ("Europe/Paris", "Due"),  # the team's zone
])
def test_daylight_saving_change_days(tmp_path: Path, sandbox: Sandbox, spec: str) -> None:
    r = send(tmp_path, sandbox, spec, [
        SPRING.isoformat(),
        AUTUMN.isoformat(),
        f"{SPRING.isoformat()} 02:30",  # never on a Paris clock: the hour is skipped
        f"{AUTUMN.isoformat()} 02:30",  # twice on a Paris clock
    ])

    assert r.code == 0, r.stdout + r.stderr
    got = received(sandbox)
    assert got == {
        "person0@example.com": f"{SPRING.isoformat()}T23:59:00+02:00",  # summer time from that night
        "person1@example.com": f"{AUTUMN.isoformat()}T23:59:00+01:00",  # winter time from that night
        # RFC 5545 §3.3.5: a skipped time is read with the offset from before the
        # gap: 02:30+01:00, i.e. 03:30 summer time, the later of the two readings.
        "person2@example.com": f"{SPRING.isoformat()}T03:30:00+02:00",
        # A repeated time is its first occurrence, still summer time.
        "person3@example.com": f"{AUTUMN.isoformat()}T02:30:00+02:00",
    }
    utc = {email: datetime.fromisoformat(text).astimezone(UTC).strftime("%H:%M")
           for email, text in got.items()}
    assert utc == {"person0@example.com": "21:59", "person1@example.com": "22:59",
                   "person2@example.com": "01:30", "person3@example.com": "00:30"}


# --------------------------------------------------------------------------- #
# The past: invalid, nothing sent, unless `past: allow`


def test_a_past_due_date_is_invalid_and_nothing_is_sent(tmp_path: Path, sandbox: Sandbox) -> None:
    r = send(tmp_path, sandbox, '{column: Due, format: "%d/%m/%Y", timezone: Europe/Paris}',
             [dmy(PAST)])

    assert r.code == 1, r.stdout + r.stderr
    assert sandbox.created == []
    assert sum(sandbox.stats["post_request"].values()) == 0
    _header, rows = read_results(tmp_path / "results.csv")
    assert rows[0]["status"] == "invalid"
    assert rows[0]["error"] == (
        f'column "Due": due date "{dmy(PAST)}" is in the past'
        f" ({end_of(PAST, PARIS).isoformat()}); correct the cell, or add past: allow to dueDate"
        " in the mapping")

    r = run_cli("validate", "contacts.csv", "-m", "mapping.yaml", cwd=tmp_path, key=None)
    assert r.code == 1
    assert f'row 2: invalid: column "Due": due date "{dmy(PAST)}" is in the past' in r.stdout


def test_past_allow_sends_a_past_due_date(tmp_path: Path, sandbox: Sandbox) -> None:
    r = send(tmp_path, sandbox, "{column: Due, past: allow}", [PAST.isoformat(), SOON.isoformat()])

    assert r.code == 0, r.stdout + r.stderr
    assert_instants(received(sandbox), {"person0@example.com": end_of(PAST, NEW_YORK),
                                        "person1@example.com": end_of(SOON, NEW_YORK)})


def test_a_row_sent_earlier_stays_sent_once_its_due_date_is_past(tmp_path: Path, sandbox: Sandbox) -> None:
    """A rerun after a due date has passed must not turn a sent row into an
    invalid one (and lose its request id in the results); it sends nothing."""
    first = send(tmp_path, sandbox, "{column: Due, past: allow}", [PAST.isoformat(), SOON.isoformat()])
    assert first.code == 0, first.stdout + first.stderr
    _header, before = read_results(tmp_path / "results.csv")

    # The same rows, now with a mapping that refuses the past, plus a new past row.
    (tmp_path / "mapping.yaml").write_text(mapping_text("Due"), encoding="utf-8")
    write_csv(tmp_path / "contacts.csv", [PAST.isoformat(), SOON.isoformat(), PAST.isoformat()])
    again = run_cli("send", "contacts.csv", "-m", "mapping.yaml", "--results", "results.csv",
                    "--api-url", sandbox.url, "--rate", "none", "--no-progress", cwd=tmp_path)

    assert again.code == 1, again.stdout + again.stderr
    assert len(sandbox.created) == 2  # nothing new
    _header, after = read_results(tmp_path / "results.csv")
    assert [row["status"] for row in after] == ["sent", "sent", "invalid"]
    assert [row["request_id"] for row in after[:2]] == [row["request_id"] for row in before]
    assert "is in the past" in after[2]["error"]


def test_a_far_future_due_date_warns_in_validate(tmp_path: Path) -> None:
    (tmp_path / "mapping.yaml").write_text(mapping_text('{column: Due, format: "%d/%m/%Y"}'),
                                           encoding="utf-8")
    far = TODAY.replace(year=TODAY.year + 3, day=min(TODAY.day, 28))
    write_csv(tmp_path / "contacts.csv", [dmy(SOON), dmy(far)])

    r = run_cli("validate", "contacts.csv", "-m", "mapping.yaml", cwd=tmp_path, key=None)

    assert r.code == 0, r.stdout + r.stderr  # a warning, not a refusal
    assert ("contacts.csv: warning: dueDate is more than two years ahead in 1 row(s) (rows 3): check"
            " the year, and the order of day and month in format") in r.stdout.splitlines()


# --------------------------------------------------------------------------- #
# The team's zone is unusable


@pytest.mark.parametrize("team_tz", ["Mars/Olympus_Mons"])
def test_an_unknown_team_zone_stops_a_mapping_that_needs_it(tmp_path: Path, sandbox: Sandbox) -> None:
    r = send(tmp_path, sandbox, "Due", [SOON.isoformat()])

    assert r.code == 2, r.stdout + r.stderr
    assert (
        'bulksend: error: mapping.yaml: dueDate has no timezone and the team\'s time zone from GET /team'
        ' ("Mars/Olympus_Mons") is not a known IANA zone; nothing was sent'
    ) in r.stderr.splitlines()
    assert "hint: add timezone to dueDate" in r.stderr
    assert sandbox.created == []

    # With its own zone the mapping does not need the team's.
    r = send(tmp_path, sandbox, "{column: Due, timezone: Asia/Tokyo}", [SOON.isoformat()], "-o", "other.csv")
    assert r.code == 0, r.stdout + r.stderr
    assert_instants(received(sandbox), {"person0@example.com": end_of(SOON, TOKYO)})


# --------------------------------------------------------------------------- #
# The demo never ages


@pytest.mark.parametrize("today", [TODAY, SAMPLES_TODAY, date(2031, 3, 30), date(2044, 2, 29),
                                   date(2099, 12, 31)])
def test_the_demos_due_dates_are_ahead_on_any_day(today: date, tmp_path: Path) -> None:
    sample, example = find_samples()
    target = tmp_path / "demo-contacts.csv"
    write_demo_contacts(sample, target, today)
    table = open_table(str(target))
    with table:
        mapping = load_mapping(str(example), table.columns)
        mapping.due_dates.clock = lambda: datetime.combine(today, datetime.min.time(), tzinfo=UTC).timestamp()
        mapped = [mapping.apply(row) for row in table.rows()]
    errors = [m.error for m in mapped if m.error is not None]
    # The sample's four broken rows, and nothing else: no due date in the past.
    assert len(errors) == 4 and not any("in the past" in error for error in errors), errors
    dues = [date.fromisoformat(m.payload["dueDate"][:10]) for m in mapped if m.payload is not None]
    assert len(dues) == 27 and all(1 <= (due - today).days <= 28 for due in dues)


# --------------------------------------------------------------------------- #
# The calendar reading, on any wall time in any zone


ZONES = ["Europe/Paris", "America/New_York", "Australia/Lord_Howe", "America/Santiago",
         "Asia/Tehran", "Pacific/Apia", "Africa/Casablanca", "UTC"]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(wall=st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2060, 12, 31)),
       zone=st.sampled_from(ZONES))
def test_any_wall_time_maps_to_the_calendar_instant(wall: datetime, zone: str) -> None:
    """Never an error, never a silent shift: the time sent is the wall time asked
    for, or (in a gap) that wall time moved forward by the gap, never earlier."""
    text = wall.replace(microsecond=0).isoformat(sep=" ")
    loaded = parse_mapping(mapping_text(f"{{column: Due, type: datetime, timezone: {zone}, past: allow}}"),
                           "m.yaml", ["Email", "First Name", "Due"])
    mapped = loaded.apply(Row(2, {"Email": "a@b.co", "First Name": "A", "Due": text}, ()))
    assert mapped.error is None and mapped.payload is not None
    sent = datetime.fromisoformat(mapped.payload["dueDate"])
    asked = wall.replace(microsecond=0)
    assert sent.utcoffset() is not None
    local = sent.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
    assert local >= asked and local - asked <= timedelta(days=1)  # Apia skipped 30 Dec 2011
    if local != asked:  # a gap: the asked time does not exist, read with the offset before it
        before = asked.replace(tzinfo=ZoneInfo(zone), fold=0)
        assert before.astimezone(UTC).astimezone(ZoneInfo(zone)).replace(tzinfo=None) != asked
        # Compared as UTC wall times: by PEP 495 an aware time in a gap is never
        # == to one in another zone, so `sent == before` failed on the same
        # instant (hypothesis found it in America/Santiago, 2032-09-05 00:00).
        offset_before = ZoneInfo(zone).utcoffset(asked - timedelta(days=1))
        assert offset_before is not None
        assert sent.astimezone(UTC).replace(tzinfo=None) == asked - offset_before


def test_the_mapping_clock_is_what_judges_the_past() -> None:
    loaded = parse_mapping(mapping_text("{column: Due, timezone: Europe/Paris}"), "m.yaml",
                           ["Email", "First Name", "Due"])
    row = Row(2, {"Email": "a@b.co", "First Name": "A", "Due": "2030-06-15"}, ())
    deadline = datetime(2030, 6, 15, 23, 59, tzinfo=PARIS).timestamp()
    loaded.due_dates.clock = lambda: deadline - 1
    assert loaded.apply(row).error is None
    loaded.due_dates.clock = lambda: deadline + 1
    assert loaded.apply(row).error is not None
