"""Unattended runs (issue 6): what cron/systemd and the people who open the
results see. The real CLI runs as a subprocess with standard error redirected
to a file (not a terminal), against the real sandbox on loopback."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

from conftest import KEY, people, read_results, run_cli, write_contacts
from forked import spawn

from bulksend.sandbox import DEMO_CAMPAIGN_ID, ONBOARDING_CAMPAIGN_ID, Sandbox, SandboxConfig, running_sandbox


def run_headless(*args: str, cwd: Path, key: str = KEY, timeout: float = 120) -> tuple[int, str, str]:
    """The CLI as cron runs it: stdout and stderr are files, not a terminal."""
    env = {k: v for k, v in os.environ.items() if k != "COLLECT_API_KEY"}
    env["COLLECT_API_KEY"] = key
    env.pop("COLUMNS", None)
    out_path, err_path = cwd / "cron.out", cwd / "cron.err"
    with open(out_path, "w", encoding="utf-8") as out, open(err_path, "w", encoding="utf-8") as err:
        proc = spawn(list(args), cwd=cwd, env=env, stdout=out, stderr=err)
        try:
            code = proc.wait(timeout)
        finally:
            proc.kill()  # nothing once it has ended
    return (code, out_path.read_text(encoding="utf-8"),
            err_path.read_text(encoding="utf-8"))


def total_posts(sandbox: Sandbox) -> int:
    stats = sandbox.stats
    return int(sum(stats["post_request"].values()) + sum(stats["post_requests"].values()))


# Anything tqdm draws: carriage returns, block characters, "it/s", "| 3/30 [".
TQDM_MARKS = re.compile(r"\r|[\u2580-\u259f]|\bit/s\b|row/s|%\||\| *\d+/\d+ \[")
PROGRESS_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d progress (?P<done>\d+)/(?P<total>\d+) "
    r"(?P<counts>(?:[a-z]+=\d+ )*)rate=(?P<rate>\d+\.\d)/s(?: eta=(?P<eta>\d+)s)?$"
)


def test_line_progress_when_stderr_is_a_file(workdir: Path, sandbox: Sandbox) -> None:
    rows = people(35)
    rows[3]["Email"] = "not-an-email"  # invalid: counted by status in the progress lines
    write_contacts(workdir / "contacts.csv", rows)

    # 34 POSTs at 5/s: about 7 s, so the 5-second progress line appears mid-run.
    code, out, err = run_headless("send", "contacts.csv", "-m", "mapping.yaml", "--results",
                                  "results.csv", "--api-url", sandbox.url, "--rate", "5/s",
                                  cwd=workdir)

    assert code == 1, err  # one invalid row
    assert not TQDM_MARKS.search(err), err
    lines = err.splitlines()
    assert all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d \S", line) for line in lines), err
    assert any(line.endswith(" start rows=35") for line in lines), err
    progress = [m for m in map(PROGRESS_LINE.match, lines) if m]
    assert len(progress) >= 2, err  # at least one periodic line, and the final one
    middle, last = progress[0], progress[-1]
    # A periodic line while rows were still going: counts by status, rate and ETA.
    assert int(middle["done"]) < 35 and middle["total"] == "35", err
    assert middle["eta"] is not None and "sent=" in middle["counts"], err
    assert 2.0 <= float(middle["rate"]) <= 8.0, err
    # The final line: every row, counted by status; no ETA once done.
    assert last["done"] == "35" and last["eta"] is None, err
    counts = dict(pair.split("=") for pair in last["counts"].split())
    assert counts == {"sent": "34", "invalid": "1"}, err
    assert "sent" in out and "results: results.csv" in out
    assert len(sandbox.created) == 34


def test_json_log_every_line_is_an_event(workdir: Path) -> None:
    write_contacts(workdir / "contacts.csv", people(36))
    # The server allows 6/s and the client starts at 12/s: 429s pause all workers;
    # even at the server's full rate the run lasts longer than the 5-second
    # progress period.
    with running_sandbox(SandboxConfig(api_key=KEY, seed=3, rate_limit=6.0, burst=1)) as sb:
        code, _, err = run_headless("send", "contacts.csv", "-m", "mapping.yaml", "--results",
                                      "results.csv", "--api-url", sb.url, "--rate", "12/s",
                                      "--log-format", "json", "--verbose", cwd=workdir)
        # The 429s may land on the look-ups before the first POST: they pass
        # the same gate, and pause every worker just the same.
        assert sb.stats["post_request"]["429"] + sb.stats["get"].get("429", 0) > 0

    assert code == 0, err
    records = []
    for line in err.splitlines():
        record = json.loads(line)  # every line of standard error is one JSON object
        assert isinstance(record, dict) and isinstance(record.get("event"), str), line
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record["time"]), line
        records.append(record)
    events = Counter(r["event"] for r in records)
    assert events["start"] == 1 and events["pause"] >= 1 and events["progress"] >= 2, events
    assert events["row"] == 36  # --verbose: one record per row
    start = next(r for r in records if r["event"] == "start")
    assert start["rows"] == 36
    pause = next(r for r in records if r["event"] == "pause")
    assert pause["seconds"] > 0 and "429" in pause["message"]
    progress = [r for r in records if r["event"] == "progress"]
    assert any(p["done"] < 36 and p["eta_seconds"] is not None for p in progress), progress
    assert progress[-1]["done"] == progress[-1]["total"] == 36
    assert progress[-1]["counts"] == {"sent": 36}
    assert all(isinstance(p["rate"], int | float) for p in progress)
    rows = [r for r in records if r["event"] == "row"]
    assert sorted(r["row"] for r in rows) == list(range(2, 38))
    assert {r["status"] for r in rows} == {"sent"} and all(r["request_id"] for r in rows)


def test_summary_json_matches_the_run(workdir: Path, sandbox: Sandbox) -> None:
    rows = people(12)
    rows[4]["Email"] = "broken@"  # invalid
    rows[8]["Email"] = rows[1]["Email"]  # duplicate
    write_contacts(workdir / "contacts.csv", rows)

    (workdir / "out").mkdir()
    code, _, err = run_headless("send", "contacts.csv", "-m", "mapping.yaml", "--results",
                                  "out/results.csv", "--api-url", sandbox.url, "--rate", "none",
                                  "--summary-json", "summary.json", cwd=workdir)

    assert code == 1, err
    summary = json.loads((workdir / "summary.json").read_text(encoding="utf-8"))
    assert summary["exit_code"] == code
    assert summary["results"] == "out/results.csv"
    assert summary["rows"] == 12
    assert summary["counts"] == {"sent": 10, "invalid": 1, "duplicate": 1}
    assert summary["posts"] == 10
    assert isinstance(summary["elapsed_seconds"], float) and 0 < summary["elapsed_seconds"] < 60
    assert summary["interrupted"] is False and summary["aborted"] is None
    _, results = read_results(workdir / "out" / "results.csv")
    assert Counter(r["status"] for r in results) == Counter(summary["counts"])

    # A rerun has nothing left to send: exit 1 still (the broken rows), 0 POSTs.
    code, _, err = run_headless("send", "contacts.csv", "-m", "mapping.yaml", "--results",
                                "out/results.csv", "--api-url", sandbox.url,
                                "--summary-json", "summary.json", cwd=workdir)
    summary = json.loads((workdir / "summary.json").read_text(encoding="utf-8"))
    assert code == summary["exit_code"] == 1 and summary["posts"] == 0, err


def test_summary_json_when_the_run_cannot_start(workdir: Path, sandbox: Sandbox) -> None:
    """A nightly job's monitor reads the summary whatever happened: the exit code
    and the results file it concerns must be there when the run aborts too."""
    write_contacts(workdir / "contacts.csv", people(3))

    code, _, err = run_headless("send", "contacts.csv", "-m", "mapping.yaml", "--results",
                                "results.csv", "--api-url", sandbox.url,
                                "--summary-json", "summary.json", cwd=workdir, key="wrong-key")

    assert code == 3, err
    summary = json.loads((workdir / "summary.json").read_text(encoding="utf-8"))
    assert summary["exit_code"] == 3
    assert "refused" in summary["error"]
    assert summary.get("results") == "results.csv", summary


def test_preflight_wrong_key_exits_3_before_any_post(workdir: Path, sandbox: Sandbox) -> None:
    write_contacts(workdir / "contacts.csv", people(20))

    code, out, err = run_headless("send", "contacts.csv", "-m", "mapping.yaml", "--results",
                                  "results.csv", "--api-url", sandbox.url, cwd=workdir,
                                  key="not-the-key")

    assert code == 3, err
    assert total_posts(sandbox) == 0
    stats = sandbox.stats
    assert stats["get"].get("401", 0) >= 1  # GET /team refused the key
    assert "refused" in err and "nothing was sent" in err
    assert not (workdir / "results.csv").exists() or all(
        r["status"] != "sent" for r in read_results(workdir / "results.csv")[1])
    assert "not-the-key" not in out + err


def test_preflight_unknown_campaign_exits_2_naming_rows(workdir: Path, sandbox: Sandbox) -> None:
    (workdir / "mapping.yaml").write_text(
        "campaignId: Campaign\ncontact: {email: Email, firstName: First Name}\n", encoding="utf-8")
    lines = ["Campaign,Email,First Name"]
    for i in range(8):
        campaign = "NoSuchCampaign123" if i in (2, 5) else (DEMO_CAMPAIGN_ID, ONBOARDING_CAMPAIGN_ID)[i % 2]
        lines.append(f"{campaign},p{i}@example.com,P{i}")
    (workdir / "contacts.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    code, _, err = run_headless("send", "contacts.csv", "-m", "mapping.yaml", "--results",
                                  "results.csv", "--api-url", sandbox.url, cwd=workdir)

    assert code == 2, err
    assert "NoSuchCampaign123" in err and "rows 4, 7" in err, err
    assert "nothing was sent" in err
    assert total_posts(sandbox) == 0  # the valid campaigns' rows are not sent either
    assert sandbox.created == []


def test_report_counts_reasons_examples_and_rerun(workdir: Path) -> None:
    rows = people(30)
    for i in (3, 7, 11, 15):
        rows[i]["Email"] = f"bad{i}@nowhere"  # invalid email
    rows[20]["Email"] = rows[0]["Email"]  # duplicates of two different contacts
    rows[21]["Email"] = rows[1]["Email"]
    write_contacts(workdir / "contacts.csv", rows)
    # Every POST is refused with 500/503 and there is one attempt per row: all failed.
    with running_sandbox(SandboxConfig(api_key=KEY, seed=5, fail_rate=1.0)) as sb:
        code, _, err = run_headless("send", "contacts.csv", "-m", "mapping.yaml", "--results",
                                    "results.csv", "--api-url", sb.url, "--rate", "none",
                                    "--max-attempts", "1", cwd=workdir)
    assert code == 1, err

    r = run_cli("report", "results.csv", cwd=workdir)

    assert r.code == 0, r.stderr
    text = r.stdout
    assert text.startswith("results.csv: 30 rows"), text
    counts = dict(re.findall(r"^  (sent|failed|unknown|invalid|duplicate|ready) +(\d+)$", text, re.M))
    assert counts == {"failed": "24", "invalid": "4", "duplicate": "2"}, text
    reasons = re.findall(r"^ +(\d+) (\w+): (.*)  \(rows (.*)\)$", text, re.M)
    by_status: dict[str, list[tuple[int, str, str]]] = {}
    for n, status, reason, shown in reasons:
        by_status.setdefault(status, []).append((int(n), reason, shown))
    # The four bad emails are one reason, with the count and the first 3 rows.
    assert by_status["invalid"] == [(4, 'column "Email": "…" is not an email address', "5, 9, 13, …")]
    # Failed rows group by HTTP status and message, counts adding up.
    assert sum(n for n, _, _ in by_status["failed"]) == 24
    assert all(reason.startswith(("HTTP 500", "HTTP 503")) for _, reason, _ in by_status["failed"])
    # The two duplicate rows share one reason, whatever contact each repeats.
    assert [(n, shown) for n, _, shown in by_status["duplicate"]] == [(2, "22, 23")], text
    # Issue 27: the command names the files the send used, not placeholders.
    assert "bulksend send contacts.csv -m mapping.yaml --results results.csv\n" in text
    assert "bulksend send contacts.csv -m mapping.yaml --results results.csv --only-failed" in text
    assert "invalid and duplicate rows are never sent" in text

    r = run_cli("report", "results.csv", "--examples", "1", cwd=workdir)
    assert "(rows 5, …)" in r.stdout
