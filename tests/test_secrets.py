"""What must never leak or run (issue 6): the API key in any file or output,
a key on the command line, plain http to a remote host, and spreadsheet
formulas in the results CSV that people open in Excel."""

from __future__ import annotations

import base64
import csv
import json
import os
import time
from pathlib import Path

import pytest
from conftest import MAPPING, people, read_results, run_cli, write_contacts
from forked import spawn

from bulksend.sandbox import DEMO_CAMPAIGN_ID, SandboxConfig, running_sandbox

SECRET = "sk_live_ZZtopSECRET_4242"
WRONG = "sk_live_WRONGkey_7777"


def needles(key: str) -> dict[str, bytes]:
    """Every form a key could leak in: as written, its distinctive middle, and
    the HTTP Basic credentials (empty user name) in base64, padded or not."""
    basic = base64.b64encode(f":{key}".encode()).decode()
    return {
        "key": key.encode(),
        "key middle": key[8:-5].encode(),
        "Basic token": basic.rstrip("=").encode(),
        "base64 of the key": base64.b64encode(key.encode()).decode().rstrip("=").encode(),
        "key in UTF-16": key.encode("utf-16-le"),
    }


def run_watched(args: list[str], cwd: Path, env: dict[str, str],
                seen: dict[str, list[bytes]]) -> tuple[int, str, str]:
    """Run the CLI; while it runs, copy every file in ``cwd`` every 50 ms, so
    files that exist only during the run (the journal's -wal, the .tmp rewrite
    of the results) are checked too."""
    out_path, err_path = cwd.parent / "logs" / "out.txt", cwd.parent / "logs" / "err.txt"
    out_path.parent.mkdir(exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as out, open(err_path, "w", encoding="utf-8") as err:
        proc = spawn(args, cwd=cwd, env=env, stdout=out, stderr=err)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            snapshot(cwd, seen)
            time.sleep(0.05)
        code = proc.wait(timeout=5)
    snapshot(cwd, seen)
    stdout, stderr = out_path.read_text(encoding="utf-8"), err_path.read_text(encoding="utf-8")
    seen.setdefault("<stdout>", []).append(stdout.encode())
    seen.setdefault("<stderr>", []).append(stderr.encode())
    return code, stdout, stderr


def snapshot(folder: Path, seen: dict[str, list[bytes]]) -> None:
    for path in folder.rglob("*"):
        try:
            data = path.read_bytes()
        except (OSError, IsADirectoryError):
            continue  # vanished between listing and reading
        seen.setdefault(path.name, []).append(data)


def leaks(seen: dict[str, list[bytes]], key: str) -> list[str]:
    found = []
    for name, versions in seen.items():
        for label, needle in needles(key).items():
            if any(needle in data for data in versions):
                found.append(f"{label} in {name}")
    return found


def test_the_leak_check_finds_every_form() -> None:
    basic = "Basic " + base64.b64encode(f":{SECRET}".encode()).decode()
    for text in (f"key={SECRET}", f"Authorization: {basic}", f"...{SECRET[5:-3]}...",
                 base64.b64encode(SECRET.encode()).decode()):
        assert leaks({"f": [text.encode()]}, SECRET), text
    assert leaks({"f": [SECRET.encode("utf-16-le")]}, SECRET)
    assert leaks({"f": [b"sk_live_ and nothing else"]}, SECRET) == []


def env_with(key: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "COLLECT_API_KEY"}
    if key is not None:
        env["COLLECT_API_KEY"] = key
    return env


def test_the_key_is_never_written_or_printed(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "mapping.yaml").write_text(MAPPING, encoding="utf-8")
    keyfile = tmp_path / "secrets" / "collect.key"
    keyfile.parent.mkdir()
    keyfile.write_text(SECRET + "\n", encoding="utf-8")
    seen: dict[str, list[bytes]] = {}
    base = ["contacts.csv", "-m", "mapping.yaml", "--results", "results.csv", "--rate", "none",
            "--max-attempts", "10"]

    config = SandboxConfig(api_key=SECRET, seed=11, fail_rate=0.3, drop_rate=0.05,
                           ambiguous_rate=0.1, latency=0.01)
    with running_sandbox(config) as sb:
        base += ["--api-url", sb.url]
        # 1. Retries, dropped connections and look-ups, every event logged as JSON.
        write_contacts(run / "contacts.csv", people(40))
        code, out, err = run_watched(["send", *base, "--verbose", "--log-format", "json",
                                      "--summary-json", "s.json"], run, env_with(SECRET), seen)
        assert code == 0, err
        assert "results: results.csv" in out
        stats = sb.stats["post_request"]
        assert stats["500"] + stats["503"] > 0 and stats["ambiguous"] > 0 and stats["dropped"] > 0
        assert '"event": "retry"' in err and sb.stats["gets"] > 2  # look-ups happened

        # 2. The same, with text lines (--verbose shows every retry and look-up).
        write_contacts(run / "contacts.csv", people(60))
        code, out, err = run_watched(["send", *base, "--verbose", "--summary-json", "s.json"],
                                     run, env_with(SECRET), seen)
        assert code == 0, err
        assert " retry row " in err and "results: results.csv" in out

        # 3. A wrong key: the run stops (exit 3) and neither key shows anywhere.
        write_contacts(run / "contacts.csv", people(70))
        code, out, err = run_watched(["send", *base, "--verbose", "--log-format", "json",
                                      "--summary-json", "s.json"], run, env_with(WRONG), seen)
        assert code == 3, err
        assert "refused" in err and out == ""  # stopped before the run began
        assert json.loads((run / "s.json").read_text(encoding="utf-8"))["exit_code"] == 3

        # 4. The key from --api-key-file, with no COLLECT_API_KEY at all.
        code, _, err = run_watched(["send", *base, "--verbose", "--api-key-file", str(keyfile),
                                    "--summary-json", "s.json"], run, env_with(None), seen)
        assert code == 0, err
        assert len(sb.created) == 70

        # 5. reconcile and report read the same files with the key in hand.
        code, _, err = run_watched(["reconcile", "results.csv", "--api-url", sb.url], run,
                                   env_with(SECRET), seen)
        assert code == 0, err
        code, _, err = run_watched(["report", "results.csv"], run, env_with(SECRET), seen)
        assert code == 0, err

    # Every file the runs wrote was looked at, including the journal's WAL.
    names = set(seen)
    assert {"results.csv", "results.csv.journal", "results.csv.lock", "s.json",
            "<stdout>", "<stderr>"} <= names, names
    assert "results.csv.journal-wal" in names, names
    assert leaks(seen, SECRET) == []
    assert leaks(seen, WRONG) == []


@pytest.mark.parametrize("form", [["--api-key", SECRET], [f"--api-key={SECRET}"]])
@pytest.mark.parametrize("command", ["send", "reconcile"])
def test_a_key_on_the_command_line_is_refused(workdir: Path, form: list[str], command: str) -> None:
    write_contacts(workdir / "contacts.csv", people(2))
    target = ["contacts.csv", "-m", "mapping.yaml"] if command == "send" else ["results.csv"]

    r = run_cli(command, *target, *form, "--api-url", "http://127.0.0.1:9/v1", cwd=workdir, key=None)

    assert r.code == 2
    assert "--api-key is refused" in r.stderr
    assert "COLLECT_API_KEY" in r.stderr and "--api-key-file" in r.stderr  # the way to do it
    assert all(needle.decode("utf-8", "replace") not in r.stdout + r.stderr
               for needle in needles(SECRET).values())
    assert sorted(p.name for p in workdir.iterdir()) == ["contacts.csv", "mapping.yaml"]


@pytest.mark.parametrize("url", ["http://example.com/v1", "http://127.0.0.1.example.com/v1",
                                 "http://localhost.example.com/v1", "ftp://127.0.0.1/v1"])
def test_plain_http_to_a_remote_host_is_refused_before_anything(workdir: Path, url: str) -> None:
    write_contacts(workdir / "contacts.csv", people(3))

    r = run_cli("send", "contacts.csv", "-m", "mapping.yaml", "--api-url", url, cwd=workdir, key=SECRET)

    assert r.code == 2, r.stderr
    assert r.stderr.startswith(f"bulksend: error: --api-url {url!r}"), r.stderr
    assert "https://" in r.stderr  # the hint
    assert SECRET not in r.stdout + r.stderr
    # Refused before any file was opened for the run, let alone a request sent.
    assert sorted(p.name for p in workdir.iterdir()) == ["contacts.csv", "mapping.yaml"]
    r = run_cli("send", "contacts.csv", "-m", "mapping.yaml", cwd=workdir, key=SECRET,
                env={"COLLECT_API_URL": url})
    assert r.code == 2 and "--api-url" in r.stderr


FORMULA_MAPPING = f"""\
campaignId: {{value: {DEMO_CAMPAIGN_ID}}}
contact:
  email: Email
  firstName: First Name
  lastName: Last Name
  company: {{column: Company, required: false}}
  data:
    note: {{column: Note, required: false}}
"""

HYPERLINK = '=HYPERLINK("http://x","y")'


def test_formulas_are_sent_as_written_but_neutralised_in_the_results(workdir: Path) -> None:
    (workdir / "mapping.yaml").write_text(FORMULA_MAPPING, encoding="utf-8")
    rows = [
        ["Email", "First Name", "Last Name", "Company", "Note"],
        ["eve@example.com", "+33 6 12 34 56 78", HYPERLINK, "@SUM(A1:A9)", "-2+3"],
        ["amelie@example.com", "Amélie", "Müller-Šťastná", "Garçon & Fils", "déjà vu"],
        ["plain@example.com", "Plain", "O'Brien", "", "a=b"],
    ]
    with open(workdir / "contacts.csv", "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)

    with running_sandbox(SandboxConfig(api_key=SECRET, seed=2)) as sb:
        r = run_cli("send", "contacts.csv", "-m", "mapping.yaml", "--results", "results.csv",
                    "--api-url", sb.url, cwd=workdir, key=SECRET)
        assert r.code == 0, r.stderr
        received = {c["email"]: c["received"]["contact"] for c in sb.created}

    # The API receives the cells exactly as the sheet holds them.
    assert received["eve@example.com"] == {
        "email": "eve@example.com", "firstName": "+33 6 12 34 56 78", "lastName": HYPERLINK,
        "company": "@SUM(A1:A9)", "data": {"note": "-2+3"},
    }
    assert received["amelie@example.com"]["lastName"] == "Müller-Šťastná"

    raw = (workdir / "results.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Excel shows the accents
    assert "Müller-Šťastná".encode() in raw and "déjà vu".encode() in raw
    _, results = read_results(workdir / "results.csv")
    by_email = {x["Email"]: x for x in results}
    eve = by_email["eve@example.com"]
    # A spreadsheet shows these as text, never runs them.
    assert eve["Last Name"] == "'" + HYPERLINK
    assert eve["First Name"] == "'+33 6 12 34 56 78"
    assert eve["Company"] == "'@SUM(A1:A9)"
    assert eve["Note"] == "'-2+3"
    assert eve["status"] == "sent"
    for row in results:  # no cell of the file starts a formula
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row.values()), row
    assert by_email["amelie@example.com"]["Last Name"] == "Müller-Šťastná"
    assert by_email["plain@example.com"]["Last Name"] == "O'Brien"
    assert by_email["plain@example.com"]["Note"] == "a=b"

    # bulksend report reads the file back with the original values.
    r = run_cli("report", "results.csv", cwd=workdir)
    assert r.code == 0 and "sent" in r.stdout
