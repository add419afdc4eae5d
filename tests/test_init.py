"""Issue 15, part 1: `bulksend init` writes a mapping for the user's own file.

Real CLI, real sandbox: the mapping init writes must validate on its file and,
sent, must put the email, the names and the company where Collect wants them.
"""

from __future__ import annotations

import csv
import shutil
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

from bulksend.sandbox import DEMO_CAMPAIGN_ID, DEMO_ITEM_IDS, Sandbox
from bulksend.tasks.demo import write_demo_contacts

ROOT = Path(__file__).resolve().parent.parent
DUE = date.today() + timedelta(days=20)

# language -> (headers: email, first, last, company, due, extra), delimiter, encoding, due format
HEADER_SETS = {
    "en": (("E-mail Address", "First Name", "Surname", "Company Name", "Due Date", "Customer number"),
           ",", "utf-8", "%m/%d/%Y"),
    "fr": (("Adresse e-mail", "Prénom", "Nom", "Société", "Date d'échéance", "Numéro client"),
           ";", "cp1252", "%d/%m/%Y"),
    "de": (("E-Mail", "Vorname", "Nachname", "Firma", "Fälligkeitsdatum", "Kundennummer"),
           ";", "utf-8-sig", "%d.%m.%Y"),
    "es": (("Correo electrónico", "Nombre", "Apellidos", "Empresa", "Fecha límite", "Número de cliente"),
           ",", "utf-8", "%d/%m/%Y"),
    "it": (("Indirizzo email", "Nome", "Cognome", "Azienda", "Scadenza", "Codice cliente"),
           ";", "utf-8", "%d/%m/%Y"),
}
PEOPLE = [
    ("ana.garcia@example.com", "Ana", "García", "Garcia SL", 13, "C-001"),
    ("jean.dupont@example.com", "Jean", "Dupont", "", 25, "C-002"),
    ("Max.Muster@Example.com", "Max", "Müller", "Muster GmbH", 3, "007"),
]


def write_people(path: Path, language: str) -> None:
    headers, delimiter, encoding, due_format = HEADER_SETS[language]
    with open(path, "w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(headers)
        for email, first, last, company, day, number in PEOPLE:
            due = (DUE + timedelta(days=day)).strftime(due_format)
            writer.writerow([email, first, last, company, due, number])


def sent_bodies(sandbox: Sandbox) -> dict[str, dict[str, object]]:
    return {str(record["received"]["contact"]["email"]): record["received"] for record in sandbox.created}


@pytest.mark.parametrize("language", list(HEADER_SETS))
def test_init_maps_each_language_and_the_mapping_sends(language: str, tmp_path: Path,
                                                       sandbox: Sandbox) -> None:
    write_people(tmp_path / "export.csv", language)
    r = run_cli("init", "export.csv", "--campaign", DEMO_CAMPAIGN_ID, "--api-url", sandbox.url,
                cwd=tmp_path)
    assert r.code == 0, r.stdout + r.stderr
    text = (tmp_path / "mapping.yaml").read_text(encoding="utf-8")
    headers = HEADER_SETS[language][0]
    spec = yaml.safe_load(text)
    assert spec["contact"]["email"] == headers[0]
    assert spec["contact"]["firstName"]["column"] == headers[1]
    assert spec["contact"]["lastName"]["column"] == headers[2]
    assert spec["contact"]["company"]["column"] == headers[3]
    assert spec["dueDate"]["column"] == headers[4]
    assert list(spec["contact"]["data"].values()) == [{"column": headers[5], "required": False}]

    r = run_cli("validate", "export.csv", "-m", "mapping.yaml", cwd=tmp_path, key=None)
    assert r.code == 0, r.stdout + r.stderr
    r = run_cli("send", "export.csv", "-m", "mapping.yaml", "--api-url", sandbox.url, "--rate", "none",
                "--no-progress", cwd=tmp_path)
    assert r.code == 0, r.stdout + r.stderr

    bodies = sent_bodies(sandbox)
    assert sorted(bodies) == sorted(p[0] for p in PEOPLE)  # the email as written (issue 10 case 4)
    for email, first, last, company, day, number in PEOPLE:
        contact = bodies[email]["contact"]
        assert isinstance(contact, dict)
        assert (contact["firstName"], contact["lastName"]) == (first, last)
        assert contact.get("company") == (company or None)  # an empty company is left out
        assert list(contact["data"].values()) == [number]  # "007" stays "007"
        assert str(bodies[email]["dueDate"]).startswith((DUE + timedelta(days=day)).isoformat())
        assert bodies[email]["campaignId"] == DEMO_CAMPAIGN_ID


def test_init_on_the_sample_file(tmp_path: Path, sandbox: Sandbox) -> None:
    # The sample, its due dates moved to the coming weeks as the demo does.
    write_demo_contacts(ROOT / "samples" / "contacts.csv", tmp_path / "contacts.csv", date.today())
    r = run_cli("init", "contacts.csv", cwd=tmp_path, key=None)
    assert r.code == 0, r.stdout + r.stderr
    assert "bulksend send contacts.csv -m mapping.yaml --sandbox" in r.stdout
    spec = yaml.safe_load((tmp_path / "mapping.yaml").read_text(encoding="utf-8"))
    assert spec["contact"]["email"] == "Email"
    assert spec["contact"]["company"]["column"] == "Company"
    # Issue 24: a due-date or items column most rows fill is required (21 and 31 of 31 rows).
    assert spec["items"] == {"column": "Documents", "split": ";", "required": True}
    assert spec["dueDate"] == {"column": "Due", "format": "%d/%m/%Y", "required": True}
    pairs = (("brand", "Brand"), ("model", "Model"), ("phone", "Phone"))
    assert spec["contact"]["data"] == {k: {"column": c, "required": False} for k, c in pairs}
    assert spec["key"] == ["campaignId", "contact.email"]

    # Issue 24: the placeholder campaign is refused until it is replaced.
    r = run_cli("validate", "contacts.csv", "-m", "mapping.yaml", cwd=tmp_path, key=None)
    assert r.code == 2, r.stdout + r.stderr
    assert "campaignId: YOUR_CAMPAIGN_ID is the stand-in bulksend init wrote" in r.stderr

    # With the campaign in place of the placeholder, it validates: the sample's
    # broken rows are row problems, not mapping problems (and the rows without
    # documents are flagged: the column is required).
    text = (tmp_path / "mapping.yaml").read_text(encoding="utf-8")
    text = text.replace("YOUR_CAMPAIGN_ID", DEMO_CAMPAIGN_ID)
    (tmp_path / "mapping.yaml").write_text(text, encoding="utf-8")
    r = run_cli("validate", "contacts.csv", "-m", "mapping.yaml", cwd=tmp_path, key=None)
    assert r.code == 1, r.stdout + r.stderr
    assert "21 valid, 10 invalid, 0 duplicate" in r.stdout  # 26, 4, 1 before: 10 rows have no documents
    r = run_cli("send", "contacts.csv", "-m", "mapping.yaml", "--api-url", sandbox.url, "--rate", "none",
                "--no-progress", cwd=tmp_path)
    assert r.code == 1, r.stdout + r.stderr  # the sample's five broken rows
    amelie = sent_bodies(sandbox)["amelie.durand@example.com"]
    assert amelie["contact"] == {"email": "amelie.durand@example.com", "firstName": "Amélie",
                                 "lastName": "Durand", "company": "Garage Durand",
                                 "data": {"brand": "Renault", "model": "Clio", "phone": "0643464097"}}
    assert amelie["items"] == [DEMO_ITEM_IDS["ID card"], DEMO_ITEM_IDS["Proof of address"]]


def test_init_never_overwrites_without_force(tmp_path: Path) -> None:
    shutil.copy(ROOT / "samples" / "contacts.csv", tmp_path / "contacts.csv")
    (tmp_path / "mapping.yaml").write_text("mine\n", encoding="utf-8")
    r = run_cli("init", "contacts.csv", cwd=tmp_path, key=None)
    assert r.code == 2
    assert r.stderr.startswith("bulksend: error: mapping.yaml: exists"), r.stderr
    assert "--force" in r.stderr
    assert (tmp_path / "mapping.yaml").read_text(encoding="utf-8") == "mine\n"

    r = run_cli("init", "contacts.csv", "-o", "contacts.csv", "--force", cwd=tmp_path, key=None)
    assert r.code == 2 and "is the contacts file itself" in r.stderr, r.stderr
    assert (tmp_path / "contacts.csv").read_bytes() == (ROOT / "samples" / "contacts.csv").read_bytes()

    r = run_cli("init", "contacts.csv", "--force", cwd=tmp_path, key=None)
    assert r.code == 0, r.stderr
    assert "campaignId:" in (tmp_path / "mapping.yaml").read_text(encoding="utf-8")
    assert list(tmp_path.glob(".mapping.yaml.*")) == []  # no temporary file left


def test_init_lists_the_campaigns_elements_by_name(tmp_path: Path, sandbox: Sandbox) -> None:
    shutil.copy(ROOT / "samples" / "contacts.csv", tmp_path / "contacts.csv")
    r = run_cli("init", "contacts.csv", "--campaign", DEMO_CAMPAIGN_ID, "--api-url", sandbox.url,
                cwd=tmp_path)
    assert r.code == 0, r.stdout + r.stderr
    text = (tmp_path / "mapping.yaml").read_text(encoding="utf-8")
    for name, element_id in DEMO_ITEM_IDS.items():
        assert f'"{name}"  ({element_id})' in text
    assert '"Vehicle documents"' in text
    assert f"campaignId: {{value: {DEMO_CAMPAIGN_ID}}}" in text
    assert sandbox.stats["get"] == {"200": 1}  # one GET /campaigns/{id}; nothing else

    # Without a key: the campaign is written, its elements are not listed, and nothing is asked.
    r = run_cli("init", "contacts.csv", "--campaign", DEMO_CAMPAIGN_ID, "--api-url", sandbox.url,
                "-o", "nokey.yaml", cwd=tmp_path, key=None)
    assert r.code == 0, r.stderr
    assert "not listed: no API key" in (tmp_path / "nokey.yaml").read_text(encoding="utf-8")
    assert sandbox.stats["gets"] == 1

    # An unknown campaign: said, and nothing written.
    r = run_cli("init", "contacts.csv", "--campaign", "nope", "--api-url", sandbox.url, "-o", "x.yaml",
                cwd=tmp_path)
    assert r.code == 2 and "campaign 'nope' does not exist" in r.stderr, r.stderr
    assert not (tmp_path / "x.yaml").exists()


def test_plain_email_and_name_file_and_email_found_by_content(tmp_path: Path) -> None:
    """The issue's first case (Email, Name) and an export whose email column has an odd name."""
    (tmp_path / "plain.csv").write_text("Email,Name\nann@example.com,Ann Lee\nbob@example.com,Bob Ray\n",
                                        encoding="utf-8")
    r = run_cli("init", "plain.csv", "--campaign", DEMO_CAMPAIGN_ID, cwd=tmp_path, key=None)
    assert r.code == 0, r.stderr
    spec = yaml.safe_load((tmp_path / "mapping.yaml").read_text(encoding="utf-8"))
    assert spec["contact"]["email"] == "Email"
    assert spec["contact"]["firstName"]["column"] == "Name"  # a whole name, where Collect greets
    r = run_cli("validate", "plain.csv", "-m", "mapping.yaml", cwd=tmp_path, key=None)
    assert r.code == 0, r.stdout + r.stderr

    (tmp_path / "odd.csv").write_text("Kontakt;Vorname;Name;Geburtstag\nann@example.com;Ann;Lee;03.04.1990\n"
                                      "bob@example.com;Bob;Ray;\n", encoding="utf-8")
    r = run_cli("init", "odd.csv", "-o", "odd.yaml", "--campaign", DEMO_CAMPAIGN_ID, cwd=tmp_path, key=None)
    assert r.code == 0, r.stderr
    spec = yaml.safe_load((tmp_path / "odd.yaml").read_text(encoding="utf-8"))
    assert spec["contact"]["email"] == "Kontakt"  # by content
    assert spec["contact"]["lastName"]["column"] == "Name"  # German Name beside Vorname: the surname
    assert spec["contact"]["data"] == {"geburtstag": {"column": "Geburtstag", "type": "date",
                                                      "format": "%d.%m.%Y", "required": False}}
    r = run_cli("validate", "odd.csv", "-m", "odd.yaml", cwd=tmp_path, key=None)
    assert r.code == 0, r.stdout + r.stderr


def test_init_without_an_email_column_says_so(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("Name,City\nAnn,Paris\n", encoding="utf-8")
    r = run_cli("init", "x.csv", cwd=tmp_path, key=None)
    assert r.code == 2
    assert r.stderr.startswith("bulksend: error: x.csv: no column holds email addresses"), r.stderr
    assert not (tmp_path / "mapping.yaml").exists()


@pytest.mark.parametrize("header", ["yes", "a, b", "#tag", "null", "Prix (€)", "ÉTAT", "x: y"])
def test_odd_headers_stay_column_names(header: str, tmp_path: Path) -> None:
    """Headers YAML would read as something else stay columns in the mapping written."""
    with open(tmp_path / "c.csv", "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([["Email", header], ["ann@example.com", "v"]])
    r = run_cli("init", "c.csv", "--campaign", DEMO_CAMPAIGN_ID, cwd=tmp_path, key=None)
    assert r.code == 0, r.stderr
    spec = yaml.safe_load((tmp_path / "mapping.yaml").read_text(encoding="utf-8"))
    assert [v["column"] for v in spec["contact"]["data"].values()] == [header]
    r = run_cli("validate", "c.csv", "-m", "mapping.yaml", cwd=tmp_path, key=None)
    assert r.code == 0, r.stdout + r.stderr
