"""What goes out (issue 28): --where, --exclude, the question before a real send, --notify.

End to end through the real CLI (forked, tests/forked.py) and the Python API,
against the sandbox on loopback; the notifications go to a small HTTP server
started here on 127.0.0.1; the question is asked on a pseudo-terminal.
"""

from __future__ import annotations

import csv
import json
import os
import pty
import select
import signal
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import KEY, people, posix_signals, posix_terminal, read_results, run_cli, write_contacts
from forked import spawn

import bulksend
from bulksend.api.notify import post_summary
from bulksend.common.errors import UsageError
from bulksend.mapping.where import status_where
from bulksend.sandbox import DEMO_CAMPAIGN_ID, Sandbox

MAPPING = f"""\
campaignId: {{value: {DEMO_CAMPAIGN_ID}}}
contact:
  email: Email
  firstName: Name
"""


def write_rows(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Email", "Name", "Country"])
        writer.writerows(rows)
    return path


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "mapping.yaml").write_text(MAPPING, encoding="utf-8")
    return tmp_path


def send(work: Path, sandbox: Sandbox, *extra: str, key: str = KEY, mapping: str = "mapping.yaml") -> Any:
    return run_cli("send", "contacts.csv", "-m", mapping, *common(sandbox), *extra, cwd=work, key=key)


def common(sandbox: Sandbox) -> list[str]:
    """The options every run here takes: the results file, the sandbox, full speed, no bar."""
    return ["--results", "results.csv", "--api-url", sandbox.url, "--rate", "none", "--no-progress"]


def lines(work: Path) -> dict[int, dict[str, str]]:
    return {int(r["row"]): r for r in read_results(work / "results.csv")[1]}


def created(sandbox: Sandbox) -> Counter[str]:
    return Counter(c["email"] for c in sandbox.created)


# -- a small HTTP server that receives the notifications -------------------------------


class Hook:
    """Records every POST (path, headers, body) and answers ``answers`` in turn (the last one again)."""

    def __init__(self, answers: tuple[int, ...] = (200,)) -> None:
        self.answers = list(answers)
        self.posts: list[tuple[str, dict[str, str], bytes]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                hook.posts.append((self.path, dict(self.headers), body))
                status = hook.answers.pop(0) if len(hook.answers) > 1 else hook.answers[0]
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ping/secret-token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def documents(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, _, body in self.posts]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = Hook()
    yield server
    server.close()


# -- 1. --where -------------------------------------------------------------------------


ROWS = [
    ("a@example.com", "A", "FR"),   # row 2
    ("b@example.com", "B", "DE"),   # row 3
    ("c@example.com", "C", "fr"),   # row 4: matches, ignoring case
    ("not-an-email", "X", "IT"),    # row 5: invalid, but outside --where: filtered
    ("d@example.com", "D", "BE"),   # row 6
    ("e@example.com", "E", " FR "),  # row 7: matches, trimmed
]


def test_where_sends_only_matching_rows_and_a_run_without_it_sends_the_rest_once(
        work: Path, sandbox: Sandbox) -> None:
    write_rows(work / "contacts.csv", ROWS)

    # Standard input is not a terminal here (as under cron): no question, no --yes needed.
    first = send(work, sandbox, "--where", "Country=FR")

    assert first.code == 0, first.stderr  # filtered rows are not a problem
    assert created(sandbox) == {"a@example.com": 1, "c@example.com": 1, "e@example.com": 1}
    by_row = lines(work)
    assert [by_row[n]["status"] for n in range(2, 8)] == ["sent", "filtered", "sent", "filtered", "filtered",
                                                           "sent"]
    assert by_row[3]["error"] == 'not sent this run: Country is "DE" (--where Country=FR)'
    assert by_row[3]["request_id"] == "" and by_row[3]["attempts"] == "0"
    assert "filtered (--where)" in first.stdout and "3 POSTs" in first.stdout
    sent_ids = {n: by_row[n]["request_id"] for n in (2, 4, 7)}

    # Another filter: the rows sent stay sent (same requests), the new match goes.
    second = send(work, sandbox, "--where", "country = DE,be")
    assert second.code == 0, second.stderr
    by_row = lines(work)
    assert {n: by_row[n]["request_id"] for n in (2, 4, 7)} == sent_ids
    assert by_row[3]["status"] == "sent" and by_row[6]["status"] == "sent"
    assert by_row[5]["status"] == "filtered"  # still outside: not invalid
    assert "2 POSTs" in second.stdout

    # Without --where: the rest, each contact once; the invalid row is now invalid.
    third = send(work, sandbox)
    assert third.code == 1, third.stderr
    assert "0 POSTs" in third.stdout
    assert created(sandbox) == {f"{c}@example.com": 1 for c in "abcde"}
    assert [r["status"] for r in lines(work).values()] == ["sent", "sent", "sent", "invalid", "sent", "sent"]


def test_filtered_rows_are_not_taken_as_sent_when_the_journal_is_lost(work: Path, sandbox: Sandbox) -> None:
    write_rows(work / "contacts.csv", [r for r in ROWS if "@" in r[0]])
    assert send(work, sandbox, "--where", "Country=FR").code == 0
    for side in work.glob("results.csv.journal*"):
        side.unlink()  # rebuilt from the results CSV: its filtered lines say nothing was sent

    again = send(work, sandbox)

    assert again.code == 0, again.stderr
    assert created(sandbox) == {f"{c}@example.com": 1 for c in "abcde"}
    assert {r["status"] for r in lines(work).values()} == {"sent"}


def test_rows_left_out_are_not_checked_against_the_campaign_until_they_may_go(
        work: Path, sandbox: Sandbox) -> None:
    # maincontact already has a request in the demo campaign (sent outside this results file).
    write_rows(work / "contacts.csv", [("a@example.com", "A", "FR"), ("maincontact@example.com", "M", "DE")])
    (work / "dnc.txt").write_text("maincontact@example.com\n", encoding="utf-8")

    assert send(work, sandbox, "--where", "Country=FR").code == 0
    assert send(work, sandbox, "--exclude", "dnc.txt").code == 0
    assert set(created(sandbox)) == {"a@example.com"}

    stopped = send(work, sandbox)  # now it may go: the pre-send check finds its request
    assert stopped.code == 2 and "already have a request" in stopped.stderr, stopped.stderr
    assert set(created(sandbox)) == {"a@example.com"}


def test_where_and_exclude_that_cannot_be_used_send_nothing(work: Path, sandbox: Sandbox) -> None:
    write_rows(work / "contacts.csv", ROWS)
    for extra, said in [
        (("--where", "Country"), "--where 'Country': not understood"),
        (("--where", "Cuntry=FR"), '"Cuntry" is not a column of contacts.csv (closest: "Country")'),
        (("--exclude", "missing.csv"), "missing.csv"),
    ]:
        r = send(work, sandbox, *extra)
        assert r.code == 2 and said in r.stderr, (extra, r.stderr)
    (work / "nobody.csv").write_text("Name,Phone\nX,123\n", encoding="utf-8")
    r = send(work, sandbox, "--exclude", "nobody.csv")
    assert r.code == 2 and "needs a column named email" in r.stderr, r.stderr
    (work / "empty.txt").write_text("", encoding="utf-8")  # a failed export, not "no one"
    r = send(work, sandbox, "--exclude", "empty.txt")
    assert r.code == 2 and "empty.txt: the do-not-contact list (--exclude) is empty" in r.stderr, r.stderr
    assert sandbox.created == []
    # update's --where reads the same grammar, with its own words unchanged.
    assert status_where(" status = pending, due ") == ["pending", "due"]
    with pytest.raises(UsageError) as caught:
        status_where("Country=FR")
    assert caught.value.message == "--where 'Country=FR': not understood"
    assert caught.value.hint == "write --where status=pending (or several: status=pending,due)"


# -- 2. --exclude -----------------------------------------------------------------------


def test_do_not_contact_lists_from_the_option_and_from_the_mapping(work: Path, sandbox: Sandbox) -> None:
    write_rows(work / "contacts.csv", [(f"person{i}@example.com", f"P{i}", "FR") for i in range(5)])
    # A CSV with an email column (another case), and a list of one address a line
    # (a zero-width space the key ignores, a comment, a line that is no address).
    (work / "dnc.csv").write_text("Name,E-mail\nOne,PERSON1@Example.COM\n", encoding="utf-8")
    (work / "dnc.txt").write_text("# unsubscribed\n\u200bperson2@example.com\nnot an address\n",
                                  encoding="utf-8")

    first = send(work, sandbox, "--exclude", "dnc.csv", "--exclude", "dnc.txt")

    assert first.code == 0, first.stderr
    assert set(created(sandbox)) == {"person0@example.com", "person3@example.com", "person4@example.com"}
    by_row = lines(work)
    assert by_row[3]["status"] == "excluded"
    assert by_row[3]["error"] == "not sent: on the do-not-contact list dnc.csv (--exclude)"
    assert by_row[4]["status"] == "excluded" and "dnc.txt" in by_row[4]["error"]
    assert "excluded (--exclude)" in first.stdout
    assert "not email addresses ignored (lines 3)" in first.stderr

    # The mapping names the lists, relative to its own folder: a job that forgets the option
    # still excludes them.
    (work / "conf").mkdir()
    (work / "conf" / "listed.yaml").write_text(MAPPING + "exclude: [../dnc.csv, ../dnc.txt]\n",
                                               encoding="utf-8")
    second = send(work, sandbox, mapping="conf/listed.yaml")
    assert second.code == 0 and "0 POSTs" in second.stdout, second.stderr
    assert [lines(work)[n]["status"] for n in (3, 4)] == ["excluded", "excluded"]

    # Without any list they are sent, once; listed again, a row already sent stays sent.
    assert send(work, sandbox).code == 0
    assert created(sandbox) == {f"person{i}@example.com": 1 for i in range(5)}
    fourth = send(work, sandbox, mapping="conf/listed.yaml")
    assert fourth.code == 0 and "0 POSTs" in fourth.stdout
    assert lines(work)[3]["status"] == "sent" and lines(work)[3]["request_id"]
    assert "2 row(s) on a do-not-contact list already had a request sent by an earlier run (rows 3, 4)" \
        in fourth.stderr


# -- 3. the question before a real send -------------------------------------------------


def on_terminal(work: Path, sandbox: Sandbox, *extra: str, answer: bytes | None = None,
                timeout: float = 60) -> tuple[int, str, str]:
    """``bulksend send`` with standard input and error on a pseudo-terminal:
    its exit code, what the terminal showed, and standard output. ``answer``
    is typed once the question shows."""
    master, slave = pty.openpty()
    env = {**os.environ, "COLLECT_API_KEY": KEY}
    args = ["send", "contacts.csv", "-m", "mapping.yaml", *common(sandbox), *extra]
    with tempfile.TemporaryFile() as out:
        with os.fdopen(slave, "r+b", buffering=0) as tty:
            process = spawn(args, cwd=work, env=env, stdin=tty, stdout=out, stderr=tty)
        shown = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # every end of the terminal closed: the run is over
                    break
                shown += chunk
                if answer is not None and b"send them?" in shown:
                    os.write(master, answer)
                    answer = None
            elif process.poll() is not None:
                break
        code = process.wait(timeout)
        os.close(master)
        out.seek(0)
        return code, shown.decode(), out.read().decode()


@posix_terminal
def test_a_real_send_on_a_terminal_asks_first(work: Path, sandbox: Sandbox) -> None:
    write_rows(work / "contacts.csv", ROWS)

    # A dry run never asks.
    code, shown, _ = on_terminal(work, sandbox, "--dry-run", "--results", "dry.csv")
    assert code == 1 and "send them?" not in shown  # 1: the invalid row

    # No: nothing sent, exit 1, the plan was shown.
    code, shown, out = on_terminal(work, sandbox, "--where", "Country=FR", answer=b"n\n")
    assert code == 1, shown
    assert "about to create up to 3 request(s):" in shown
    assert f"3 in campaign 'Vehicle documents' ({DEMO_CAMPAIGN_ID})" in shown
    assert "rows not sent: 3 filtered (--where Country=FR)" in shown
    assert "not confirmed: nothing was sent" in out
    assert sandbox.created == []

    # Yes: sent.
    code, shown, out = on_terminal(work, sandbox, "--where", "Country=FR", answer=b"y\n")
    assert code == 0, shown + out
    assert len(sandbox.created) == 3

    # --yes: no question; the plan's reasons for the rest were seen above.
    code, shown, out = on_terminal(work, sandbox, "--yes")
    assert code == 1 and "send them?" not in shown, shown  # 1: the invalid row
    assert len(sandbox.created) == 5


def test_the_python_api_never_asks_but_takes_a_confirm_function(tmp_path: Path, sandbox: Sandbox,
                                                                  hook: Hook) -> None:
    rows = [{"Email": "a@example.com", "Name": "A", "Country": "FR"},
            {"Email": "b@example.com", "Name": "B", "Country": "DE"},
            {"Email": "c@example.com", "Name": "C", "Country": "FR"},
            {"Email": "d@example.com", "Name": "D", "Country": "FR"}]
    (tmp_path / "dnc.txt").write_text("C@example.com\n", encoding="utf-8")
    mapping = {"campaignId": {"value": DEMO_CAMPAIGN_ID}, "contact": {"email": "Email", "firstName": "Name"}}
    plans: list[Any] = []

    def no(plan: Any) -> bool:
        plans.append(plan)
        return False

    options: dict[str, Any] = dict(results=tmp_path / "results.csv", api_key=KEY, api_url=sandbox.url,
                                   rate=None, progress=False, where="Country=FR",
                                   exclude=tmp_path / "dnc.txt", notify=hook.url)
    with pytest.raises(bulksend.DeclinedError) as declined:
        bulksend.send(rows, mapping, confirm=no, **options)

    assert declined.value.exit_status == 1 and sandbox.created == []
    plan = plans[0]
    assert (plan.requests, dict(plan.campaigns)) == (2, {DEMO_CAMPAIGN_ID: 2})
    assert plan.names[DEMO_CAMPAIGN_ID] == "Vehicle documents"
    assert dict(plan.skipped) == {"filtered (--where Country=FR)": 1,
                                  f"excluded (do-not-contact list {tmp_path / 'dnc.txt'})": 1}
    assert hook.documents()[-1]["exit_code"] == 1 and "not confirmed" in hook.documents()[-1]["error"]

    run = bulksend.send(rows, mapping, confirm=lambda plan: True, **options)

    assert run.exit_status == 0
    assert run.counts == {"sent": 2, "failed": 0, "invalid": 0, "duplicate": 0, "unknown": 0, "ready": 0,
                          "filtered": 1, "excluded": 1}
    assert set(created(sandbox)) == {"a@example.com", "d@example.com"}
    told = hook.documents()[-1]
    assert told["counts"] == {"sent": 2, "filtered": 1, "excluded": 1} and told["exit_code"] == 0
    # Without a confirm function nothing is asked, and a dry run calls none.
    dry = bulksend.send(rows, mapping, results=tmp_path / "dry.csv", dry_run=True, progress=False,
                        confirm=no)
    assert dry.exit_status == 0 and len(plans) == 1


# -- 4. --notify ------------------------------------------------------------------------


def test_notify_posts_the_summary_however_the_run_ends(work: Path, sandbox: Sandbox, hook: Hook) -> None:
    write_rows(work / "contacts.csv", ROWS[:3])

    done = send(work, sandbox, "--notify", hook.url, "--summary-json", "summary.json")

    assert done.code == 0, done.stderr
    path, headers, body = hook.posts[0]
    assert path == "/ping/secret-token" and headers["Content-Type"] == "application/json"
    assert json.loads(body) == json.loads((work / "summary.json").read_text(encoding="utf-8"))
    assert json.loads(body)["counts"] == {"sent": 3} and KEY.encode() not in body

    # An error before anything is sent (exit 2), and a refused key (exit 3): told too.
    (work / "broken.yaml").write_text(MAPPING.replace("firstName: Name", "firstName: Nom"), encoding="utf-8")
    assert send(work, sandbox, "--notify", hook.url, mapping="broken.yaml").code == 2
    assert send(work, sandbox, "--notify", hook.url, key="wrong-key").code == 3
    mapping_error, refused = hook.documents()[1:]
    assert mapping_error["exit_code"] == 2 and '"Nom" is not in the file' in mapping_error["error"]
    assert refused["exit_code"] == 3 and refused["aborted"]
    assert all(KEY.encode() not in b and b"wrong-key" not in b for _, _, b in hook.posts)

    # A notification that does not get through is a warning: the exit status stands,
    # and the URL's path (a webhook's secret) is never printed.
    hook.answers = [404]
    quiet = send(work, sandbox, "--notify", hook.url)
    assert quiet.code == 0, quiet.stderr
    port = hook.url.split(":")[2].split("/")[0]
    assert f"warning: --notify http://127.0.0.1:{port}/…: the run's summary was not delivered (HTTP 404)" \
        in quiet.stderr
    assert "secret-token" not in quiet.stderr + quiet.stdout
    assert len(hook.posts) == 4  # a 404 is not tried again

    bad = send(work, sandbox, "--notify", "ftp://example.com/x")
    assert bad.code == 2 and "--notify: expected an http:// or https:// URL" in bad.stderr


@posix_signals
def test_notify_after_sigterm_stops_a_run(work: Path, sandbox: Sandbox, hook: Hook) -> None:
    write_rows(work / "contacts.csv", [(f"p{i}@example.com", f"P{i}", "FR") for i in range(40)])
    sandbox.set_faults(latency=0.2)
    args = ["send", "contacts.csv", "-m", "mapping.yaml", *common(sandbox), "--concurrency", "1",
            "--notify", hook.url]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = spawn(args, cwd=work, env={**os.environ, "COLLECT_API_KEY": KEY}, stdout=out, stderr=err)
        deadline = time.monotonic() + 30
        while not sandbox.created and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 130

    told = hook.documents()
    assert len(told) == 1 and told[0]["interrupted"] is True and told[0]["exit_code"] == 130
    assert 0 < told[0]["counts"]["sent"] < 40

    # Stopped while it checks, before any POST (the preflight's GET /team waits): told too.
    sandbox.reset()
    sandbox.set_faults(latency=5)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = spawn(args, cwd=work, env={**os.environ, "COLLECT_API_KEY": KEY}, stdout=out, stderr=err)
        deadline = time.monotonic() + 30
        while not sandbox.stats["max_in_flight"] and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        code = process.wait(30)
        err.seek(0)
        assert code == 130, err.read().decode()
    early = hook.documents()[1]
    assert early["interrupted"] is True and early["exit_code"] == 130 and early["posts"] == 0
    assert early["error"] == "interrupted before the sending started"


def test_a_notification_is_tried_twice_at_most(hook: Hook) -> None:
    document = {"exit_code": 0}
    hook.answers = [503, 200]
    assert post_summary(hook.url, document, retry_after=0) is None
    assert len(hook.posts) == 2

    hook.answers = [500]
    problem = post_summary(hook.url, document, retry_after=0)
    assert problem is not None and "(HTTP 500)" in problem and len(hook.posts) == 4

    # No answer within the timeout: tried again, then a warning.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        started = time.monotonic()
        problem = post_summary(f"http://127.0.0.1:{port}/x", document, timeout=0.2, retry_after=0)
        assert problem is not None and "timed out" in problem
        assert time.monotonic() - started < 5
        silent.settimeout(0)
        accepted = [silent.accept()[0] for _ in range(2)]  # both tries connected
        for connection in accepted:
            connection.close()


@pytest.mark.parametrize("twice", [("--where", "City=Paris", "--where", "Country=BE"),
                                   ("--where", "City=Paris", "--where=Country=BE")])
def test_a_row_selection_given_twice_is_refused(workdir: Path, sandbox: Sandbox,
                                                       twice: tuple[str, ...]) -> None:
    """click keeps the last of two --where silently: rows the person meant to
    leave out went out (found by a tryout). A row selection given twice is a
    usage error, nothing read or sent (update's --where and --rows too)."""
    write_contacts(workdir / "contacts.csv", people(3))
    r = run_cli("send", "contacts.csv", "-m", "mapping.yaml", "--api-url", sandbox.url, *twice, cwd=workdir)
    assert r.code == 2 and f"{twice[0]} is given twice" in r.stderr, r.stderr
    assert sandbox.stats["gets"] == 0 and sandbox.created == []
    assert not any(p.name.endswith(".csv") and p.name != "contacts.csv" for p in workdir.iterdir())


def test_printed_commands_never_repeat_the_webhooks_secret_path(workdir: Path) -> None:
    """The "to go live" and "to resume" lines repeat the command line; a
    --notify URL's path is its secret and shows as scheme and host only there
    too (found by a tryout: it landed in the nightly job's log)."""
    write_contacts(workdir / "contacts.csv", people(3))
    r = run_cli("send", "contacts.csv", "-m", "mapping.yaml", "--sandbox", "--limit", "1",
                "--notify", "http://127.0.0.1:1/SECRET-UUID-1234", cwd=workdir)
    assert "http://127.0.0.1:1/…" in r.stdout, r.stdout
    assert "SECRET-UUID" not in r.stdout + r.stderr
