"""One row, or one batch of rows, from its first POST to its outcome.

``Sender.run`` sends a row (POST /request) until it is sent, failed for good or
unknown; ``BatchSender.run`` sends a group through POST /requests. Every call
(POSTs, their retries, and the look-ups that settle rows whose answer was lost)
passes the run's one rate gate; every retry follows the run's ``RetryPolicy``
(collect/retry.py): tries and time capped, exponential backoff with jitter, a
503's Retry-After honoured.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from bulksend.collect.client import (
    CREATED,
    REFUSED,
    Ambiguous,
    Answer,
    Client,
    NotSent,
    error_text,
    key_refused,
    quota_reached,
    read_created,
)
from bulksend.collect.lookup import Found, Unmatchable, contact_identity, iso_utc, look_up
from bulksend.collect.rategate import RateGate
from bulksend.collect.retry import RetryPolicy
from bulksend.common.outcome import FAILED, SENT, UNKNOWN, Outcome
from bulksend.common.progress import Progress
from bulksend.store.journal import Journal, utc_now

MAX_THROTTLED = 200  # 429s one row may meet before it is given up as failed


# ---------------------------------------------------------------------------
# One row, from its first attempt to its outcome
# ---------------------------------------------------------------------------


@dataclass(slots=True)
class Job:
    outcome: Outcome  # row, key and values set; filled in as the row goes
    payload: dict[str, Any]
    reconcile_since: str | None = None  # set: the row may already exist on the server
    previous: str = "pending"  # its journal status before this run queued it
    # The feeder already wrote the first attempt's write-ahead mark (when it
    # queued the row, in one commit with its neighbours): the first POST needs
    # no mark of its own, only the commit.
    marked: bool = False
    # A POST for this row is on the wire: a stop now leaves it unknown. Between
    # POSTs (waiting for the gate, backing off) a stop leaves what is known.
    posting: bool = False
    attempts_before: int = -1  # attempts when this run took the row up (-1: not yet)


@dataclass(slots=True)
class _Tries:
    """One row's retry budget in this run: failures and 429s so far, and when it began."""

    started: float
    failures: int = 0
    throttled: int = 0


class Sender:
    """Sends one row at a time for a worker; shared by all workers of a run.

    What an answer means follows collect-api.md §9 (``client.read_created``): a
    row is ``sent`` only with a request ``_id`` from an answer or a look-up;
    anything that may have created the request is looked up before a resend."""

    def __init__(self, client: Client, gate: RateGate, journal: Journal | None,
                 policy: RetryPolicy, progress: Progress, *,
                 key_paths: list[str] | None = None, excluded: set[str] | None = None) -> None:
        self.client = client
        self.gate = gate
        self.journal = journal
        self.policy = policy  # a row's retries: tries, time, backoff (collect/retry.py)
        self.progress = progress
        self.posts = 0
        self.key_paths = key_paths  # the mapping's key, which look-ups match on
        # Request ids no look-up may hand to a row: those given to rows in this
        # run, and those that existed before it (the pre-send check's).
        self.claimed: set[str] = set()
        self.excluded = excluded or set()

    def _taken(self, key: str) -> Callable[[str], bool]:
        """Whether a request id already belongs to another row (never hand one to two)."""
        def taken(request_id: str) -> bool:
            if request_id in self.claimed or request_id in self.excluded:
                return True
            holder = self.journal.holder_of(request_id) if self.journal is not None else None
            return holder is not None and holder != key
        return taken

    def _sent(self, job: Job, request: dict[str, Any], status: int | None, note: str = "") -> None:
        o = job.outcome
        o.status = SENT
        o.error = f"sent; the server also said: {note}"[:300] if note else ""
        o.request_id = str(request["_id"])
        o.portal_url = str(request.get("portalUrl", "") or "")
        contact = request.get("contact")
        o.contact_id = str(contact.get("_id", "") or "") if isinstance(contact, dict) else ""
        o.sent_at = utc_now()
        o.http_status = status
        self.claimed.add(o.request_id)

    def _found(self, job: Job, found: Found) -> None:
        o = job.outcome
        o.status = SENT
        o.error = ""
        o.request_id, o.portal_url, o.contact_id = found.request_id, found.portal_url, found.contact_id
        o.sent_at = iso_utc(found.created_at) or utc_now()
        self.claimed.add(found.request_id)
        self.progress.event("reconciled", f"row {o.row}: found on the server, not resent", row=o.row)

    async def settle(self, job: Job, since: str) -> bool:
        """Look the row up; True when it is settled (sent, or unknown for good),
        False only when the look-up said in full "not created"."""
        o = job.outcome
        for failures in range(1, self.policy.max_attempts + 1):
            try:
                found = await look_up(self.client, self.gate, job.payload, since,
                                      key_paths=self.key_paths, taken=self._taken(o.key))
            except Unmatchable as exc:
                o.status, o.error = UNKNOWN, f"could not check whether it was created: {exc}"
                return True
            except (Ambiguous, NotSent) as exc:
                o.error = f"could not check whether it was created: {exc}"
                await self.policy.wait(failures)
                continue
            if found is None:
                return False
            self._found(job, found)
            return True
        o.status = UNKNOWN
        return True  # settled as unknown: never resend blindly

    async def _maybe_created(self, job: Job, reason: str, first_attempt: str, failures: int) -> bool:
        """The POST may have created the request: look it up before any resend.
        True when the row is settled."""
        o = job.outcome
        o.status = UNKNOWN
        o.error = f"{reason}; the request may have been created"
        self.progress.event("unknown", f"row {o.row}: {reason}; checking before any resend", row=o.row)
        await self.policy.sleep(min(2.0, self.policy.backoff(failures)))
        record = self.journal.get(o.key) if self.journal is not None and o.key else None
        since = record.first_attempt_at if record is not None and record.first_attempt_at else first_attempt
        return await self.settle(job, since)

    def throttled(self, answer: Answer, sent: float) -> None:
        """A 429: a pause for every worker, or the end of the run when the
        server asks for a longer one than ``--max-pause`` (the gate's ``max_pause``: a quota)."""
        max_pause = self.gate.max_pause
        if answer.retry_after is not None and answer.retry_after > max_pause:
            raise quota_reached(answer.retry_after, max_pause)
        self.gate.throttled(sent, answer.retry_after)

    async def run(self, job: Job) -> Outcome:
        """Send one row until it is settled: sent, failed for good, or unknown.

        Raises ``AuthError`` on 401 and ``QuotaError`` on a quota-sized
        Retry-After (the row's outcome is filled first)."""
        o = job.outcome
        if job.attempts_before < 0:
            job.attempts_before = o.attempts
        if job.reconcile_since is not None and await self.settle(job, job.reconcile_since):
            return o
        tries = _Tries(started=self.policy.clock())
        while not self._gave_up(o, tries):
            if await self._attempt(job, tries):
                return o
        return o

    def _gave_up(self, o: Outcome, tries: _Tries) -> bool:
        """Attempts and time are both capped (``RetryPolicy.exhausted``); 429s apart."""
        if self.policy.exhausted(tries.failures, tries.started):
            o.status = FAILED
            o.error = f"{o.error} (gave up after {tries.failures} attempts)" if o.error else "gave up"
            return True
        if tries.throttled >= MAX_THROTTLED:
            o.status = FAILED
            o.error = f"still rate limited (HTTP 429) after {tries.throttled} tries"
            return True
        return False

    async def _attempt(self, job: Job, tries: _Tries) -> bool:
        """One POST and what its answer means (collect-api.md §2, §9); True
        when the row is settled."""
        o = job.outcome
        sent = self.gate.open_now()
        if sent is None:
            sent = await self.gate.acquire()
        first_attempt = utc_now()
        # write_ahead([job]), without its coroutine when no commit is on its way.
        # After the gate: a row that waits there (a pause, a stop) is not marked
        # as on the wire, and a stop gives it back its earlier status.
        if self.journal is not None and self._mark_attempts((job,)):
            await self.journal.barrier()
        o.attempts += 1
        self.posts += 1
        job.posting = True
        try:
            answer = await self.client.call("POST", "/request", job.payload)
        except NotSent as exc:
            job.posting = False  # not on the wire while it backs off: a stop need not wait
            tries.failures += 1
            o.error, o.http_status = str(exc), None
            self._interim(o)
            self.progress.event("retry", f"row {o.row}: {exc}; retrying", row=o.row)
            await self.policy.wait(tries.failures)
            return False
        except Ambiguous as exc:
            tries.failures += 1
            return await self._maybe_created(job, str(exc), first_attempt, tries.failures)
        finally:
            job.posting = False
            self.gate.answered(sent)
        o.http_status = answer.status
        if answer.status == 429:
            tries.throttled += 1
            o.status, o.error = FAILED, error_text(answer)  # a 429 created nothing
            self._interim(o)
            self.throttled(answer, sent)
            return False
        if answer.status == 401:
            o.status, o.error = FAILED, "HTTP 401: the API key was refused"
            raise key_refused()
        if answer.status == 503:  # §2: offline for maintenance, nothing processed
            tries.failures += 1
            await self._unavailable(o, answer, sent, tries.failures)
            return False
        verdict, request, text = read_created(answer)
        if verdict == CREATED:
            assert request is not None
            self.gate.success(sent)
            self._sent(job, request, answer.status, text)
            return True
        if verdict == REFUSED:  # 3xx, 4xx, a 2xx with errors and no request: final for this row
            o.status, o.error = FAILED, text
            return True
        tries.failures += 1
        return await self._maybe_created(job, text, first_attempt, tries.failures)

    async def _unavailable(self, o: Outcome, answer: Answer, sent: float, failures: int) -> None:
        """A 503 (§2: "temporarily offline for maintenance"): nothing was
        created; slow down, back off and try again."""
        o.error = error_text(answer)
        self._interim(o)
        self.gate.unavailable(sent)
        delay = self.policy.delay(failures, answer.retry_after)
        self.progress.event("retry", f"row {o.row}: {o.error}; retrying in {delay:.1f}s", row=o.row)
        await self.policy.sleep(delay)

    def _interim(self, o: Outcome) -> None:
        """A definite 'not created' answer: the row is no longer in flight."""
        if self.journal is not None and o.key:
            self.journal.record(o, status=FAILED)

    def _mark_attempts(self, jobs: Iterable[Job]) -> bool:
        """Mark the attempt about to be made for each job (the feeder already
        marked a job's first attempt when it queued it). True when a commit is
        on its way that must land before the request leaves."""
        if self.journal is None:
            return False
        for job in jobs:
            if job.outcome.key and not job.marked:
                self.journal.begin_attempt(job.outcome.key)
            job.marked = False
        return self.journal.commit_due

    async def write_ahead(self, jobs: list[Job]) -> None:
        """Return once the attempt about to be made for each job is committed."""
        journal = self.journal
        if journal is not None and self._mark_attempts(jobs):
            await journal.barrier()


# ---------------------------------------------------------------------------
# Batch mode: POST /requests, up to 50 contacts a call (collect-api.md §5)
# ---------------------------------------------------------------------------

BATCH_SIZE = 50
# Body fields POST /requests does not take (§5): rows using them go one by one.
NOT_BATCHABLE = frozenset({"createdBy", "data", "esignDocs", "esignTriggers"})


def batch_group(payload: dict[str, Any]) -> str | None:
    """Rows with the same request-level fields can share a POST /requests call;
    None when the row must be sent alone."""
    if NOT_BATCHABLE & payload.keys():
        return None
    common = {k: v for k, v in payload.items() if k != "contact"}
    return json.dumps(common, sort_keys=True, ensure_ascii=False)


class BatchPlan:
    """How ``--batch`` sent the rows: how many went in POST /requests calls,
    how many alone, and why (issue 10, case 12). Rows share a call only when
    every request-level field is the same (§5 takes one ``dueDate``, one
    ``items`` list... for the whole call)."""

    def __init__(self) -> None:
        self.batched = 0
        self.calls = 0
        self.alone: Counter[str] = Counter()
        self._values: dict[str, set[str]] = {}  # request-level field -> up to 2 distinct values

    def grouped(self, payload: dict[str, Any]) -> str | None:
        """The row's group (``batch_group``), noting its fields' values."""
        group = batch_group(payload)
        if group is None:
            used = sorted(NOT_BATCHABLE & payload.keys())
            self.alone[f"use {', '.join(used)}, which POST /requests does not take"] += 1
            return None
        for name, value in payload.items():
            if name != "contact":
                seen = self._values.setdefault(name, set())
                if len(seen) < 2:
                    seen.add(json.dumps(value, sort_keys=True))
        return group

    def looked_up_first(self) -> None:
        self.alone["were looked up first (their last answer was lost)"] += 1

    def flushed(self, size: int) -> None:
        if size > 1:
            self.batched += size
            self.calls += 1
        else:
            self.alone["__single__"] += 1

    def describe(self) -> str:
        """One line for the summary; empty when there was nothing to send."""
        alone = sum(self.alone.values())
        if not self.batched and not alone:
            return ""
        why = []
        for reason, n in self.alone.most_common():
            if reason == "__single__":
                varying = sorted(name for name, seen in self._values.items() if len(seen) > 1)
                reason = (f"have a {' or '.join(varying)} no other row shares" if varying
                          else "found no other row with the same fields before the end")
            why.append(f"{n} {reason}")
        text = f"--batch: {self.batched} rows in {self.calls} POST /requests call(s), {alone} alone"
        return text + (f" ({'; '.join(why)})" if why else "")


def batch_body(jobs: list[Job]) -> dict[str, Any]:
    first = jobs[0].payload
    body = {k: v for k, v in first.items() if k not in ("contact", "sample")}
    if "sample" in first:
        body["samples"] = [first["sample"]]  # §5 "samples": an array of {itemId, url} (inferred)
    body["contacts"] = [job.payload["contact"] for job in jobs]
    return body


class BatchSender:
    """Sends a group of rows through POST /requests and matches each answer to its
    row by contact id or email, never by position (§5: order is not documented).
    A row the answer does not mention is unknown: looked up, and sent alone only
    if no request exists. Answers are read as for a single row (§9): a 5xx but
    503, or a 2xx that is not understood, may have created every request."""

    def __init__(self, sender: Sender) -> None:
        self.sender = sender

    async def run(self, jobs: list[Job]) -> list[Outcome]:
        s = self.sender
        for job in jobs:
            if job.attempts_before < 0:
                job.attempts_before = job.outcome.attempts
        failures = throttled = 0
        body = batch_body(jobs)
        while True:
            if failures >= s.policy.max_attempts or throttled >= MAX_THROTTLED:
                # The group could not be sent together: each row goes its own way.
                return [await s.run(job) for job in jobs]
            sent = await s.gate.acquire()
            first_attempt = utc_now()
            await s.write_ahead(jobs)  # after the gate, as in Sender._attempt
            for job in jobs:
                job.outcome.attempts += 1
                job.posting = True
            s.posts += 1
            try:
                answer = await s.client.call("POST", "/requests", body)
            except NotSent as exc:
                for job in jobs:
                    job.posting = False  # not on the wire while it backs off
                failures += 1
                self._each_failed(jobs, str(exc), None)
                await s.policy.wait(failures)
                continue
            except Ambiguous as exc:
                s.progress.event("unknown", f"batch of {len(jobs)}: {exc}; checking each row")
                return await self._settle_each(jobs, first_attempt)
            finally:
                for job in jobs:
                    job.posting = False
                s.gate.answered(sent)
            if answer.status == 429:
                throttled += 1
                self._each_failed(jobs, error_text(answer), 429)
                s.throttled(answer, sent)
                continue
            if answer.status == 401:
                for job in jobs:
                    job.outcome.status, job.outcome.error = FAILED, "HTTP 401: the API key was refused"
                raise key_refused()
            if answer.status == 503:
                failures += 1
                s.gate.unavailable(sent)
                self._each_failed(jobs, error_text(answer), 503)
                await s.policy.wait(failures, answer.retry_after)
                continue
            if 300 <= answer.status < 500:
                # The whole call was refused (e.g. one field of the group is bad):
                # send each row alone so that each gets its own, exact error.
                self._each_failed(jobs, error_text(answer), answer.status)
                return [await s.run(job) for job in jobs]
            if not 200 <= answer.status < 300:
                s.progress.event("unknown", f"batch of {len(jobs)}: {error_text(answer)}; checking each row")
                return await self._settle_each(jobs, first_attempt)
            s.gate.success(sent)
            return await self._match(jobs, answer, first_attempt)

    def _each_failed(self, jobs: list[Job], error: str, status: int | None) -> None:
        """A definite "not created" for the whole call."""
        for job in jobs:
            job.outcome.error = error
            job.outcome.http_status = status
            self.sender._interim(job.outcome)

    async def _match(self, jobs: list[Job], answer: Answer, first_attempt: str) -> list[Outcome]:
        s = self.sender
        body = answer.body if isinstance(answer.body, dict) else {}
        by_identity: dict[str, Job] = {contact_identity(j.payload["contact"]): j for j in jobs}
        done: set[int] = set()
        requests = body.get("requests")
        for request in requests if isinstance(requests, list) else []:
            if not isinstance(request, dict) or not isinstance(request.get("_id"), str) or not request["_id"]:
                continue
            contact = request.get("contact") or {}
            job = by_identity.get("id:" + str(contact.get("_id", ""))) or by_identity.get(
                "email:" + str(contact.get("email", "")).lower()
            )
            if job is None or id(job) in done:
                continue
            done.add(id(job))
            s._sent(job, request, answer.status)
        for error in body.get("errors") or []:
            if not isinstance(error, dict):
                continue
            job = by_identity.get(contact_identity(error.get("contact")))
            if job is None or id(job) in done:
                continue
            done.add(id(job))
            o = job.outcome
            o.status = FAILED
            o.http_status = answer.status
            message = error.get("message") or error.get("error") or json.dumps(error)
            o.error = " ".join(f"refused in batch: {message}".split())[:300]
        missing = [job for job in jobs if id(job) not in done]
        outcomes = [job.outcome for job in jobs if id(job) in done]
        if missing:
            s.progress.event("unknown", f"{len(missing)} contact(s) missing from a batch answer; checking")
            outcomes.extend(await self._settle_each(missing, first_attempt))
        return outcomes

    async def _settle_each(self, jobs: list[Job], since: str) -> list[Outcome]:
        """Look each row up; send alone (through the single-row path) only if absent."""
        outcomes = []
        for job in jobs:
            job.reconcile_since = since
            job.outcome.status = UNKNOWN
            outcomes.append(await self.sender.run(job))
        return outcomes
