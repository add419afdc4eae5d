"""Issue 15, part 2: items named by their element's name, in cells and in the mapping.

The preflight reads GET /campaigns/{id}; a name reaches the server as its
element's id; an unknown or ambiguous name stops the run before anything is
sent, naming the campaign's elements.
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import KEY, read_results, run_cli

from bulksend.mapping import parse_mapping
from bulksend.mapping.items import Catalogue, ItemProblem
from bulksend.reading.table import Row
from bulksend.sandbox import DEMO_CAMPAIGN_ID, DEMO_ITEM_IDS, Sandbox, SandboxConfig, running_sandbox

MAPPING = f"""\
campaignId: {{value: {DEMO_CAMPAIGN_ID}}}
contact:
  email: Email
items: {{column: Documents, split: ";", required: false}}
"""


def write(tmp_path: Path, rows: list[tuple[str, str]], mapping: str = MAPPING) -> None:
    lines = ["Email,Documents", *(f"{email},{docs}" for email, docs in rows)]
    (tmp_path / "contacts.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "mapping.yaml").write_text(mapping, encoding="utf-8")


def send(tmp_path: Path, sandbox: Sandbox, *extra: str) -> tuple[int, str]:
    r = run_cli("send", "contacts.csv", "-m", "mapping.yaml", "--api-url", sandbox.url, "--rate", "none",
                "--no-progress", *extra, cwd=tmp_path)
    return r.code, r.stdout + r.stderr


def test_names_in_cells_reach_the_server_as_ids(tmp_path: Path, sandbox: Sandbox) -> None:
    write(tmp_path, [
        ("ann@example.com", "ID card; Proof of address"),
        ("bob@example.com", f"  driving LICENCE ;{DEMO_ITEM_IDS['ID card']}"),  # case, spaces, an id beside
        ("cid@example.com", ""),  # the whole campaign
    ])
    code, out = send(tmp_path, sandbox)
    assert code == 0, out
    items = {r["received"]["contact"]["email"]: r["received"].get("items") for r in sandbox.created}
    assert items == {
        "ann@example.com": [DEMO_ITEM_IDS["ID card"], DEMO_ITEM_IDS["Proof of address"]],
        "bob@example.com": [DEMO_ITEM_IDS["Driving licence"], DEMO_ITEM_IDS["ID card"]],
        "cid@example.com": None,
    }


def test_names_in_the_mapping_reach_the_server_as_ids(tmp_path: Path, sandbox: Sandbox) -> None:
    mapping = MAPPING.replace('items: {column: Documents, split: ";", required: false}',
                              'items: {value: ["Registration certificate", "Vehicle details"]}')
    write(tmp_path, [("ann@example.com", "")], mapping)
    code, out = send(tmp_path, sandbox)
    assert code == 0, out
    assert [r["received"]["items"] for r in sandbox.created] == [
        [DEMO_ITEM_IDS["Registration certificate"], DEMO_ITEM_IDS["Vehicle details"]]]


def test_an_unknown_name_stops_the_run_naming_the_choices(tmp_path: Path, sandbox: Sandbox) -> None:
    write(tmp_path, [("ann@example.com", "ID card"), ("bob@example.com", "Pasport; ID card"),
                     ("cid@example.com", "Pasport")])
    code, out = send(tmp_path, sandbox)
    assert code == 2, out
    assert sandbox.created == []
    assert sum(sandbox.stats["post_request"].values()) == 0
    assert "item 'Pasport' is neither the name nor the id of an element of campaign " \
           f"{DEMO_CAMPAIGN_ID} (Vehicle documents); rows 3, 4" in out
    for name in DEMO_ITEM_IDS:
        assert f'"{name}"' in out
    assert "nothing was sent" in out
    assert not (tmp_path / "contacts-results.csv").exists()


def test_an_ambiguous_name_stops_the_run(tmp_path: Path) -> None:
    campaign = {"_id": "AmbiguousCampaign", "name": "Two passports", "documents": [
        {"id": "PassportOne000001", "name": "Passport", "order": 0},
        {"id": "PassportTwo000002", "name": "passport ", "order": 1},
        {"id": "VisaElement000003", "name": "Visa", "order": 2},
    ], "forms": [], "texts": [], "pages": []}
    mapping = MAPPING.replace(DEMO_CAMPAIGN_ID, "AmbiguousCampaign")
    write(tmp_path, [("ann@example.com", "Visa"), ("bob@example.com", "Passport")], mapping)
    with running_sandbox(SandboxConfig(api_key=KEY, campaigns=[campaign])) as sandbox:
        code, out = send(tmp_path, sandbox)
        assert code == 2, out
        assert sandbox.created == []
    assert "item 'Passport' names 2 elements of campaign AmbiguousCampaign (Two passports) " \
           "(ids PassportOne000001, PassportTwo000002): give the id instead; rows 3" in out

    # Given by id, it goes.
    write(tmp_path, [("ann@example.com", "Visa"), ("bob@example.com", "PassportTwo000002")], mapping)
    with running_sandbox(SandboxConfig(api_key=KEY, campaigns=[campaign])) as sandbox:
        code, out = send(tmp_path, sandbox)
        assert code == 0, out
        assert sorted(r["received"]["items"][0] for r in sandbox.created) == [
            "PassportTwo000002", "VisaElement000003"]


def test_a_row_past_the_preflights_sample_with_an_unknown_name_is_invalid() -> None:
    """The preflight maps the first 2,000 rows; a name further down is checked
    when its row is mapped for sending: that row is invalid, not sent."""
    mapping = parse_mapping(MAPPING, "m.yaml", ["Email", "Documents"])
    catalogue = Catalogue.from_body(DEMO_CAMPAIGN_ID, {"name": "Vehicle documents", "documents": [
        {"id": "pdHfyaXvuoEWnRNnm", "itemId": "TMjehMxdX2LeLW8SN", "name": "ID card"}]})
    mapping.use_items({DEMO_CAMPAIGN_ID: catalogue})
    good = mapping.apply(Row(5000, {"Email": "a@example.com", "Documents": "id CARD"}))
    assert good.payload is not None and good.payload["items"] == ["pdHfyaXvuoEWnRNnm"]
    by_item_id = mapping.apply(Row(5001, {"Email": "b@example.com", "Documents": "TMjehMxdX2LeLW8SN"}))
    assert by_item_id.payload is not None and by_item_id.payload["items"] == ["TMjehMxdX2LeLW8SN"]
    bad = mapping.apply(Row(5002, {"Email": "c@example.com", "Documents": "Passport"}))
    assert bad.payload is None
    assert bad.error == (f"items: item 'Passport' is neither the name nor the id of an element of campaign "
                         f'{DEMO_CAMPAIGN_ID} (Vehicle documents); its elements: "ID card"')
    try:
        catalogue.resolve("Passport")
    except ItemProblem as problem:
        assert problem.short.endswith("(Vehicle documents)")
    else:
        raise AssertionError("resolved an unknown name")


def test_dry_run_and_results_keep_the_names_as_written(tmp_path: Path, sandbox: Sandbox) -> None:
    """--dry-run never calls the API: its payload column shows the names as written."""
    write(tmp_path, [("ann@example.com", "ID card")])
    code, out = send(tmp_path, sandbox, "--dry-run")
    assert code == 0, out
    _columns, rows = read_results(tmp_path / "contacts-dry-run.csv")
    assert json.loads(rows[0]["payload"])["items"] == ["ID card"]
    assert sandbox.stats["gets"] == 0
