"""The sandbox's state and its rules: campaigns, contacts, requests; creation, PATCH, progress.

Never sees HTTP: callers pass bodies already parsed (and checked for shape by
bodies.py) and get records back; a refusal is an ``Invalid``. The look-ups that
read the store are in lookups.py. Everything runs on the sandbox's one event
loop, so nothing here locks.
"""

from __future__ import annotations

import copy
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bulksend.sandbox import catalogue, progress
from bulksend.sandbox.bodies import Invalid, contact_shape_problem, parse_due_date
from bulksend.sandbox.catalogue import ELEMENT_KINDS, PORTAL, USERS, derived_id
from bulksend.sandbox.config import SandboxConfig
from bulksend.sandbox.progress import PatchRefused
from bulksend.sandbox.records import Contact, Request

__all__ = ["Store"]

Preload = dict[str, list[dict[str, Any]]]


class Store:
    """Every campaign, contact and request, and what the API does to them.

    ``config`` is the sandbox's current configuration (read for
    ``case_sensitive_emails``, ``clock_skew``, ``embedded_order``,
    ``progress_rate``, ``team_tz``, ``campaigns``, ``seed``); ``preloaded`` the
    checked preload records (preload.parse_preload) that every reset adds again.
    ``created`` lists each request created through the API (``Sandbox.created``
    documents a record), ``patches`` each PATCH applied.
    """

    def __init__(self, config: SandboxConfig, preloaded: Preload) -> None:
        self.config = config
        self.preloaded = preloaded
        self.reset()

    def reset(self) -> None:
        """The seeded world plus the preload, and fresh random streams."""
        seed = self.config.seed
        self._data_rng = random.Random(f"bulksend-sandbox-data:{seed}")
        extra = copy.deepcopy(self.config.campaigns)
        self.campaigns = {c["_id"]: c for c in [*catalogue.campaigns(), *extra]}
        # §6/§9: `items` is "an array of itemId", and campaign elements carry
        # both an `id` and an `itemId`; which one POST /request wants is not
        # settled by the docs, so the sandbox takes either.
        self._elements = {
            cid: {key: kind for kind in ELEMENT_KINDS for e in c[kind]
                  for key in (e["id"], e.get("itemId")) if key}
            for cid, c in self.campaigns.items()
        }
        self.contacts: dict[str, Contact] = {}
        # Exact email -> contact, and casefolded email -> contacts (oldest first), so
        # case_sensitive_emails can change at run time.
        self._by_email: dict[str, Contact] = {}
        self._by_folded: dict[str, list[Contact]] = {}
        self.requests: dict[str, Request] = {}
        self.by_campaign: dict[str, list[Request]] = {cid: [] for cid in self.campaigns}
        self.created: list[dict[str, Any]] = []
        self.patches: list[dict[str, Any]] = []  # every PATCH /request applied
        self._progress_rng = random.Random(f"bulksend-sandbox-progress:{seed}")
        self._progressed_at = time.monotonic()
        for contact in catalogue.seeded_contacts():
            self._add_contact(contact)
        main = self.contacts[catalogue.SEEDED_CONTACT_IDS["maincontact@example.com"]]
        self._file(catalogue.seeded_request(main))
        self.load_preload(self.preloaded)

    # -- contacts ----------------------------------------------------------------------

    def _add_contact(self, contact: Contact) -> None:
        self.contacts[contact.id] = contact
        self._by_email.setdefault(contact.email, contact)
        self._by_folded.setdefault(contact.email.casefold(), []).append(contact)

    def contacts_with_email(self, address: str) -> list[Contact]:
        """Contacts whose email is `address`: exactly, or case-insensitively (§6, §7)."""
        if self.config.case_sensitive_emails:
            exact = self._by_email.get(address)
            return [exact] if exact is not None else []
        return list(self._by_folded.get(address.casefold(), ()))

    def _find_or_create_contact(self, entry: str | dict[str, Any], now: str) -> Contact:
        if isinstance(entry, str):
            return self.contacts[entry]
        address: str = entry["email"]
        # Exact, case-sensitive as §6 documents GET /contacts?email=; or, when
        # case_sensitive_emails is off, the oldest contact whose email differs only in case.
        matching = self.contacts_with_email(address)
        if matching:
            return matching[0]
        contact = Contact(
            id=self.new_id(), email=address, first_name=entry.get("firstName"),
            last_name=entry.get("lastName"), company=entry.get("company"), created_at=now,
            tags=list(entry.get("tags", entry.get("tag", []))),
        )
        contact.custom = [
            {
                "_id": custom.get("_id") or self.new_id(),
                "name": custom.get("name", custom["variable"]),
                "variable": custom["variable"],
                "value": custom.get("value"),
            }
            for custom in entry.get("customFields", [])
        ]
        self._add_contact(contact)
        return contact

    # -- preload -------------------------------------------------------------------------

    def load_preload(self, records: Preload) -> None:
        """Add checked preload records (preload.parse_preload) to the world; none is in `created`.

        Raises ValueError, and adds nothing, when an ``_id`` already exists.
        """
        clash = [r["_id"] for kind in ("contacts", "requests") for r in records[kind]
                 if r.get("_id") and (r["_id"] in self.contacts or r["_id"] in self.requests)]
        if clash:
            raise ValueError(f"preload: _id {clash[0]} already exists in the sandbox")
        now = self.now()
        for entry in records["contacts"]:
            self._add_contact(self._preloaded_contact(entry, now))
        touched: set[str] = set()
        for entry in sorted(records["requests"], key=lambda r: r.get("createdAt") or now):
            contact = self._preload_owner(entry, now)
            created_at = entry.get("createdAt") or now
            self._open(entry.get("_id") or self.new_id(), entry["campaignId"], contact, created_at,
                       due_date=entry.get("dueDate"), data=dict(entry.get("data", {})), items=None,
                       status=entry["status"])
            contact.nb_request += 1
            contact.last_activity = max(contact.last_activity or created_at, created_at)
            touched.add(contact.id)
        for contact_id in touched:  # oldest first, wherever the preload put them
            self.contacts[contact_id].requests.sort(key=lambda r: r.created_at)
        for requests in self.by_campaign.values():
            requests.sort(key=lambda r: r.created_at)

    def _preloaded_contact(self, entry: dict[str, Any], now: str) -> Contact:
        custom = [
            {"_id": derived_id(entry["email"], key), "name": key, "variable": key, "value": value}
            for key, value in entry.get("data", {}).items()
        ]
        return Contact(id=entry.get("_id") or self.new_id(), email=entry["email"],
                       first_name=entry.get("firstName"), last_name=entry.get("lastName"),
                       company=entry.get("company"), created_at=now, custom=custom)

    def _preload_owner(self, entry: dict[str, Any], now: str) -> Contact:
        """The contact of a preloaded request: by _id, by exact email, or a new one."""
        if "contactId" in entry:
            return self.contacts[entry["contactId"]]
        found = self._by_email.get(entry["email"])
        if found is None:
            found = self._preloaded_contact({"email": entry["email"]}, now)
            self._add_contact(found)
        return found

    # -- ids, clock --------------------------------------------------------------------

    def now(self) -> str:
        """The server's clock (``clock_skew`` included) in the §1 ISO form, to the second.

        Like every documented example: a client comparing createdAt with its own clock
        (§6) must allow for that truncation, and for a server clock that is off.
        """
        clock = datetime.now(UTC) + timedelta(seconds=self.config.clock_skew)
        return clock.strftime("%Y-%m-%dT%H:%M:%SZ")

    def new_id(self) -> str:
        """A fresh id from the data stream (the seed's; apart from the faults' draws)."""
        return catalogue.new_id(self._data_rng)

    # -- creation (§4, §5) -------------------------------------------------------------

    def create_one(
        self, body: dict[str, Any], campaign_id: str, entry: str | dict[str, Any], due_date: str | None,
        fate: str,
    ) -> Request:
        """POST /request once its body passed ``bodies.single_shape``: check what the ids
        refer to (404 for an unknown campaign, 400 for an unknown element or contact),
        then create the request. ``fate`` is recorded with it."""
        self._check_references(body, campaign_id)
        if "sample" in body:
            self._check_sample_item(body["sample"], campaign_id, "sample")
        problem = self._contact_reference_problem(entry)
        if problem is not None:
            raise Invalid(400, problem)
        return self._create(body, campaign_id, entry, due_date, "/request", fate)

    def create_batch(
        self, body: dict[str, Any], campaign_id: str, contacts: list[Any], due_date: str | None, fate: str
    ) -> tuple[list[Request], list[dict[str, Any]]]:
        """POST /requests once its body passed ``bodies.batch_shape``: (requests, errors).

        §5 leaves partial failure undocumented: the sandbox skips bad contacts and
        reports each in `errors` ({contact: the entry as sent, message}). Nor is the
        order of `requests` documented: it is shuffled, so no client can depend on
        position; match on contact._id / contact.email instead.
        """
        self._check_references(body, campaign_id)
        for index, sample in enumerate(body.get("samples", ())):
            self._check_sample_item(sample, campaign_id, f"samples[{index}]")
        requests: list[Request] = []
        errors: list[dict[str, Any]] = []
        for entry in contacts:
            problem = contact_shape_problem(entry) or self._contact_reference_problem(entry)
            if problem is not None:
                errors.append({"contact": entry, "message": problem})
                continue
            requests.append(self._create(body, campaign_id, entry, due_date, "/requests", fate))
        self._data_rng.shuffle(requests)
        return requests, errors

    def _check_references(self, body: dict[str, Any], campaign_id: str) -> None:
        if campaign_id not in self.campaigns:
            raise Invalid(404, f"campaign {campaign_id} not found")
        elements = self._elements[campaign_id]
        for item in body.get("items", ()):
            if item not in elements:
                raise Invalid(
                    400,
                    f"items: {item!r} is not an element id or itemId of campaign {campaign_id} "
                    f"(see GET /campaigns/{campaign_id})",
                )

    def _check_sample_item(self, sample: dict[str, Any], campaign_id: str, where: str) -> None:
        if self._elements[campaign_id].get(sample["itemId"]) != "documents":
            raise Invalid(
                400,
                f"{where}.itemId {sample['itemId']!r} is not a document element of campaign {campaign_id}",
            )

    def _contact_reference_problem(self, entry: object) -> str | None:
        if isinstance(entry, str) and entry not in self.contacts:
            return f"contact {entry} not found"
        return None

    def _create(
        self,
        body: dict[str, Any],
        campaign_id: str,
        entry: str | dict[str, Any],
        due_date: str | None,
        endpoint: str,
        fate: str,
    ) -> Request:
        now = self.now()
        contact = self._find_or_create_contact(entry, now)
        contact.nb_request += 1  # §3: every send counts, even to the same contact
        contact.last_activity = now
        data: dict[str, Any] = {}
        if isinstance(entry, dict):
            data.update(entry.get("data", {}))
        data.update(body.get("data", {}))
        created = self._open(self.new_id(), campaign_id, contact, now, due_date=due_date, data=data,
                             items=list(body["items"]) if "items" in body else None)
        self.created.append(
            {
                "_id": created.id,
                "campaignId": campaign_id,
                "contactId": contact.id,
                "email": contact.email,
                "endpoint": endpoint,
                "createdAt": now,
                "contactInput": entry,
                "received": body,  # the parsed body, exactly as the client sent it
                "fate": fate,  # how the POST was answered: a SCRIPT_FATES name ("ok": normally)
            }
        )
        return created

    def _open(self, request_id: str, campaign_id: str, contact: Contact, created_at: str,
              **fields: Any) -> Request:
        """A new request of `contact` (its portal link drawn after its id), filed."""
        portal_url = f"{PORTAL}/{self.new_id()}/{request_id}"
        request = Request(id=request_id, campaign_id=campaign_id, created_at=created_at,
                          portal_url=portal_url, contact=contact, contact_json=contact.to_json(), **fields)
        self._file(request)
        return request

    def _file(self, request: Request) -> None:
        """File a request where it is found: by id, under its contact and its campaign."""
        request.contact.requests.append(request)
        self.requests[request.id] = request
        self.by_campaign[request.campaign_id].append(request)

    # -- changes (§7) --------------------------------------------------------------------

    def patch(self, body: dict[str, Any]) -> Request:
        """PATCH /request (§7): change one request's status, due date, data or assignee.

        The body is checked by progress.patch_changes (``Invalid`` 400 when refused),
        then requests move on, then the request is found (``Invalid`` 404) and changed;
        the change is recorded in ``patches``.
        """
        users = {u["email"]: u["_id"] for u in USERS}
        try:
            changes = progress.patch_changes(body, users, parse_due_date)
        except PatchRefused as exc:
            raise Invalid(400, str(exc)) from None
        self.advance()
        found = self.requests.get(body["requestId"])
        if found is None:
            raise Invalid(404, f"request {body['requestId']} not found")
        before = found.status
        found.status = changes.get("status", found.status)
        found.due_date = changes.get("dueDate", found.due_date)
        found.data.update(changes.get("data", {}))
        found.assigned_to = changes.get("assignedTo", found.assigned_to)
        self.patches.append({
            "requestId": found.id, "received": body, "before": before, "after": found.status,
            "messages": progress.messages_sent(body, before, found.status), "at": self.now(),
        })
        return found

    def advance(self) -> None:
        """Move requests on by the time since the last call (``progress_rate``)."""
        now = time.monotonic()
        elapsed, self._progressed_at = now - self._progressed_at, now
        rate = self.config.progress_rate
        if rate > 0:
            progress.advance(self.requests.values(), self._progress_rng, rate, elapsed)

    def set_status(self, request_id: str, status: str) -> None:
        """Move one request to ``status``, as a person would in the Collect app; KeyError if unknown."""
        self.requests[request_id].status = status
