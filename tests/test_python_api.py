"""The Python API (issue 16): bulksend.send / bulksend.validate with a path, a
list of dicts and a pandas DataFrame, against the real sandbox; the same
journal as the CLI; inside a running event loop; pandas only when needed."""

from __future__ import annotations

import asyncio
import io
import json
import re
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from conftest import CONTRACT, KEY, people, posix_signals, read_results, run_cli, write_contacts

import bulksend
from bulksend.sandbox import DEMO_CAMPAIGN_ID, Sandbox, SandboxConfig, running_sandbox

pd = pytest.importorskip("pandas")  # the test extra installs it (pyproject.toml)

ROOT = Path(__file__).resolve().parent.parent

MAPPING: dict[str, Any] = {
    "campaignId": {"value": DEMO_CAMPAIGN_ID},
    "contact": {
        "email": "Email",
        "firstName": "First Name",
        "lastName": {"column": "Last Name", "required": False},
        "data": {"zip": {"column": "Zip", "required": False}},
    },
    "sendMessage": True,
}
# For contacts with only these two columns (a column the mapping names must exist).
SHORT: dict[str, Any] = {"campaignId": {"value": DEMO_CAMPAIGN_ID},
                         "contact": {"email": "Email", "firstName": "First Name"}}


def api_send(contacts: Any, sandbox: Sandbox, results: Path, **options: Any) -> bulksend.Run:
    options = {"mapping": MAPPING, "api_key": KEY, "api_url": sandbox.url, "rate": None,
               "progress": False, **options}
    mapping = options.pop("mapping")
    return bulksend.send(contacts, mapping, results=results, **options)


def received(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    """What the server received, by contact email; fails on a duplicate."""
    created = sandbox.created
    per_email = Counter(c["email"] for c in created)
    assert all(n == 1 for n in per_email.values()), per_email.most_common(3)
    return {c["email"]: c["received"] for c in created}


# --- send: a path, a list of dicts, a DataFrame -----------------------------------


def test_send_a_path_then_the_cli_finds_everything_sent(workdir: Path, sandbox: Sandbox) -> None:
    write_contacts(workdir / "contacts.csv", people(12))

    run = bulksend.send(workdir / "contacts.csv", workdir / "mapping.yaml", results=workdir / "results.csv",
                        api_key=KEY, api_url=sandbox.url, rate=None, progress=False)

    assert run.ok and run.exit_status == 0 and run.total == 12
    assert run.counts["sent"] == 12 and run.posts == 12
    assert run.results == workdir / "results.csv"
    server = received(sandbox)
    assert set(server) == {f"person{i}@example.com" for i in range(12)}
    assert server["person3@example.com"]["contact"]["firstName"] == "Person3"
    # Iterating the run reads the results CSV: one outcome per row, the server's ids.
    outcomes = list(run)
    assert [o.row for o in outcomes] == list(range(2, 14))
    by_id = {c["_id"]: c["email"] for c in sandbox.created}
    assert all(by_id[o.request_id] == o.values["Email"] for o in outcomes)
    # The same journal as the command line: a CLI rerun sends nothing.
    again = run_cli("send", "contacts.csv", "-m", "mapping.yaml", "--results", "results.csv",
                    "--api-url", sandbox.url, "--rate", "none", "--no-progress", cwd=workdir)
    assert again.code == 0, again.stderr
    assert "0 POSTs" in again.stdout
    assert len(sandbox.created) == 12


def test_send_a_list_of_dicts_as_written_and_resume_exactly_once(tmp_path: Path, sandbox: Sandbox) -> None:
    rows: list[dict[str, Any]] = [
        {"Email": f"p{i}@example.com", "First Name": f"P{i}", "Last Name": None, "Zip": "007"}
        for i in range(6)
    ]
    rows[2]["Email"] = "not-an-email"  # invalid, never sent
    rows[4] = {"Email": "P0@Example.com", "First Name": "Again"}  # the key of row 2: duplicate
    rows.append({"Email": "p9@example.com", "First Name": 42, "Zip": 7})  # not text: as a sheet shows it

    run = api_send(rows, sandbox, tmp_path / "results.csv")

    assert run.exit_status == 1 and not run.ok
    assert run.counts == {"sent": 5, "failed": 0, "invalid": 1, "duplicate": 1, "unknown": 0, "ready": 0}
    server = received(sandbox)
    assert set(server) == {"p0@example.com", "p1@example.com", "p3@example.com", "p5@example.com",
                           "p9@example.com"}
    assert server["p0@example.com"]["contact"] == {"email": "p0@example.com", "firstName": "P0",
                                                   "data": {"zip": "007"}}
    assert server["p9@example.com"]["contact"]["firstName"] == "42"
    assert server["p9@example.com"]["contact"]["data"] == {"zip": "7"}
    header, lines = read_results(tmp_path / "results.csv")
    assert header == [*CONTRACT, "Email", "First Name", "Last Name", "Zip"]
    by_row = {int(line["row"]): line for line in lines}
    assert by_row[4]["status"] == "invalid" and "Email" in by_row[4]["error"]
    assert by_row[6]["status"] == "duplicate" and "row 2" in by_row[6]["error"]

    # Resume: rows already sent are skipped without a call; a new one is sent once.
    rows.append({"Email": "p10@example.com", "First Name": "New"})
    again = api_send(rows, sandbox, tmp_path / "results.csv")

    assert again.posts == 1 and again.counts["sent"] == 6
    assert set(received(sandbox)) == {*server, "p10@example.com"}


def test_send_a_dataframe_read_as_text(tmp_path: Path, sandbox: Sandbox) -> None:
    text = "Email,First Name,Last Name,Zip\na@example.com,Ann,NA,007\nb@example.com,Bob,,\n"
    frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    frame.index = [100, 7]  # the index is not read: row 2 is the first row

    run = api_send(frame, sandbox, tmp_path / "results.csv")  # no warning (pytest: warnings are errors)

    assert run.ok and run.counts["sent"] == 2
    server = received(sandbox)
    assert server["a@example.com"]["contact"] == {"email": "a@example.com", "firstName": "Ann",
                                                  "lastName": "NA", "data": {"zip": "007"}}
    assert server["b@example.com"]["contact"] == {"email": "b@example.com", "firstName": "Bob"}
    results = run.to_pandas()
    assert list(results.index) == [2, 3] and results.index.name == "row"
    assert str(results["http_status"].dtype) == "Int64" and list(results["http_status"]) == [200, 200]
    assert str(results["attempts"].dtype) == "int64"
    assert str(results["status"].dtype) == "category"
    assert set(results["status"].cat.categories) >= {"sent", "failed", "unknown", "invalid"}
    assert str(results["sent_at"].dtype).startswith("datetime64") and str(results["sent_at"].dt.tz) == "UTC"
    assert results.loc[2, "Zip"] == "007" and results.loc[2, "Last Name"] == "NA"
    by_id = {c["_id"]: c["email"] for c in sandbox.created}
    assert [by_id[i] for i in results["request_id"]] == ["a@example.com", "b@example.com"]


@pytest.mark.parametrize(("csv_text", "dtype_word"), [
    ("Email,First Name,Last Name,Zip\na@example.com,Ann,Lee,007\nb@example.com,Bob,Ray,\n",
     "float64"),  # 007 -> 7.0, and NaN
    ("Email,First Name,Last Name,Zip\na@example.com,Ann,Lee,007\nb@example.com,Bob,Ray,12\n",
     "int64"),  # 007 -> 7
])
def test_a_column_pandas_typed_for_a_text_field_warns(tmp_path: Path, sandbox: Sandbox, csv_text: str,
                                                      dtype_word: str) -> None:
    frame = pd.read_csv(io.StringIO(csv_text))  # pandas' defaults: Zip is numbers

    with pytest.warns(bulksend.TypedColumnWarning) as caught:
        run = api_send(frame, sandbox, tmp_path / "results.csv")

    (warning,) = caught
    message = str(warning.message)
    assert f"column 'Zip' ({dtype_word})" in message and "contact.data.zip" in message
    assert "007" in message and "dtype=str, keep_default_na=False" in message
    assert warning.filename == __file__  # points at the caller's line
    assert run.warnings == (message,)
    # What pandas did cannot be undone: the server got 7, which is why it warns.
    assert received(sandbox)["a@example.com"]["contact"]["data"] == {"zip": "7"}


def test_typed_columns_warn_only_where_text_is_sent(tmp_path: Path) -> None:
    frame = pd.DataFrame({
        "Email": ["a@example.com", "b@example.com"],
        "Name": ["Ann", None],  # a missing value (NaN from read_csv's "NA")
        "Seen": pd.to_datetime(["2024-01-02", "2024-03-04"]),  # sent as text
        "Due": pd.to_datetime(["2031-01-02", "2031-03-04"]),  # a date field: fine
        "Count": [1, 2],  # an int field: fine
    })
    mapping = {"campaignId": {"value": DEMO_CAMPAIGN_ID},
               "contact": {"email": "Email", "firstName": {"column": "Name", "required": False}},
               "data": {"seen": "Seen", "count": {"column": "Count", "type": "int"}},
               "dueDate": {"column": "Due", "timezone": "Europe/Paris"}}

    with pytest.warns(bulksend.TypedColumnWarning) as caught:
        checked = bulksend.validate(frame, mapping)

    messages = [str(w.message) for w in caught]
    assert len(messages) == 2, messages
    assert "column 'Name'" in messages[0] and "NaN" in messages[0]
    assert "column 'Seen'" in messages[1] and "dates" in messages[1]
    assert checked.ok and checked.counts["ready"] == 2


def test_send_from_inside_a_running_event_loop(tmp_path: Path, sandbox: Sandbox) -> None:
    """As in a Jupyter cell: a loop is running in this thread; asyncio.run
    inside it would fail, so the engine runs in a worker thread."""
    rows = [{"Email": f"loop{i}@example.com", "First Name": "L"} for i in range(8)]

    async def cell() -> bulksend.Run:
        return api_send(rows, sandbox, tmp_path / "results.csv", mapping=SHORT)

    run = asyncio.run(cell())

    assert run.ok and run.counts["sent"] == 8
    assert set(received(sandbox)) == {r["Email"] for r in rows}


@posix_signals
def test_an_interrupt_inside_a_running_loop_stops_gracefully_and_resumes(tmp_path: Path) -> None:
    """A kernel interrupt (KeyboardInterrupt in the main thread, as ipykernel
    raises it) while the worker thread sends: no new rows, the run returns
    interrupted (130), and a rerun sends the rest, each contact once."""
    rows = [{"Email": f"int{i}@example.com", "First Name": "I"} for i in range(60)]
    main = threading.main_thread().ident
    assert main is not None and threading.current_thread() is threading.main_thread()

    with running_sandbox(SandboxConfig(api_key=KEY, seed=1, latency=0.05)) as sandbox:

        def interrupt_after_some() -> None:
            deadline = time.monotonic() + 30
            while len(sandbox.created) < 5 and time.monotonic() < deadline:
                time.sleep(0.01)
            signal.pthread_kill(main, signal.SIGINT)

        async def cell() -> bulksend.Run:
            # ipykernel runs a cell with Python's own SIGINT handler (KeyboardInterrupt).
            previous = signal.signal(signal.SIGINT, signal.default_int_handler)
            try:
                threading.Thread(target=interrupt_after_some, daemon=True).start()
                return api_send(rows, sandbox, tmp_path / "results.csv", concurrency=2, mapping=SHORT)
            finally:
                signal.signal(signal.SIGINT, previous)

        run = asyncio.run(cell())

        assert run.interrupted and run.exit_status == 130
        first = received(sandbox)
        assert 5 <= len(first) < 60
        assert run.counts["sent"] == len(first)
        assert sum(run.counts.values()) == 60  # every row has its line
        assert {o.values["Email"] for o in run if o.status == "sent"} == set(first)

        again = api_send(rows, sandbox, tmp_path / "results.csv", mapping=SHORT)

        assert again.ok and again.posts == 60 - len(first)
        assert set(received(sandbox)) == {r["Email"] for r in rows}


# --- what it never does ---------------------------------------------------------


def test_send_prints_nothing_on_stdout(tmp_path: Path, sandbox: Sandbox,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"Email": "quiet@example.com", "First Name": "Q"}, {"Email": "bad"}]
    run = api_send(rows, sandbox, tmp_path / "results.csv", progress=True, mapping=SHORT)  # tqdm: stderr
    assert run.exit_status == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "1/2" not in out and "2/2" in err


def test_problems_before_sending_raise_and_send_nothing(tmp_path: Path, sandbox: Sandbox) -> None:
    rows = [{"Email": "x@example.com", "First Name": "X"}]
    wrong = {**SHORT, "contact": {"email": "E-mail", "firstName": "First Name"}}
    with pytest.raises(bulksend.MappingError) as error:
        api_send(rows, sandbox, tmp_path / "r.csv", mapping=wrong)
    assert str(error.value) == ('<mapping dict>: contact.email: column "E-mail" is not in the file '
                                '(closest: "Email")')
    assert error.value.exit_status == 2
    with pytest.raises(bulksend.InputError, match=r"<rows>: row 3 is a str, not a dict"):
        api_send([*rows, "y@example.com"], sandbox, tmp_path / "r.csv", mapping=SHORT)
    listed = pd.DataFrame({"Email": ["x@example.com"], "First Name": ["X"], "Notes": [["a", "b"]]})
    with pytest.raises(bulksend.InputError, match=r"<DataFrame>: row 2, column 'Notes': a list is not"):
        api_send(listed, sandbox, tmp_path / "r.csv", mapping=SHORT)
    with pytest.raises(bulksend.UsageError, match="sheet: apply to a contacts file only"):
        api_send(rows, sandbox, tmp_path / "r.csv", sheet="Clients", mapping=SHORT)
    with pytest.raises(bulksend.UsageError, match=r"concurrency=0: must be a number from 1 to 256"):
        api_send(rows, sandbox, tmp_path / "r.csv", concurrency=0, mapping=SHORT)
    with pytest.raises(bulksend.UsageError, match="plain http would send the API key unencrypted"):
        api_send(rows, sandbox, tmp_path / "r.csv", api_url="http://example.com/v1", mapping=SHORT)
    with pytest.raises(bulksend.AuthError):
        api_send(rows, sandbox, tmp_path / "r.csv", api_key="wrong-key", mapping=SHORT)
    with pytest.raises(TypeError, match="contacts: expected a path, a list of dicts or a pandas DataFrame"):
        api_send(rows[0], sandbox, tmp_path / "r.csv", mapping=SHORT)
    assert sandbox.created == []


def test_validate_a_list_of_dicts(tmp_path: Path) -> None:
    rows = [{"Email": "a@example.com", "First Name": "A"}, {"Email": "nope", "First Name": "B"},
            {"Email": "", "First Name": ""}, {"Email": "A@example.com", "First Name": "C"}]
    checked = bulksend.validate(rows, SHORT)
    assert checked.total == 3  # the wholly blank dict is a blank row, as in a sheet
    assert checked.counts == {"ready": 1, "invalid": 1, "duplicate": 1}
    assert checked.exit_status == 1
    assert [(p.row, p.status) for p in checked.problems] == [(3, "invalid"), (5, "duplicate")]
    assert checked.problems[0].values == {"Email": "nope", "First Name": "B"}
    assert checked.read[0].startswith("<rows>: dicts, 4 rows, 2 columns")


def test_dry_run_outcomes_carry_the_payload(tmp_path: Path) -> None:
    rows = [{"Email": "d@example.com", "First Name": "D", "Last Name": "", "Zip": "01234"}]
    run = bulksend.send(rows, MAPPING, results=tmp_path / "dry.csv", dry_run=True, progress=False)
    assert run.dry_run and run.counts["ready"] == 1 and run.posts == 0
    (outcome,) = list(run)
    assert outcome.payload is not None and outcome.payload["contact"]["data"] == {"zip": "01234"}
    assert run.to_pandas().loc[2, "payload"] == outcome.payload


# --- packaging: pandas optional, typed, imports cheap ----------------------------


def test_pandas_is_an_optional_extra_and_in_the_test_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert not any(dep.startswith("pandas") for dep in project["dependencies"])
    extras = project["optional-dependencies"]
    assert any(dep.startswith("pandas>=") for dep in extras["pandas"])
    assert any(dep.startswith("pandas>=") for dep in extras["test"])
    # The installed metadata says the same (pip install -e '.[pandas]').
    meta = metadata.metadata("bulksend")
    assert "pandas" in (meta.get_all("Provides-Extra") or [])
    requires = meta.get_all("Requires-Dist") or []
    assert any(req.startswith("pandas") and 'extra == "pandas"' in req for req in requires)


def test_the_package_is_marked_typed() -> None:
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]
    assert "py.typed" in tool["setuptools"]["package-data"]["bulksend"]
    assert (ROOT / "bulksend" / "py.typed").is_file()


def test_pandas_and_the_engine_are_imported_only_when_needed(tmp_path: Path) -> None:
    script = f"""
import sys, json
import bulksend
from bulksend.cli.main import cli
try:
    cli.main(["--help"], prog_name="bulksend", standalone_mode=False)
except SystemExit:
    pass
after_help = sorted(m for m in ("pandas", "aiohttp", "bulksend.api", "bulksend.sending.run")
                    if m in sys.modules)
run = bulksend.send([{{"Email": "a@example.com", "First Name": "A"}}], {SHORT!r},
                    results={str(tmp_path / "d.csv")!r}, dry_run=True, progress=False)
found = {{"after_help": after_help, "pandas": "pandas" in sys.modules, "ok": run.ok}}
print(json.dumps(found), file=sys.stderr)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: bulksend")
    found = json.loads(proc.stderr.strip().splitlines()[-1])
    assert found == {"after_help": [], "pandas": False, "ok": True}


def test_the_example_in_docs_python_md_prints_what_it_says(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    text = (ROOT / "docs" / "python.md").read_text(encoding="utf-8")
    code = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    printed = re.findall(r"It prints:\n\n```text\n(.*?)```", text, re.S)[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/python.md", "exec"), {})
    assert capsys.readouterr().out == printed


def test_status_after_a_send_from_inside_a_running_loop(tmp_path: Path, sandbox: Sandbox) -> None:
    """bulksend.status reads the requests a send created (the sandbox's default:
    pending), writes them into the results, and works under a running loop too."""
    rows = [{"Email": f"st{i}@example.com", "First Name": "S"} for i in range(7)] + [{"Email": "bad"}]
    run = api_send(rows, sandbox, tmp_path / "results.csv", mapping=SHORT)
    assert run.counts["sent"] == 7

    async def cell() -> Any:
        return bulksend.status(run.results, api_key=KEY, api_url=sandbox.url, rate=None)

    read = asyncio.run(cell())

    assert read.counts == Counter({"pending": 7})
    assert {t.request_id for t in read.rows} == {c["_id"] for c in sandbox.created}
    header, lines = read_results(run.results)
    assert "request_status" in header
    assert [line["request_status"] for line in lines] == ["pending"] * 7 + [""]
    with pytest.raises(bulksend.AuthError):
        bulksend.status(run.results, api_key="wrong-key", api_url=sandbox.url)
