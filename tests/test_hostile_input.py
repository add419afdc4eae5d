"""Issue 25: careless and hostile local input, against the real CLI (or the
Python API) and the real sandbox on loopback.

Outputs that are not plain files, other runs' files, secrets in URLs, header
cells, arguments (CLI and Python), and a send inside ``asyncio.run``. Device
cases use private nodes made with ``os.mknod`` in the test's own folder (never
the machine's /dev); they are skipped where mknod is not permitted. Cases
whose old behaviour was to eat memory (a device that reads zeros, a range of
a billion rows) run in a fresh interpreter under a 768 MB address-space cap,
so that on a regression they fail with a MemoryError instead of taking the
machine down.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import stat
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import CONTRACT, KEY, people, posix_signals, run_cli, write_contacts

import bulksend
from bulksend.sandbox import DEMO_CAMPAIGN_ID, Sandbox, SandboxConfig, running_sandbox
from bulksend.store.results import read_results
from bulksend.store.runlock import RunLock

ROOT = Path(__file__).resolve().parent.parent
ALPHABET = "23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz"
SHORT: dict[str, Any] = {"campaignId": {"value": DEMO_CAMPAIGN_ID},
                         "contact": {"email": "Email", "firstName": "First Name"}}

posix_nodes = pytest.mark.skipif(
    sys.platform == "win32", reason="FIFOs, device nodes and resource limits: POSIX only")
linux_devices = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="character devices 1:3 (discards writes) and 1:5 (reads zeros) are Linux's numbers")


# -- helpers --------------------------------------------------------------------------


def make_node(path: Path, kind: str) -> Path:
    """A private node at ``path``: "fifo", "null" (a character device that
    discards what is written and reads nothing, 1:3) or "zero" (one that reads
    zeros for ever, 1:5). Skips the test where the system does not permit it."""
    try:
        if kind == "fifo":
            os.mkfifo(path)
        else:
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, {"null": 3, "zero": 5}[kind]))
    except (PermissionError, AttributeError) as exc:
        pytest.skip(f"cannot make a {kind} node here ({exc}): device cases need root (CAP_MKNOD)")
    return path


def kind_of(path: Path) -> str:
    mode = os.lstat(path).st_mode
    return "chr" if stat.S_ISCHR(mode) else "fifo" if stat.S_ISFIFO(mode) else "reg" if stat.S_ISREG(
        mode) else "other"


NODE_KIND = {"null": "chr", "zero": "chr", "fifo": "fifo"}


def request_id(n: int) -> str:
    digits = ""
    for _ in range(15):
        n, d = divmod(n, len(ALPHABET))
        digits += ALPHABET[d]
    return "Rq" + digits


def sent_world(path: Path, n: int) -> tuple[dict[str, object], Path]:
    """``n`` pending requests for the sandbox to hold, and a results CSV (rows
    2 to n+1, each sent with its request) as a send writes it."""
    requests, lines = [], []
    for i in range(n):
        email = f"client{i}@example.com"
        requests.append({"_id": request_id(i), "campaignId": DEMO_CAMPAIGN_ID, "email": email,
                         "status": "pending", "createdAt": "2026-01-01T10:00:00Z"})
        lines.append([i + 2, f"{DEMO_CAMPAIGN_ID}|{email}", "sent", request_id(i),
                      f"https://app.usecollect.com/portal/x/{request_id(i)}", "", "200", "1", "", "", email])
    with open(path, "w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\r\n")
        writer.writerow([*CONTRACT, "Email"])
        writer.writerows(lines)
    return {"contacts": [], "requests": requests}, path


def one_line_refusal(r: Any, first_words: str = "bulksend: error: ") -> str:
    """Exit 2, one error line (and at most a hint), no traceback: the error line."""
    err = r.stderr
    assert r.code == 2, f"exit {r.code}\n{r.stdout}{err}"
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert lines and lines[0].startswith(first_words), err
    assert len(lines) <= 2 and all(line.startswith("hint: ") for line in lines[1:]), err
    return lines[0]


def run_capped(args: list[str], cwd: Path, env: dict[str, str],
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m bulksend ARGS`` in a fresh interpreter whose address space is
    capped at 768 MB (the issue measured 1.35 GB for 2-20000000): a run that reads for ever fails
    with a MemoryError instead of eating the machine's memory."""
    boot = ("import resource, runpy, sys; cap = 768 * 2**20; "
            "resource.setrlimit(resource.RLIMIT_AS, (cap, cap)); "
            "sys.argv = ['bulksend', *sys.argv[1:]]; runpy.run_module('bulksend', run_name='__main__')")
    full = {k: v for k, v in os.environ.items() if k != "COLLECT_API_KEY"} | env
    return subprocess.run([sys.executable, "-c", boot, *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=timeout)


# -- outputs that are not plain files -------------------------------------------------


@posix_nodes
@pytest.mark.parametrize("kind", ["null", "fifo"])
def test_status_output_onto_a_device_or_fifo_is_refused_and_the_node_kept(tmp_path: Path, kind: str) -> None:
    if kind != "fifo" and not sys.platform.startswith("linux"):
        pytest.skip("character device numbers are Linux's")
    records, _ = sent_world(tmp_path / "r.csv", 2)
    node = make_node(tmp_path / "out", kind)
    with running_sandbox(SandboxConfig(api_key=KEY, preload=records)) as sb:
        r = run_cli("status", "r.csv", "-o", "out", "--api-url", sb.url, cwd=tmp_path, timeout=20)
        gets = sb.stats["gets"]
    line = one_line_refusal(r, "bulksend: error: out: ")
    assert "not a plain file" in line, line
    assert kind_of(node) == NODE_KIND[kind] and gets == 0


@posix_nodes
@pytest.mark.parametrize("kind", ["null", "fifo"])
def test_init_output_onto_a_device_or_fifo_is_refused_even_with_force(tmp_path: Path, kind: str) -> None:
    if kind != "fifo" and not sys.platform.startswith("linux"):
        pytest.skip("character device numbers are Linux's")
    write_contacts(tmp_path / "contacts.csv", people(3))
    node = make_node(tmp_path / "mapping.yaml", kind)
    r = run_cli("init", "contacts.csv", "-o", "mapping.yaml", "--force", cwd=tmp_path, key=None, timeout=20)
    line = one_line_refusal(r, "bulksend: error: mapping.yaml: -o is ")
    assert "not a plain file" in line
    assert kind_of(node) == NODE_KIND[kind]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["contacts.csv", "mapping.yaml"]  # no temp file left


@posix_nodes
@pytest.mark.parametrize(("planted", "kind", "extra"), [
    ("r.csv", "null", ()), ("r.csv", "fifo", ()),
    ("s.json", "null", ("--summary-json", "s.json")), ("s.json", "fifo", ("--summary-json", "s.json")),
    ("r.csv.journal", "fifo", ()), ("r.csv.tmp", "null", ()), ("r.csv.updates", "fifo", ()),
])
def test_send_refuses_every_output_that_is_not_a_plain_file_before_anything(
        workdir: Path, sandbox: Sandbox, planted: str, kind: str, extra: tuple[str, ...]) -> None:
    """--results, --summary-json and each side file: a device or a FIFO there
    is refused (exit 2, one line) before any request, and nothing is written."""
    if kind != "fifo" and not sys.platform.startswith("linux"):
        pytest.skip("character device numbers are Linux's")
    write_contacts(workdir / "contacts.csv", people(3))
    node = make_node(workdir / planted, kind)
    before = sorted(p.name for p in workdir.iterdir())
    r = run_cli("send", "contacts.csv", "-m", "mapping.yaml", "--results", "r.csv", "--api-url", sandbox.url,
                *extra, cwd=workdir, timeout=20)
    line = one_line_refusal(r, f"bulksend: error: {planted}: ")
    assert "not a plain file" in line, line
    assert kind_of(node) == NODE_KIND[kind]
    assert sorted(p.name for p in workdir.iterdir()) == before
    assert sandbox.stats["gets"] == 0 and sandbox.created == []


@posix_nodes
@linux_devices
def test_send_results_onto_a_device_that_reads_zeros_is_refused_at_once(workdir: Path,
                                                                         sandbox: Sandbox) -> None:
    """It used to be read as a results file for ever (a MemoryError after 2.2 s under 1.5 GB)."""
    write_contacts(workdir / "contacts.csv", people(3))
    make_node(workdir / "zero", "zero")
    started = time.monotonic()
    proc = run_capped(["send", "contacts.csv", "-m", "mapping.yaml", "--results", "zero",
                       "--api-url", sandbox.url], workdir, {"COLLECT_API_KEY": KEY})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("bulksend: error: zero: the --results file is a character device"), \
        proc.stderr
    assert time.monotonic() - started < 20 and sandbox.created == []


@posix_nodes
@linux_devices
def test_demo_output_onto_a_device_is_refused_and_the_device_kept(tmp_path: Path) -> None:
    node = make_node(tmp_path / "dev", "null")
    r = run_cli("demo", "-o", str(node), cwd=ROOT, key=None, timeout=60)
    one_line_refusal(r, f"bulksend: error: {node}: --results is a character device")
    assert kind_of(node) == "chr" and not (tmp_path / "demo-contacts.csv").exists()


@posix_nodes
@pytest.mark.parametrize("planted", ["r.csv", "r.csv.journal", "r.csv.lock", "r.csv.tmp"])
@pytest.mark.parametrize("command", [["status"], ["update", "--all", "--status", "archived", "--yes"],
                                     ["reconcile"]])
def test_status_update_reconcile_refuse_a_fifo_results_or_side_file_at_once(
        tmp_path: Path, sandbox: Sandbox, planted: str, command: list[str]) -> None:
    """The results file and its side files are written in place by these: a
    FIFO there is refused (exit 2, one line), never opened and waited on."""
    if planted != "r.csv":
        sent_world(tmp_path / "r.csv", 1)
    node = make_node(tmp_path / planted, "fifo")
    r = run_cli(command[0], "r.csv", *command[1:], "--api-url", sandbox.url, cwd=tmp_path, timeout=20)
    assert "is a FIFO (named pipe), not a plain file" in one_line_refusal(r, f"bulksend: error: {planted}: ")
    assert kind_of(node) == "fifo" and sandbox.stats["gets"] == 0 and sandbox.patches == []


# -- other runs' files ----------------------------------------------------------------


def test_status_output_onto_another_runs_results_is_refused(workdir: Path) -> None:
    """b.csv is a send's results (it has a journal), c.csv is held by a run:
    `status a.csv -o` refuses both, and leaves them as they were."""
    records, _ = sent_world(workdir / "a.csv", 2)
    write_contacts(workdir / "contacts.csv", people(2))
    with running_sandbox(SandboxConfig(api_key=KEY, seed=1, preload=records)) as sb:
        sent = run_cli("send", "contacts.csv", "-m", "mapping.yaml", "--results", "b.csv",
                       "--api-url", sb.url, cwd=workdir)
        assert sent.code == 0, sent.stderr
        sent_world(workdir / "c.csv", 2)
        b_before, c_before = (workdir / "b.csv").read_bytes(), (workdir / "c.csv").read_bytes()
        gets_before = sb.stats["gets"]
        over_journal = run_cli("status", "a.csv", "-o", "b.csv", "--api-url", sb.url, cwd=workdir)
        lock = RunLock(workdir / "c.csv")
        lock.acquire()  # another run holds c.csv
        try:
            over_locked = run_cli("status", "a.csv", "-o", "c.csv", "--api-url", sb.url, cwd=workdir)
        finally:
            lock.release()
        gets = sb.stats["gets"]
    line = one_line_refusal(over_journal, "bulksend: error: b.csv: -o is another run's results file")
    assert "b.csv.journal" in line
    one_line_refusal(over_locked, "bulksend: error: c.csv: -o: another bulksend run is using this file")
    assert (workdir / "b.csv").read_bytes() == b_before and (workdir / "c.csv").read_bytes() == c_before
    assert gets == gets_before  # status made no request


@posix_nodes
def test_a_planted_updates_link_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    records, _ = sent_world(tmp_path / "r.csv", 2)
    victim = tmp_path / "victim.db"
    victim.write_bytes(b"someone else's data\n")
    (tmp_path / "r.csv.updates").symlink_to(victim)
    with running_sandbox(SandboxConfig(api_key=KEY, preload=records)) as sb:
        r = run_cli("update", "r.csv", "--all", "--status", "archived", "--yes", "--api-url", sb.url,
                    cwd=tmp_path)
        patches = sb.patches
    line = one_line_refusal(r, "bulksend: error: ")
    assert "r.csv.updates" in line and "symbolic link" in line, line
    assert victim.read_bytes() == b"someone else's data\n" and patches == []
    assert not (tmp_path / "victim.db-wal").exists()


# -- secrets in URLs ----------------------------------------------------------------


HIDDEN = ("S3CRETpw", "alice")
URLS = ["https://alice:S3CRETpw@api.example.com/v1", "https://alice:S3C/RETpw@api.example.com/v1",
        "https://alice:S3CRETpw#x@api.example.com/v1", "http://alice:S3CRETpw@127.0.0.1:9/v1",
        "alice:S3CRETpw@api.example.com/v1"]


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("given", ["--api-url", "COLLECT_API_URL"])
def test_a_urls_user_info_is_never_repeated(workdir: Path, url: str, given: str) -> None:
    """Refused (exit 2), and never echoed: not on stderr, in JSON logs, in the
    --summary-json file."""
    write_contacts(workdir / "contacts.csv", people(2))
    args = ["--api-url", url] if given == "--api-url" else []
    env = {"COLLECT_API_URL": url} if given == "COLLECT_API_URL" else {}
    r = run_cli("send", "contacts.csv", "-m", "mapping.yaml", *args, "--log-format", "json",
                "--summary-json", "s.json", cwd=workdir, env=env)
    assert r.code == 2, r.stderr
    summary = (workdir / "s.json").read_text(encoding="utf-8")
    assert "--api-url" in r.stderr and "--api-url" in summary
    for text in (r.stdout, r.stderr, summary):
        assert "S3C" not in text and "alice" not in text, text


@pytest.mark.parametrize("url", URLS)
def test_a_urls_user_info_is_not_in_the_python_exception(tmp_path: Path, url: str) -> None:
    with pytest.raises(bulksend.UsageError) as caught:
        bulksend.send([{"Email": "a@example.com", "First Name": "A"}], SHORT, results=tmp_path / "r.csv",
                      api_key=KEY, api_url=url, progress=False)
    shown = "".join(traceback.format_exception(caught.value)) + repr(caught.value) + str(caught.value.hint)
    assert "S3C" not in shown and "alice" not in shown, shown
    assert list(tmp_path.iterdir()) == []


# -- header cells are cells ---------------------------------------------------------


def test_header_cells_get_the_formula_guard_and_read_back_as_written(workdir: Path,
                                                                     sandbox: Sandbox) -> None:
    evil = ['=HYPERLINK("http://evil")', "@SUM(A1)", "+1", "'=quoted"]
    with open(workdir / "contacts.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Email", "First Name", "Last Name", "Documents", *evil])
        writer.writerow(["a@example.com", "A", "", "", "1", "2", "3", "4"])
    r = run_cli("send", "contacts.csv", "-m", "mapping.yaml", "--results", "r.csv", "--api-url", sandbox.url,
                cwd=workdir)
    assert r.code == 0, r.stderr
    with open(workdir / "r.csv", encoding="utf-8-sig", newline="") as fh:
        header = next(csv.reader(fh))
    assert header[len(CONTRACT) + 4:] == ["'" + name for name in evil]
    assert not any(cell.startswith(("=", "+", "-", "@")) for cell in header)
    row = next(read_results(workdir / "r.csv"))
    assert [row[name] for name in evil] == ["1", "2", "3", "4"]


# -- arguments: update --rows, init --campaign --------------------------------------


# Superscripts, an Arabic-Indic 3, a fullwidth 2: str.isdigit() takes them all.
@pytest.mark.parametrize("rows", ["²", "2-³", "\u0663", "\uff12"])
def test_update_rows_that_are_not_ascii_digits_are_refused_in_one_line(tmp_path: Path, rows: str) -> None:
    records, _ = sent_world(tmp_path / "r.csv", 2)
    with running_sandbox(SandboxConfig(api_key=KEY, preload=records)) as sb:
        r = run_cli("update", "r.csv", "--rows", rows, "--status", "archived", "--yes", "--api-url", sb.url,
                    cwd=tmp_path)
        patches = sb.patches
    assert "is not a row number" in one_line_refusal(r, f"bulksend: error: --rows {rows!r}")
    assert patches == []


@posix_nodes
@pytest.mark.parametrize(("rows", "first_words"), [
    ("2-999999999", "bulksend: error: r.csv: no row 4"),
    ("3,2-20000000", "bulksend: error: r.csv: no row 4"),
    ("99999999999999999999", "bulksend: error: --rows '99999999999999999999'"),
])
def test_update_a_range_past_the_last_row_is_refused_as_a_row_past_the_end(tmp_path: Path, rows: str,
                                                                            first_words: str) -> None:
    """Checked as a range, never built: at once, in little memory (it used to
    build every number: a MemoryError, or 1.35 GB for 2-20000000)."""
    records, _ = sent_world(tmp_path / "r.csv", 2)
    with running_sandbox(SandboxConfig(api_key=KEY, preload=records)) as sb:
        started = time.monotonic()
        proc = run_capped(["update", "r.csv", "--rows", rows, "--status", "archived", "--yes",
                           "--api-url", sb.url], tmp_path, {"COLLECT_API_KEY": KEY})
        elapsed = time.monotonic() - started
        patches = sb.patches
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(first_words) and "Traceback" not in proc.stderr, proc.stderr
    assert elapsed < 20 and patches == []


@pytest.mark.parametrize("campaign", ["../team", "x?y=1", "#frag", "%2e%2e/team", "a b", "camp\u00e9", ""])
def test_init_campaign_ids_holding_anything_but_letters_digits_dash_underscore_are_refused(
        tmp_path: Path, sandbox: Sandbox, campaign: str) -> None:
    write_contacts(tmp_path / "contacts.csv", people(2))
    r = run_cli("init", "contacts.csv", "--campaign", campaign, "--api-url", sandbox.url, cwd=tmp_path)
    assert "not a campaign id" in one_line_refusal(r, "bulksend: error: --campaign ")
    assert sandbox.stats["gets"] == 0 and not (tmp_path / "mapping.yaml").exists()



@pytest.mark.parametrize("flag", [(), ("--send-anyway",), ("--skip-existing",)])
@pytest.mark.parametrize("campaign", ["../team", "x?y=1", "%2e%2e/team"])
def test_campaign_ids_from_a_mapping_or_a_column_are_refused_before_any_request(
        tmp_path: Path, sandbox: Sandbox, campaign: str, flag: tuple[str, ...]) -> None:
    """The id rule of init --campaign holds for the ids a mapping or a column
    gives: GET /campaigns/../team was served as GET /team and, with
    --send-anyway, POSTs went out carrying it (issue 25, found by a tryout)."""
    write_contacts(tmp_path / "contacts.csv", people(2))
    (tmp_path / "mapping.yaml").write_text(
        f'campaignId: {{value: "{campaign}"}}\ncontact:\n  email: Email\n', encoding="utf-8")
    r = run_cli("send", "contacts.csv", "-m", "mapping.yaml", "--api-url", sandbox.url, *flag, cwd=tmp_path,
                env={"COLLECT_API_KEY": KEY})
    assert r.code == 2, r.stderr
    assert "is not a campaign id" in r.stderr and "nothing was sent" in r.stderr, r.stderr
    assert sandbox.stats["gets"] == 0 and sandbox.created == []


# -- arguments: the Python API --------------------------------------------------------


@pytest.mark.parametrize(("options", "message"), [
    ({"progress": "yes"}, r"progress='yes': must be True, False or a Progress"),
    ({"api_key": 123}, r"api_key: must be text \(a str\) or None, not int"),
    ({"concurrency": 8.5}, r"concurrency=8.5: must be a whole number \(an int\) from 1 to 256"),
    ({"limit": 2.5}, r"limit=2.5: must be a whole number \(an int\) at least 0"),
    ({"rate": 0}, r"rate=0: must be above 0 requests per second"),
    ({"rate": -5}, r"rate=-5: must be above 0 requests per second"),
    ({"timeout": float("nan")}, r"timeout=nan: must be a number from 0.1 to 600"),
    ({"dry_run": "no"}, r"dry_run='no': must be True or False"),
    ({"sheet": 1.5}, r"sheet=1.5: must be a sheet's name"),
])
def test_python_api_arguments_are_checked_before_anything_is_created(
        tmp_path: Path, sandbox: Sandbox, options: dict[str, Any], message: str) -> None:
    rows = [{"Email": f"arg{i}@example.com", "First Name": "A"} for i in range(3)]
    given = {"api_key": KEY, "api_url": sandbox.url, "progress": False, **options}
    with pytest.raises(bulksend.UsageError, match=message):
        bulksend.send(rows, SHORT, results=tmp_path / "r.csv", **given)
    assert list(tmp_path.iterdir()) == [] and sandbox.created == [] and sandbox.stats["gets"] == 0


def test_python_api_update_and_status_check_progress_before_anything(tmp_path: Path) -> None:
    _records, results = sent_world(tmp_path / "r.csv", 1)
    before = sorted(p.name for p in tmp_path.iterdir())
    calls: list[Callable[[], object]] = [
        lambda: bulksend.update(results, rows="2", status="archived", api_key=KEY, progress="yes"),
        lambda: bulksend.update(results, rows="2", status="archived", api_key=KEY, every="no"),
        lambda: bulksend.status(results, api_key=KEY, progress="yes"),
        lambda: bulksend.update(results, rows="2", status="archived", api_key=KEY, concurrency=2.0),
    ]
    for call in calls:
        with pytest.raises(bulksend.UsageError):
            call()
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_pandas_and_numpy_values_in_a_list_of_dicts_are_cells() -> None:
    pd = pytest.importorskip("pandas")
    np = pytest.importorskip("numpy")
    mapping = {**SHORT, "contact": {**SHORT["contact"], "data": {
        "n": {"column": "N", "required": False}, "when": {"column": "When", "required": False},
        "gone": {"column": "Gone", "required": False}}}}
    rows = [{"Email": "a@example.com", "First Name": "A", "N": np.int64(7), "When": pd.NaT, "Gone": pd.NA},
            {"Email": "b@example.com", "First Name": "B", "N": np.float64(2.5),
             "When": np.datetime64("2024-05-01T10:00:00"), "Gone": np.datetime64("NaT")}]
    checked = bulksend.validate(rows, mapping, preview=2)
    assert checked.counts["ready"] == 2, checked.problems
    data = [o.payload["contact"]["data"] for o in checked.previews if o.payload is not None]
    assert data[0]["n"] == "7" and "when" not in data[0] and "gone" not in data[0], data
    assert data[1]["n"] == "2.5" and data[1]["when"] == "2024-05-01 10:00:00", data


# -- Ctrl-C inside asyncio.run --------------------------------------------------------


@posix_signals
def test_send_inside_asyncio_run_stops_on_ctrl_c_as_a_script_does(tmp_path: Path) -> None:
    """The first Ctrl-C stops the send gracefully (no new rows; in flight
    waited for) and ``send`` returns its Run, interrupted (130): not all 100
    rows sent, then the Run lost to a KeyboardInterrupt."""
    results = tmp_path / "r.csv"
    with running_sandbox(SandboxConfig(api_key=KEY, seed=1)) as sb:
        script = f"""
import asyncio, json, bulksend
rows = [{{"Email": f"aio{{i}}@example.com", "First Name": "A"}} for i in range(100)]

async def main():
    await asyncio.sleep(0)
    return bulksend.send(rows, {SHORT!r}, results={str(results)!r}, api_key={KEY!r}, api_url={sb.url!r},
                         rate=20, concurrency=2, progress=False)

run = asyncio.run(main())
found = {{"interrupted": run.interrupted, "exit": int(run.exit_status), "sent": run.counts["sent"]}}
print(json.dumps(found))
"""
        env = {k: v for k, v in os.environ.items() if k != "COLLECT_API_KEY"}
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
        try:
            deadline = time.monotonic() + 30
            while len(sb.created) < 3 and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.02)
            proc.send_signal(signal.SIGINT)
            stopped = time.monotonic()
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        took = time.monotonic() - stopped
        created = len(sb.created)
    assert proc.returncode == 0, err
    found = json.loads(out.strip().splitlines()[-1])
    assert found["interrupted"] and found["exit"] == 130, found
    assert found["sent"] == created < 100 and took < 3, (found, created, took)
