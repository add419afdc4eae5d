"""bulksend where its users work: Windows and macOS as well as Linux (issue 26).

There is no Windows or macOS machine here, so each platform branch is taken on
Linux on purpose and judged by what a person sees: the portable lock (forced
with BULKSEND_FORCE_PORTABLE=1, the test hook read in common/portable.py), a
loop whose ``add_signal_handler`` raises NotImplementedError (as Windows'
loops do), a console in cp1252, a machine without a time-zone database,
Windows refusing to replace a file another program holds open, and a folder
and file names with spaces and accents. The CLI runs are the real CLI, each a
process of its own, against the real sandbox on loopback. The whole suite
also runs with the forced branches: ``BULKSEND_FORCE_PORTABLE=1 pytest``.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import KEY, MAPPING, people, posix_signals, read_results, run_cli, write_contacts
from forked import run, spawn
from packaging.requirements import Requirement

import bulksend.store.results as results_module
import bulksend.store.runlock as runlock
import bulksend.store.tracked as tracked
from bulksend.common.display import JsonProgress, fit_console
from bulksend.common.errors import AbortError, LockedError, ResultsError
from bulksend.common.outcome import Outcome
from bulksend.common.portable import FORCE_PORTABLE, posix
from bulksend.sandbox import Sandbox, SandboxConfig, running_sandbox
from bulksend.sending.stop import stop_on_signals
from bulksend.store.results import ResultsWriter
from bulksend.store.runlock import RunLock, open_nofollow, storage_error

ROOT = Path(__file__).resolve().parent.parent
BRANCHES = ["posix", "portable"]


def take(branch: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process, and every run it starts, takes ``branch``."""
    if branch == "portable":
        monkeypatch.setenv(FORCE_PORTABLE, "1")
    else:
        monkeypatch.delenv(FORCE_PORTABLE, raising=False)


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "COLLECT_API_KEY"}
    return env | {"COLLECT_API_KEY": KEY} | extra


def per_email(sandbox: Sandbox) -> Counter[str]:
    return Counter(c["email"] for c in sandbox.created)


class Said:
    """A Progress that keeps the events it is told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def event(self, kind: str, message: str, **fields: Any) -> None:
        self.events.append((kind, message))


# -- the probe --------------------------------------------------------------


def test_the_probe_takes_the_portable_branch_on_windows_and_when_forced(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FORCE_PORTABLE, raising=False)
    here = os.name == "posix"
    assert posix() is here
    for value, expected in (("1", False), ("yes", False), ("0", here), ("", here)):
        monkeypatch.setenv(FORCE_PORTABLE, value)
        assert posix() is expected, value


# -- the lock ---------------------------------------------------------------


def test_the_portable_lock_keeps_a_second_holder_out_and_names_the_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without flock (Windows): filelock's lock_descriptor holds the results
    file; a second RunLock is refused with the holder's pid, then gets it
    once the first lets go."""
    import filelock

    take("portable", monkeypatch)
    calls: list[int] = []
    real = filelock.lock_descriptor

    def spy(fd: int, **options: Any) -> bool:
        calls.append(fd)
        return real(fd, **options)

    monkeypatch.setattr(filelock, "lock_descriptor", spy)
    results = tmp_path / "results.csv"
    first, second = RunLock(results), RunLock(results)
    first.acquire()
    try:
        with pytest.raises(LockedError) as refused:
            second.acquire()
        assert f"another bulksend run is using this results file (pid {os.getpid()})" in str(refused.value)
    finally:
        first.release()
    second.acquire()
    second.release()
    assert len(calls) == 3  # every lock went through the portable branch


def test_a_blocked_run_names_the_holder_though_the_first_byte_cannot_be_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows' lock covers byte 0 and no other process may read it: the pid
    is written after it, and read from there."""

    class ByteZeroLocked:
        def __getattr__(self, name: str) -> Any:
            return getattr(os, name)

        @staticmethod
        def read(fd: int, size: int) -> bytes:
            if os.lseek(fd, 0, os.SEEK_CUR) == 0:
                raise PermissionError(13, "The process cannot access the file because another "
                                      "process has locked a portion of the file")
            return os.read(fd, size)

    results = tmp_path / "results.csv"
    first = RunLock(results)
    first.acquire()
    try:
        monkeypatch.setattr(runlock, "os", ByteZeroLocked())
        with pytest.raises(LockedError) as refused:
            RunLock(results).acquire()
    finally:
        monkeypatch.undo()
        first.release()
    assert f"(pid {os.getpid()})" in str(refused.value)


def test_a_cli_run_waits_its_turn_behind_the_portable_lock_then_sends_each_contact_once(
        workdir: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    take("portable", monkeypatch)
    write_contacts(workdir / "contacts.csv", people(12))
    args = ["send", "contacts.csv", "-m", "mapping.yaml", "--results", "results.csv", "--api-url",
            sandbox.url, "--rate", "none"]
    held = RunLock(workdir / "results.csv")
    held.acquire()
    try:
        refused = run_cli(*args, cwd=workdir)
    finally:
        held.release()
    assert refused.code == 2, refused.stderr
    assert f"another bulksend run is using this results file (pid {os.getpid()})" in refused.stderr
    assert sandbox.created == []

    r = run_cli(*args, cwd=workdir)

    assert r.code == 0, r.stderr
    assert per_email(sandbox) == Counter(p["Email"] for p in people(12))


# -- links, where the open cannot refuse them --------------------------------


def test_without_o_nofollow_a_link_is_still_refused_and_its_target_untouched(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    take("portable", monkeypatch)
    assert runlock.no_follow() == 0
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me\n", encoding="utf-8")
    link = tmp_path / "results.csv"
    link.symlink_to(victim)

    with pytest.raises(ResultsError, match="symbolic link"):
        open_nofollow(link, os.O_WRONLY | os.O_CREAT, "results file")

    assert victim.read_text(encoding="utf-8") == "keep me\n"
    fd = os.open(victim, os.O_RDONLY)  # a name swapped for a link while the file was opened
    with pytest.raises(ResultsError, match="symbolic link"):
        runlock.check_opened(fd, link, "results file")


def test_windows_sharing_violation_is_named_for_what_it_is(tmp_path: Path) -> None:
    held = PermissionError(13, "The process cannot access the file because it is being used by "
                           "another process")
    held.winerror = 32  # type: ignore[attr-defined]  # what Windows sets (ERROR_SHARING_VIOLATION)

    error = storage_error(tmp_path / "results.csv", held, "open the results file")

    assert "another program has it open" in error.message
    assert error.hint is not None and "close" in error.hint and "rerun the same command" in error.hint


# -- a results file another program holds open --------------------------------


def _stream_out_of_order(path: Path) -> ResultsWriter:
    writer = ResultsWriter(path, None, ["Email"])
    writer.open()
    for row in (3, 2, 4):  # out of order: the end of the run rewrites the file
        writer.write(Outcome(row=row, key=f"k{row}", status="sent", attempts=1,
                             values={"Email": f"p{row}@example.com"}))
    return writer


class HeldOpen:
    """``os`` as Windows answers while another program holds the target open."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def replace(self, src: Path, dst: Path) -> None:
        if self.refusals:
            self.refusals -= 1
            raise PermissionError(13, "Access is denied")
        os.replace(src, dst)


def test_a_replacement_refused_for_a_moment_is_tried_again(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    take("portable", monkeypatch)
    monkeypatch.setattr(results_module, "REPLACE_PAUSES", (0.0, 0.0, 0.0))
    monkeypatch.setattr(results_module, "os", HeldOpen(refusals=2))
    path = tmp_path / "results.csv"

    _stream_out_of_order(path).finish()

    _, rows = read_results(path)
    assert [r["row"] for r in rows] == ["2", "3", "4"]
    assert not (tmp_path / "results.csv.tmp").exists()


def test_a_results_file_held_open_aborts_naming_it_and_loses_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    take("portable", monkeypatch)
    monkeypatch.setattr(results_module, "REPLACE_PAUSES", (0.0, 0.0))
    monkeypatch.setattr(results_module, "os", HeldOpen(refusals=99))
    path = tmp_path / "results.csv"

    with pytest.raises(AbortError) as aborted:
        _stream_out_of_order(path).finish()

    assert "another program has it open" in aborted.value.message
    assert aborted.value.hint is not None and f"close {path}" in aborted.value.hint
    assert not (tmp_path / "results.csv.tmp").exists()
    _, rows = read_results(path)  # the file as streamed: every line still there
    assert sorted(r["row"] for r in rows) == ["2", "3", "4"]


def test_status_writing_into_a_results_file_held_open_names_it_and_keeps_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``bulksend status`` and ``update`` rewrite the results file too
    (store/tracked.py): the same retries, the same message."""
    path = tmp_path / "results.csv"
    _stream_out_of_order(path).finish()
    before = path.read_bytes()
    take("portable", monkeypatch)
    monkeypatch.setattr(results_module, "REPLACE_PAUSES", (0.0,))
    monkeypatch.setattr(results_module, "os", HeldOpen(refusals=99))

    with pytest.raises(AbortError, match="another program has it open"):
        tracked.rewrite(path, path, {0: {"request_status": "completed"}})

    assert path.read_bytes() == before
    assert not (tmp_path / "results.csv.tmp").exists()


# -- Ctrl-C where the loop has no signal handlers ------------------------------


@pytest.mark.parametrize("why", ["the loop refuses", "forced"])
def test_where_the_loop_has_no_signal_handlers_ctrl_c_stops_gracefully_then_at_once(
        why: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers are installed from the main thread only")
    take("portable" if why == "forced" else "posix", monkeypatch)
    before = signal.getsignal(signal.SIGINT)
    said, stops = Said(), []

    def refuse(*args: object) -> None:
        raise NotImplementedError  # as Windows' loops answer

    async def work() -> None:
        if why == "the loop refuses":
            monkeypatch.setattr(asyncio.get_running_loop(), "add_signal_handler", refuse)
        stopping = asyncio.Event()
        with stop_on_signals(stopping, said, stops.append):  # type: ignore[arg-type]
            signal.raise_signal(signal.SIGINT)
            await asyncio.wait_for(stopping.wait(), 5)
            assert stops == ["Ctrl-C"]  # the graceful stop: no new work
            signal.raise_signal(signal.SIGINT)
            await asyncio.sleep(10)  # the second stops at once: cancelled here

    started = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(work())

    assert time.monotonic() - started < 5
    assert said.events == [("interrupt", "Ctrl-C again: stopping now")]
    assert signal.getsignal(signal.SIGINT) is before  # put back


@posix_signals
def test_ctrl_c_stops_a_forced_portable_run_cleanly_and_the_rerun_sends_the_rest_once(
        workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    take("portable", monkeypatch)
    rows = people(60)
    write_contacts(workdir / "contacts.csv", rows)
    with running_sandbox(SandboxConfig(api_key=KEY, seed=2, latency=0.1)) as sandbox:
        args = ["send", "contacts.csv", "-m", "mapping.yaml", "--results", "results.csv", "--api-url",
                sandbox.url, "--rate", "none", "--concurrency", "2", "--no-progress"]
        with open(workdir / "run.out", "wb") as out, open(workdir / "run.err", "wb") as err:
            proc = spawn(args, cwd=workdir, env=cli_env(), stdout=out, stderr=err)
        try:
            deadline = time.monotonic() + 30
            while len(sandbox.created) < 6 and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.01)
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=15)
        stderr = (workdir / "run.err").read_text(encoding="utf-8", errors="replace")

        assert code == 130, stderr
        assert "Traceback" not in stderr, stderr
        assert "Ctrl-C: no new rows; waiting up to" in stderr, stderr
        _, lines = read_results(workdir / "results.csv")
        assert sorted(int(line["row"]) for line in lines) == list(range(2, 62))  # one line a row
        assert Counter(line["status"] for line in lines)["sent"] == len(sandbox.created) < 60

        sandbox.set_faults(latency=0.0)
        r = run_cli(*args, cwd=workdir)

        assert r.code == 0, r.stderr
        assert per_email(sandbox) == Counter(row["Email"] for row in rows)  # each exactly once


# -- a console that cannot print everything ------------------------------------


def test_a_cp1252_console_gets_ascii_forms_instead_of_an_error() -> None:
    raw = io.BytesIO()
    console = io.TextIOWrapper(raw, encoding="cp1252", errors="strict", newline="")
    fit_console(console)

    console.write("█ → … Łukasz Dvořák Zoë\n")
    console.flush()

    # What cp1252 has stays ("…", "á", "ë"); the rest gets its ASCII form.
    assert raw.getvalue().decode("cp1252") == "# -> … Lukasz Dvorák Zoë\n"
    utf8 = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    fit_console(utf8)
    assert utf8.errors == "strict"  # left as it is: it writes everything


def test_a_json_log_on_a_cp1252_stream_keeps_every_name_exactly() -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="cp1252", newline="")
    JsonProgress(stream).event("note", "Łukasz → done")
    stream.flush()
    assert json.loads(raw.getvalue().decode("cp1252"))["message"] == "Łukasz → done"


NAMES = [("Łukasz", "Dvořák"), ("Zoë", "Gaël"), ("Şeyma", "Ōno")]


def test_a_run_on_a_cp1252_console_completes_and_sends_every_name_exactly(workdir: Path,
                                                                           sandbox: Sandbox) -> None:
    """Standard output and error in cp1252, strict (a Windows redirection):
    the run ends as it would anywhere; only the console gets ASCII forms, the
    server gets every name as the file has it."""
    rows = [{"Email": f"p{i}@example.com", "First Name": first, "Last Name": last}
            for i, (first, last) in enumerate(NAMES)]
    rows.append({"Email": "not→an-email", "First Name": "Łukasz"})  # an invalid row: its message
    write_contacts(workdir / "contacts.csv", rows)
    # A fresh interpreter reads these; it also warns of any open() that leans
    # on the locale's encoding (cp1252 on Windows): bulksend names its own.
    env = cli_env(PYTHONIOENCODING="cp1252:strict", PYTHONWARNDEFAULTENCODING="1")
    args = ["contacts.csv", "-m", "mapping.yaml"]

    checked = run(["validate", *args, "--preview", "3"], cwd=workdir, env=env)
    code, out, err = run(["send", *args, "--results", "results.csv", "--api-url", sandbox.url,
                          "--rate", "none"], cwd=workdir, env=env)

    for status, stdout, stderr in (checked, (code, out, err)):
        text = stdout.decode("cp1252") + stderr.decode("cp1252")
        assert status == 1, text  # one row invalid, the others fine
        assert "Traceback" not in text and "UnicodeEncodeError" not in text, text
        assert "EncodingWarning" not in text, text
    assert "Lukasz Dvorák" in checked[1].decode("cp1252")
    assert "not->an-email" in err.decode("cp1252") + out.decode("cp1252")
    sent = {c["email"]: c["received"]["contact"] for c in sandbox.created}
    assert per_email(sandbox) == Counter(f"p{i}@example.com" for i in range(len(NAMES)))
    assert [(sent[f"p{i}@example.com"]["firstName"], sent[f"p{i}@example.com"]["lastName"])
            for i in range(len(NAMES))] == NAMES


# -- time zones: the tzdata package where the system has none --------------------


def test_tzdata_and_filelock_are_declared_for_windows_only() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = {Requirement(text).name: Requirement(text) for text in project["dependencies"]}
    for name in ("tzdata", "filelock"):
        marker = wanted[name].marker
        assert marker is not None and marker.evaluate({"sys_platform": "win32"}), name
        assert not any(marker.evaluate({"sys_platform": other}) for other in ("linux", "darwin")), name


ZONED = """\
campaignId: {value: camp_1}
contact: {email: Email, firstName: First Name}
dueDate: {column: Due, timezone: Europe/Paris}
"""


def _validate_zoned(workdir: Path, *, tzdata: bool) -> subprocess.CompletedProcess[str]:
    """``bulksend validate`` in a fresh interpreter that sees no system zones
    (PYTHONTZPATH empty), as on Windows; with or without the tzdata package."""
    (workdir / "zoned.yaml").write_text(ZONED, encoding="utf-8")
    (workdir / "due.csv").write_text("Email,First Name,Due\na@example.com,A,2030-01-05\n", encoding="utf-8")
    script = ("import sys\n"
              + ("" if tzdata else "sys.modules['tzdata'] = None  # not installed\n")
              + "sys.argv = ['bulksend', 'validate', 'due.csv', '-m', 'zoned.yaml']\n"
              "from bulksend.cli.main import main\nmain()\n")
    return subprocess.run([sys.executable, "-c", script], cwd=workdir, capture_output=True, text=True,
                          encoding="utf-8", env=cli_env(PYTHONTZPATH="", PYTHONIOENCODING="utf-8"),
                          timeout=60, check=False)


def test_without_a_time_zone_database_the_run_says_to_install_tzdata(workdir: Path) -> None:
    done = _validate_zoned(workdir, tzdata=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "no time-zone database" in done.stderr and "pip install tzdata" in done.stderr, done.stderr


def test_the_tzdata_package_alone_is_enough(workdir: Path) -> None:
    pytest.importorskip("tzdata")
    done = _validate_zoned(workdir, tzdata=True)
    assert done.returncode == 0, done.stderr
    assert "Europe/Paris" in done.stderr + done.stdout


# -- folders and files with spaces and accents ---------------------------------


@pytest.mark.parametrize("branch", BRANCHES)
@pytest.mark.parametrize("results", ["Résultats été/résultats à envoyer.csv", None],
                         ids=["--results", "default"])
def test_a_run_in_a_folder_with_spaces_and_accents_works_end_to_end(
        branch: str, results: str | None, workdir: Path, sandbox: Sandbox,
        monkeypatch: pytest.MonkeyPatch) -> None:
    take(branch, monkeypatch)
    folder = workdir / "Clients été 2026"
    folder.mkdir()
    contacts = folder / "contacts à envoyer.csv"
    write_contacts(contacts, people(15))
    (workdir / "mapping été.yaml").write_text(MAPPING, encoding="utf-8")
    if results is not None:
        (workdir / results).parent.mkdir()
    out = workdir / (results or "contacts à envoyer-results.csv")
    args = ["send", str(contacts.relative_to(workdir)), "-m", "mapping été.yaml", "--api-url", sandbox.url,
            "--rate", "none", *(["--results", results] if results else [])]

    first = run_cli(*args, cwd=workdir)
    again = run_cli(*args, cwd=workdir)
    report = run_cli("report", str(out.relative_to(workdir)), cwd=workdir)

    assert first.code == 0, first.stderr
    assert again.code == 0, again.stderr
    assert per_email(sandbox) == Counter(p["Email"] for p in people(15))  # once each, rerun included
    _, lines = read_results(out)
    assert [line["status"] for line in lines] == ["sent"] * 15
    assert report.code == 0, report.stderr
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(out.name)) == [
        out.name, f"{out.name}.journal", f"{out.name}.lock"]


# -- the hosted CI ------------------------------------------------------------------


def _fenced(text: str) -> list[tuple[str, str]]:
    return [(m["info"], m["body"].strip()) for m in
            re.finditer(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```\s*$", text, re.M | re.S)]


def test_the_workflow_runs_the_readme_test_command_on_three_platforms_and_the_checks() -> None:
    readme = _fenced((ROOT / "README.md").read_text(encoding="utf-8"))
    sh_test = readme[1][1]
    powershell_test = next(body for info, body in readme if info == "powershell" and "pytest" in body)
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8"))
    tests, checks = workflow["jobs"]["tests"], workflow["jobs"]["checks"]

    matrix = tests["strategy"]["matrix"]
    assert set(matrix["os"]) == {"ubuntu-latest", "windows-latest", "macos-latest"}
    assert set(matrix["python"]) == {"3.11", "3.13"}
    runs = {step["shell"]: step["run"].strip() for step in tests["steps"] if "run" in step}
    assert runs == {"bash": sh_test, "pwsh": powershell_test}
    checked = " && ".join(step["run"] for step in checks["steps"] if "run" in step)
    for command in ("ruff check bulksend tests bench", "mypy && mypy --platform win32 && "
                    "mypy --platform darwin", "BULKSEND_FORCE_PORTABLE=1 pytest"):
        assert command in checked, command
