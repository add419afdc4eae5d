"""Issue 15, parts 3 to 5: a rehearsal (send --sandbox), a readable preview
(validate --preview N), and every problem at once (a missing key beside a
broken mapping; several mapping problems one per line)."""

from __future__ import annotations

import re
import shutil
import sqlite3
from datetime import date, timedelta
from pathlib import Path

from conftest import read_results, run_cli

from bulksend.sandbox import DEMO_CAMPAIGN_ID, DEMO_ITEM_IDS, Sandbox
from bulksend.tasks.demo import write_demo_contacts

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK_URL = re.compile(r"the sandbox at http://127\.0\.0\.1:\d+/v1 holds (\d+) request\(s\)")


def samples(tmp_path: Path) -> None:
    """The samples, their due dates moved to the coming weeks as the demo does."""
    write_demo_contacts(ROOT / "samples" / "contacts.csv", tmp_path / "contacts.csv", date.today())
    shutil.copy(ROOT / "mapping.example.yaml", tmp_path / "mapping.yaml")


def world(results: Path) -> str | None:
    with sqlite3.connect(f"{results}.journal") as db:
        row = db.execute("SELECT value FROM meta WHERE name='world'").fetchone()
    return None if row is None else str(row[0])


def test_sandbox_runs_on_loopback_without_key_or_api_url(tmp_path: Path) -> None:
    """No key, COLLECT_API_URL unset (the default URL would be the real API, which
    this machine cannot reach): the run goes to a sandbox on 127.0.0.1."""
    samples(tmp_path)
    r = run_cli("send", "contacts.csv", "-m", "mapping.yaml", "--sandbox", "--rate", "none",
                "--no-progress", cwd=tmp_path, key=None)
    out = r.stdout + r.stderr
    assert r.code == 1, out  # the samples' five broken rows
    found = LOOPBACK_URL.search(r.stdout)
    assert found is not None and found.group(1) == "26", r.stdout
    assert "api.usecollect.com" not in out
    assert not (tmp_path / "contacts-results.csv").exists()
    _columns, rows = read_results(tmp_path / "contacts-sandbox-results.csv")
    assert sum(row["status"] == "sent" for row in rows) == 26
    assert world(tmp_path / "contacts-sandbox-results.csv") == "sandbox"
    # The closing lines say how to go live, with a command that parses.
    assert "to go live:" in r.stdout
    assert "  bulksend send contacts.csv -m mapping.yaml --rate none --no-progress --limit 5" in r.stdout


def test_sandbox_ignores_collect_api_url_and_a_key(tmp_path: Path, sandbox: Sandbox) -> None:
    """COLLECT_API_URL and COLLECT_API_KEY set (a nightly job's shell): --sandbox
    still never calls them."""
    samples(tmp_path)
    r = run_cli("send", "contacts.csv", "-m", "mapping.yaml", "--sandbox", "--rate", "none",
                "--no-progress", cwd=tmp_path, env={"COLLECT_API_URL": sandbox.url})
    assert r.code == 1, r.stdout + r.stderr
    assert sandbox.stats["gets"] == 0 and sandbox.created == []
    assert LOOPBACK_URL.search(r.stdout) is not None


def test_a_rehearsal_and_real_sends_never_share_a_results_file(tmp_path: Path, sandbox: Sandbox) -> None:
    samples(tmp_path)
    rehearsal = tmp_path / "contacts-sandbox-results.csv"
    r = run_cli("send", "contacts.csv", "-m", "mapping.yaml", "--sandbox", "--rate", "none",
                "--no-progress", cwd=tmp_path, key=None)
    assert r.code == 1, r.stderr
    before = rehearsal.read_bytes()

    # A real send told to use the rehearsal's results: refused, nothing sent.
    real = ["send", "contacts.csv", "-m", "mapping.yaml", "--api-url", sandbox.url, "--rate", "none",
            "--no-progress"]
    r = run_cli(*real, "--results", rehearsal.name, cwd=tmp_path)
    assert r.code == 2, r.stdout + r.stderr
    assert r.stderr.startswith(f"bulksend: error: {rehearsal.name}: holds a sandbox rehearsal"), r.stderr
    # Also when the journal is gone (only the name is left to tell).
    for side in tmp_path.glob(f"{rehearsal.name}.journal*"):
        side.rename(tmp_path / f"kept-{side.name}")
    r = run_cli(*real, "--results", rehearsal.name, cwd=tmp_path)
    assert r.code == 2, r.stdout + r.stderr
    assert not list(tmp_path.glob(f"{rehearsal.name}.journal*"))  # no journal left behind
    assert sandbox.created == [] and sandbox.stats["gets"] == 0
    assert rehearsal.read_bytes() == before

    # A real record, then a rehearsal told to use it (under a sandbox-ish name): refused.
    r = run_cli(*real, "--results", "real.csv", cwd=tmp_path)
    assert r.code == 1, r.stderr
    for name in ("real.csv", "real.csv.journal"):
        shutil.copy(tmp_path / name, tmp_path / name.replace("real", "real-sandbox"))
    r = run_cli("send", "contacts.csv", "-m", "mapping.yaml", "--sandbox", "--results", "real-sandbox.csv",
                cwd=tmp_path, key=None)
    assert r.code == 2 and "holds real sends" in r.stderr, r.stderr
    r = run_cli("send", "contacts.csv", "-m", "mapping.yaml", "--sandbox", "--results", "other.csv",
                cwd=tmp_path, key=None)
    assert r.code == 2 and 'must have "sandbox" in its name' in r.stderr, r.stderr
    r = run_cli("send", "contacts.csv", "-m", "mapping.yaml", "--sandbox", "--api-url", sandbox.url,
                cwd=tmp_path, key=None)
    assert r.code == 2 and "--sandbox cannot go with --api-url" in r.stderr, r.stderr


def test_rehearsal_of_an_init_mapping_stands_in_for_the_campaign(tmp_path: Path) -> None:
    """The first ten minutes: init, then --sandbox. Issue 24: the placeholder
    campaign init writes is refused (exit 2, nothing run) until it is replaced;
    a campaign the sandbox does not hold is then stood in for."""
    (tmp_path / "export.csv").write_text(
        "Courriel;Prénom;Nom;Pièces\nann@example.com;Ann;Lee;Passeport; Justificatif\n"
        "bob@example.com;Bob;Ray;Passeport\n".replace("; Justificatif", "|Justificatif"),
        encoding="utf-8")
    assert run_cli("init", "export.csv", cwd=tmp_path, key=None).code == 0
    r = run_cli("send", "export.csv", "-m", "mapping.yaml", "--sandbox", "--rate", "none", "--no-progress",
                cwd=tmp_path, key=None)
    assert r.code == 2, r.stdout + r.stderr
    assert "campaignId: YOUR_CAMPAIGN_ID is the stand-in bulksend init wrote" in r.stderr
    assert not list(tmp_path.glob("export-sandbox-results.csv*"))

    mine = "abcdefghijkmnopqr"
    assert run_cli("init", "export.csv", "--campaign", mine, "--force", cwd=tmp_path, key=None).code == 0
    r = run_cli("send", "export.csv", "-m", "mapping.yaml", "--sandbox", "--rate", "none", "--no-progress",
                cwd=tmp_path, key=None)
    assert r.code == 0, r.stdout + r.stderr
    assert f"campaign {mine} was stood in for (with the items the rows name: 'Passeport', " \
           "'Justificatif')" in r.stdout


def test_preview_shows_requests_as_sent(tmp_path: Path) -> None:
    samples(tmp_path)
    r = run_cli("validate", "contacts.csv", "-m", "mapping.yaml", "--preview", "2", cwd=tmp_path, key=None)
    assert r.code == 1, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith('read contacts.csv: CSV, encoding UTF-8 (detected), delimiter "," '
                               "(detected), header on row 1")
    first = lines[lines.index("request 1 (row 2)"):lines.index("request 2 (row 3)")]
    assert first[1:6] == [
        f"  campaign    {DEMO_CAMPAIGN_ID}",
        "  contact     Amélie Durand <amelie.durand@example.com>",
        "  company     Garage Durand",
        "  data        brand: Renault · model: Clio",
        f"  items       {DEMO_ITEM_IDS['ID card']}, {DEMO_ITEM_IDS['Proof of address']}",
    ]
    due = date.today() + timedelta(days=1)  # the sample's first due date, moved as the demo does
    assert re.fullmatch(rf"  due date    {due.isoformat()}T23:59:00\+0[12]:00 "
                        rf"\({due:%a} {due.day} {due:%b %Y}, 23:59 at UTC\+0[12]:00\)", first[6]), first
    assert "request 3" not in r.stdout
    assert "26 valid, 4 invalid, 1 duplicate" in r.stdout


def test_a_missing_key_and_a_broken_mapping_are_reported_together(tmp_path: Path, sandbox: Sandbox) -> None:
    samples(tmp_path)
    text = (tmp_path / "mapping.yaml").read_text(encoding="utf-8")
    broken = (text.replace("firstName: First Name", "firstName: Prenom")
              .replace("sendMessage: true", "sendMesage: true"))
    (tmp_path / "mapping.yaml").write_text(broken, encoding="utf-8")
    r = run_cli("send", "contacts.csv", "-m", "mapping.yaml", "--api-url", sandbox.url,
                cwd=tmp_path, key=None)
    assert r.code == 2
    lines = r.stderr.splitlines()
    assert lines[0] == "bulksend: error: mapping.yaml: 2 problems:"
    assert re.fullmatch(r'  line \d+, contact\.firstName: column "Prenom" is not in the file.*', lines[1])
    assert re.fullmatch(r"  line \d+, sendMesage: unknown key \(closest: \"sendMessage\"\).*", lines[2])
    assert "bulksend: error: no API key: set COLLECT_API_KEY or pass --api-key-file FILE" in lines
    assert sandbox.stats["gets"] == 0 and sandbox.created == []
    assert not (tmp_path / "contacts-results.csv").exists()
