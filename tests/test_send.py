"""The whole pipeline through the real CLI against the real sandbox (issue 2)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from conftest import CONTRACT, KEY, people, read_results, run_cli, write_contacts

from bulksend.sandbox import DEMO_CAMPAIGN_ID, Sandbox


def send(workdir: Path, sandbox: Sandbox, *extra: str, key: str | None = KEY,
         contacts: str = "contacts.csv") -> tuple[int, str, str]:
    r = run_cli("send", contacts, "-m", "mapping.yaml", "--results", "results.csv",
                "--api-url", sandbox.url, "--rate", "none", "--no-progress", *extra,
                cwd=workdir, key=key)
    return r.code, r.stdout, r.stderr


def test_every_valid_row_created_exactly_once_with_contract_columns(workdir: Path, sandbox: Sandbox) -> None:
    rows = people(40)
    rows[5]["Email"] = "not-an-email"  # invalid
    rows[9]["Email"] = ""  # invalid: required
    rows[20]["Email"] = rows[2]["Email"].upper()  # duplicate of row 4 (emails are normalised)
    write_contacts(workdir / "contacts.csv", rows)

    code, _out, err = send(workdir, sandbox)

    assert code == 1, err  # some rows invalid/duplicate
    created = sandbox.created
    per_email = Counter(c["email"] for c in created)
    valid = {r["Email"] for i, r in enumerate(rows) if i not in (5, 9, 20)}
    assert set(per_email) == valid
    assert all(n == 1 for n in per_email.values())
    assert "not-an-email" not in str(created)

    header, results = read_results(workdir / "results.csv")
    assert header == [*CONTRACT, "Email", "First Name", "Last Name", "Documents"]
    assert [r["row"] for r in results] == [str(n) for n in range(2, 42)]
    by_row = {int(r["row"]): r for r in results}
    assert by_row[7]["status"] == "invalid" and "Email" in by_row[7]["error"]
    assert by_row[11]["status"] == "invalid"
    assert by_row[22]["status"] == "duplicate" and "row 4" in by_row[22]["error"]
    # The request id in the results is the one the server created for that contact.
    server = {c["email"]: c for c in created}
    for r in results:
        if r["status"] != "sent":
            assert r["request_id"] == ""
            continue
        made = server[r["Email"].lower()]
        assert r["request_id"] == made["_id"]
        assert r["contact_id"] == made["contactId"]
        assert r["portal_url"].endswith("/" + made["_id"])
        assert r["key"] == f"{DEMO_CAMPAIGN_ID}|{r['Email'].lower()}"
        assert r["http_status"] == "200" and r["attempts"] == "1" and r["error"] == ""
        assert r["sent_at"].endswith("Z")
    # What the server received is the mapped payload.
    first = next(c for c in created if c["email"] == "person0@example.com")["received"]
    assert first["campaignId"] == DEMO_CAMPAIGN_ID
    assert first["contact"] == {"email": "person0@example.com", "firstName": "Person0", "lastName": "Tester"}
    assert len(first["items"]) == 2 and first["sendMessage"] is True


def test_rerun_makes_no_post(workdir: Path, sandbox: Sandbox) -> None:
    write_contacts(workdir / "contacts.csv", people(15))
    code, _, err = send(workdir, sandbox)
    assert code == 0, err
    before = sandbox.stats["post_request"]

    code, _out, err = send(workdir, sandbox)

    assert code == 0, err
    assert sandbox.stats["post_request"] == before
    assert len(sandbox.created) == 15
    _, results = read_results(workdir / "results.csv")
    assert [r["status"] for r in results] == ["sent"] * 15


def test_new_rows_in_a_later_export_are_the_only_ones_sent(workdir: Path, sandbox: Sandbox) -> None:
    write_contacts(workdir / "contacts.csv", people(10))
    assert send(workdir, sandbox)[0] == 0
    write_contacts(workdir / "contacts.csv", list(reversed(people(14))))  # reordered + 4 new

    code, _, err = send(workdir, sandbox)

    assert code == 0, err
    assert Counter(c["email"] for c in sandbox.created) == Counter(r["Email"] for r in people(14))


def test_429_storm_and_5xx_still_send_every_valid_row(workdir: Path, sandbox: Sandbox) -> None:
    sandbox.set_faults(rate_limit=40.0, burst=2, fail_rate=0.2)
    write_contacts(workdir / "contacts.csv", people(60))

    code, out, err = run_cli(
        "send", "contacts.csv", "-m", "mapping.yaml", "--results", "results.csv",
        "--api-url", sandbox.url, "--rate", "400/s", "--concurrency", "8", "--max-attempts", "10",
        "--no-progress", cwd=workdir,
    ).__dict__.values()

    assert code == 0, err + out
    stats = sandbox.stats["post_request"]
    # The storm happened. Its 429s may all land on the look-ups before the
    # first POST: they pass the same gate, which learns the limit from them.
    assert stats["429"] + sandbox.stats["get"].get("429", 0) > 0 and stats["500"] + stats["503"] > 0
    assert Counter(c["email"] for c in sandbox.created) == Counter(r["Email"] for r in people(60))
    _, results = read_results(workdir / "results.csv")
    assert {r["status"] for r in results} == {"sent"}
    assert "pausing all workers" in err


def test_wrong_key_exits_3_after_a_handful_of_posts(workdir: Path, sandbox: Sandbox) -> None:
    write_contacts(workdir / "contacts.csv", people(200))

    code, out, err = send(workdir, sandbox, "--concurrency", "4", key="wrong-key")

    assert code == 3, err
    assert "401" in err or "refused" in err
    assert sandbox.stats["post_request"]["401"] <= 8
    assert sandbox.created == []
    assert "wrong-key" not in out + err


def test_dry_run_sends_nothing_and_writes_payloads(workdir: Path, sandbox: Sandbox) -> None:
    write_contacts(workdir / "contacts.csv", people(5))

    r = run_cli("send", "contacts.csv", "-m", "mapping.yaml", "--dry-run", "--api-url", sandbox.url,
                cwd=workdir, key=None)

    assert r.code == 0, r.stderr
    assert sandbox.stats["post_request"]["200"] == 0
    header, results = read_results(workdir / "contacts-dry-run.csv")
    assert header[: len(CONTRACT) + 1] == [*CONTRACT, "payload"]
    assert {x["status"] for x in results} == {"ready"}
    assert '"email":"person1@example.com"' in results[1]["payload"]


def test_limit_is_a_canary(workdir: Path, sandbox: Sandbox) -> None:
    write_contacts(workdir / "contacts.csv", people(12))
    code, out, _ = send(workdir, sandbox, "--limit", "3")
    assert code == 0
    assert len(sandbox.created) == 3
    assert "to send the rest" in out
    code, _, _ = send(workdir, sandbox)
    assert code == 0
    assert len(sandbox.created) == 12


def test_no_key_is_a_usage_error(workdir: Path, sandbox: Sandbox) -> None:
    write_contacts(workdir / "contacts.csv", people(2))
    code, _, err = send(workdir, sandbox, key=None)
    assert code == 2
    assert err.startswith("bulksend: error: no API key")
    r = run_cli("send", "contacts.csv", "-m", "mapping.yaml", "--api-key", "abc", cwd=workdir)
    assert r.code == 2 and "--api-key is refused" in r.stderr and sandbox.stats["gets"] == 0


def test_batch_mode_sends_each_row_once_matched_by_contact(workdir: Path, sandbox: Sandbox) -> None:
    rows = people(120)
    rows[7]["Documents"] = "no-such-item"  # preflight refuses the run: nothing is sent
    write_contacts(workdir / "contacts.csv", rows)
    code, _, err = send(workdir, sandbox, "--batch")
    assert code == 2 and "no-such-item" in err and "rows 9" in err
    assert sandbox.created == [] and sandbox.stats["post_requests"]["200"] == 0

    rows[7]["Documents"] = ""
    write_contacts(workdir / "contacts.csv", rows)
    code, _out, err = send(workdir, sandbox, "--batch")

    assert code == 0, err
    stats = sandbox.stats
    assert stats["post_requests"]["200"] >= 3  # groups of at most 50, by shared fields
    assert stats["post_requests"]["200"] + stats["post_request"]["200"] < 20
    created = sandbox.created
    assert Counter(c["email"] for c in created) == Counter(r["Email"] for r in rows)
    _, results = read_results(workdir / "results.csv")
    server = {c["email"]: c["_id"] for c in created}
    # The sandbox shuffles a batch's answer: each id must follow its contact.
    assert all(r["status"] == "sent" and r["request_id"] == server[r["Email"]] for r in results)


def test_preflight_fails_before_any_post(workdir: Path, sandbox: Sandbox) -> None:
    (workdir / "mapping.yaml").write_text(
        "campaignId: {value: AAAAAAAAAAAAAAAAA}\ncontact: {email: Email}\n", encoding="utf-8")
    write_contacts(workdir / "contacts.csv", people(5))
    code, _, err = send(workdir, sandbox)
    assert code == 2
    assert "campaign 'AAAAAAAAAAAAAAAAA' does not exist" in err and "rows 2, 3, 4, …" in err
    assert sandbox.stats["post_request"]["200"] == 0 and sandbox.stats["post_request"]["404"] == 0


def test_a_new_record_beside_another_warns(workdir: Path, sandbox: Sandbox) -> None:
    # Last night's export went to contacts-results.csv; tonight's dated export
    # would start a new record without --results: say so.
    write_contacts(workdir / "contacts.csv", people(2))
    r = run_cli("send", "contacts.csv", "-m", "mapping.yaml", "--api-url", sandbox.url, cwd=workdir)
    assert r.code == 0, r.stderr
    write_contacts(workdir / "contacts-2026-11-27.csv", people(3))
    r = run_cli("send", "contacts-2026-11-27.csv", "-m", "mapping.yaml", "--api-url", sandbox.url,
                cwd=workdir)
    assert "contacts-2026-11-27-results.csv is a new record" in r.stderr
    assert "contacts-results.csv" in r.stderr and "--results" in r.stderr
    # And the two contacts last night's run sent are not sent again: the run
    # stops before its first POST (issue 10, case 6).
    assert r.code == 2, r.stderr
    assert "2 row(s) new to this results file already have a request" in r.stderr
    assert len(sandbox.created) == 2
