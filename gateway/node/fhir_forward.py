"""Forwarding the huvudman's readings to its own FHIR R4 server, in the background.

The webhook answer never waits for the FHIR server: the node stores its copy (a reading is
stored `fhir_state = 'pending'`, migration 0002) and answers; this loop, in the node's process,
claims due readings (up to `batch_max`, leased so that a second node process or a crash never
holds them for long), posts one transaction Bundle (gateway/node/fhir_bundle.py) and settles each
row from the transaction-response:

- entry `201`/`200` (created / already there: conditional create honoured): `done`;
- entry `4xx`: `dead`, with the status and a reason of letters only (HTTP reason phrase and the
  OperationOutcome's issue codes, never its free text, which could carry a value or a name);
- entry `5xx`, no entry for it, a timeout, a connection error, 429, 401/403/404/405/415 (server
  or configuration trouble, not the data's fault), an answer that does not decode: retried with
  exponential backoff and full jitter, never dead by itself; never sooner than a 429's or 503's
  `Retry-After` asks (capped at an hour), and the loop pauses that long too;
- the whole Bundle refused with 400/409/412/413/422 (a conforming server fails a transaction as a
  whole when one entry is bad): the batch is split in halves and each half sent again, down to
  single entries, so one bad reading is dead and the others go through. Conditional create makes
  the repeats harmless.

A copy that makes no Observation (no or several subject references, content not understood) is
`dead` at once with that fixed reason. After a failed request the loop pauses (backoff over the
consecutive failures), so an outage costs one request per pause, not one per reading. State is
in the node's database: a restart carries on where it stopped; rows a stopped forwarder had
claimed are released at stop. Logs carry event ids, counts, statuses and fixed reasons only.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import msgspec
from prometheus_client import Counter, Gauge, Histogram

from gateway.delivery import retry_after
from gateway.delivery.outbox import backoff
from gateway.delivery.sink import safe_reason
from gateway.node import fhir_bundle
from gateway.node.fhir_bundle import Identifiers, NotSent
from gateway.observability import logs
from gateway.store.errors import DB_ERRORS
from gateway.store.node import FhirClaim, FhirSettlement, NodeQueries

log = logs.get("gateway.node.fhir")
FHIR_JSON = "application/fhir+json"

FORWARDED = Counter("gateway_node_fhir_forwarded_total",
                    "Readings the FHIR server holds now, by result (created, existing: a "
                    "conditional create found it already there)", ["result"])
FAILED = Counter("gateway_node_fhir_failed_total",
                 "Readings not forwarded by an attempt, by outcome (retry, dead) and kind "
                 "(timeout, connection, server_error, refused, answer, rejected, not_sendable)",
                 ["outcome", "kind"])
PENDING = Gauge("gateway_node_fhir_pending", "Readings waiting to be forwarded")
DEAD = Gauge("gateway_node_fhir_dead", "Readings the FHIR server refused (or that make no "
             "Observation), kept with their reason")
OLDEST_PENDING = Gauge("gateway_node_fhir_oldest_pending_seconds",
                       "Age of the oldest reading waiting to be forwarded (0 when none)")
REQUEST_SECONDS = Histogram("gateway_node_fhir_request_seconds", "One Bundle to the FHIR server",
                            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))

# A conforming server answers a transaction with one bad entry by refusing all of it.
_SPLIT_STATUSES = frozenset({400, 409, 412, 413, 422})


class FhirConfigError(Exception):
    """A refusal naming the option at fault (never the token)."""


@dataclass(frozen=True)
class FhirConfig:
    url: str
    identifiers: Identifiers = field(default_factory=Identifiers)
    token: str | None = None
    batch_max: int = 100
    timeout_s: float = 30.0
    poll_s: float = 1.0  # due retries are looked for at least this often
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 600.0
    metrics_every_s: float = 5.0

    def __repr__(self) -> str:  # never the token
        return (f"FhirConfig(url={_safe_url(self.url)!r}, batch_max={self.batch_max}, "
                f"token={'set' if self.token else 'none'})")

    @property
    def lease(self) -> timedelta:
        """Longer than the longest cycle: a batch split down to single entries."""
        requests = 2 * self.batch_max.bit_length() + 1
        return timedelta(seconds=60 + requests * self.timeout_s)


def load_fhir_config(*, url: str, patient_system: str = fhir_bundle.PERSONNUMMER_SYSTEM,
                     device_system: str = fhir_bundle.DEFAULT_DEVICE_SYSTEM,
                     subject_mode: str = "conditional", token_file: Path | None = None,
                     batch_max: int = 100, timeout_s: float = 30.0) -> FhirConfig:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise FhirConfigError(f"--fhir-url {_safe_url(url)!r}: give the server's base URL, "
                              "e.g. https://fhir.example/fhir")
    for option, system in (("--fhir-patient-system", patient_system),
                           ("--fhir-device-system", device_system)):
        if ":" not in system or any(c.isspace() for c in system):
            raise FhirConfigError(f"{option} {system!r}: give a URI, e.g. urn:oid:…")
    if subject_mode not in fhir_bundle.SUBJECT_MODES:
        raise FhirConfigError(f"--fhir-subject {subject_mode!r}: give "
                              f"{' or '.join(fhir_bundle.SUBJECT_MODES)}")
    if not 1 <= batch_max <= 1000:
        raise FhirConfigError("--fhir-batch-max: give 1 to 1000")
    if not timeout_s > 0:
        raise FhirConfigError("--fhir-timeout-s: give a positive number of seconds")
    token = None
    if token_file is not None:
        try:
            token = token_file.read_text("utf-8").strip()
        except OSError as err:
            raise FhirConfigError(f"{token_file}: cannot read: {err.strerror}") from None
        if not token:
            raise FhirConfigError(f"{token_file}: is empty")
    mode: fhir_bundle.SubjectMode = "identifier" if subject_mode == "identifier" else \
        "conditional"
    return FhirConfig(url=url, identifiers=Identifiers(patient_system, device_system, mode),
                      token=token, batch_max=batch_max, timeout_s=timeout_s)


def _safe_url(url: str) -> str:
    """The URL without credentials or query, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


@dataclass(frozen=True, slots=True)
class Result:
    """What one attempt did for one reading."""

    event_id: uuid.UUID
    outcome: Literal["done", "retry", "dead"]
    kind: str  # created / existing (done), else a FAILED kind
    status: int | None = None
    reason: str | None = None
    retry_after_s: float | None = None  # the server's Retry-After (429, 503)


@dataclass(frozen=True, slots=True)
class _Claimed:
    event_id: uuid.UUID
    attempts: int
    entry: dict[str, Any] | None
    not_sent: str | None = None


class FhirForwarder:
    """The background loop; `start()` and `stop()` from the node, `cycle()` for one round."""

    def __init__(self, queries: NodeQueries, config: FhirConfig,
                 client: httpx.AsyncClient | None = None) -> None:
        self._queries = queries
        self.config = config
        headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON, "Prefer": "return=minimal"}
        if config.token:
            headers["Authorization"] = f"Bearer {config.token}"
        self._client = client or httpx.AsyncClient(timeout=config.timeout_s, headers=headers)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._claimed: set[uuid.UUID] = set()
        self._metrics_at = 0.0
        # The longest Retry-After of the last cycle's answers (0: none asked for).
        self.asked_pause_s = 0.0

    def wake(self) -> None:
        """New readings were stored: look now rather than at the next poll."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="node-fhir-forwarder")
        log.info("fhir_forwarding_started", url=_safe_url(self.config.url),
                 batch_max=self.config.batch_max)

    async def stop(self) -> None:
        """Cancel the round in flight and give its claims back, so a restart resends them at
        once (the server's conditional create absorbs anything it already had)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._claimed:
            with contextlib.suppress(*DB_ERRORS):
                await self._queries.fhir_release(list(self._claimed))
            self._claimed.clear()
        await self._client.aclose()

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                handled, failed = await self.cycle()
                await self._refresh_metrics()
            except DB_ERRORS as err:
                log.warning("fhir_cycle_failed", error=type(err).__name__)
                handled, failed, self.asked_pause_s = 0, True, 0.0
            except Exception as err:  # a bug must not end forwarding for good, nor leak data
                log.error("fhir_cycle_crashed", error=type(err).__name__)
                handled, failed, self.asked_pause_s = 0, True, 0.0
            if failed:
                failures += 1
                # Not woken by new readings: during an outage that would be one request each.
                # Not before the server asked either (Retry-After).
                await asyncio.sleep(max(backoff(failures, self.config.backoff_base_s,
                                                cap_s=self.config.backoff_cap_s),
                                        self.asked_pause_s))
                continue
            failures = 0
            if handled >= self.config.batch_max:
                continue  # more may be due now
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.poll_s)

    async def cycle(self) -> tuple[int, bool]:
        """Claim, send and settle one batch: (rows handled, whether the request failed as a
        whole, so the server is not to be asked again at once)."""
        rows = await self._queries.fhir_claim(self.config.batch_max, self.config.lease)
        if not rows:
            return 0, False
        claimed = [self._prepare(r) for r in sorted(rows, key=lambda r: r.measured_at)]
        self._claimed.update(c.event_id for c in claimed)
        try:
            results = [Result(c.event_id, "dead", "not_sendable", None, c.not_sent)
                       for c in claimed if c.entry is None]
            sendable = [c for c in claimed if c.entry is not None]
            if sendable:
                results += await self._send(sendable)
            await self._settle(claimed, results)
        finally:
            self._claimed.difference_update(c.event_id for c in claimed)
        failed = bool(sendable) and all(r.outcome == "retry" for r in results
                                        if r.kind != "not_sendable")
        self.asked_pause_s = max((r.retry_after_s for r in results
                                  if r.retry_after_s is not None), default=0.0)
        return len(claimed), failed

    def _prepare(self, row: FhirClaim) -> _Claimed:
        try:
            event, refs = fhir_bundle.decode_copy(row.content, row.subjects)
            built = fhir_bundle.entry(event, refs, self.config.identifiers)
        except NotSent as err:
            return _Claimed(row.event_id, row.attempts, None, err.reason)
        return _Claimed(row.event_id, row.attempts, built)

    async def _send(self, batch: Sequence[_Claimed]) -> list[Result]:
        body = msgspec.json.encode(fhir_bundle.transaction([c.entry for c in batch
                                                            if c.entry is not None]))
        started = time.monotonic()
        try:
            response = await self._client.post(self.config.url, content=body)
        except httpx.TimeoutException:
            return [self._retry(c, "timeout", None, "timeout") for c in batch]
        except httpx.HTTPError:
            return [self._retry(c, "connection", None, "connection failed") for c in batch]
        finally:
            REQUEST_SECONDS.observe(time.monotonic() - started)
        status = response.status_code
        if status in _SPLIT_STATUSES:
            if len(batch) == 1:
                return [_dead(batch[0].event_id, status, _phrase(status), response.content)]
            half = len(batch) // 2
            log.info("fhir_bundle_refused_splitting", status=status, entries=len(batch))
            return await self._send(batch[:half]) + await self._send(batch[half:])
        if not 200 <= status < 300:
            kind = "server_error" if status >= 500 else "refused"
            wait = retry_after.seconds(response.headers.get("retry-after")) \
                if status in (429, 503) else None
            return [Result(c.event_id, "retry", kind, status, _phrase(status), wait)
                    for c in batch]
        answers = _entry_statuses(response.content, len(batch))
        if answers is None:
            return [self._retry(c, "answer", status, "answer not understood") for c in batch]
        results: list[Result] = []
        for claimed, (entry_status, outcome) in zip(batch, answers, strict=True):
            if entry_status in (200, 201):
                results.append(Result(claimed.event_id, "done",
                                      "created" if entry_status == 201 else "existing",
                                      entry_status))
            elif 400 <= entry_status < 500:
                results.append(_dead(claimed.event_id, entry_status, _phrase(entry_status),
                                     outcome))
            else:
                kind = "server_error" if entry_status >= 500 else "answer"
                results.append(self._retry(claimed, kind, entry_status or None,
                                           _phrase(entry_status) if entry_status
                                           else "no answer for this entry"))
        return results

    def _retry(self, claimed: _Claimed, kind: str, status: int | None, reason: str) -> Result:
        return Result(claimed.event_id, "retry", kind, status, reason)

    async def _settle(self, claimed: Sequence[_Claimed], results: Sequence[Result]) -> None:
        attempts = {c.event_id: c.attempts for c in claimed}
        # A retry is never due sooner than the server asked (Retry-After).
        delays = [max(backoff(attempts[r.event_id], self.config.backoff_base_s,
                              cap_s=self.config.backoff_cap_s), r.retry_after_s or 0.0)
                  if r.outcome == "retry" else 0.0 for r in results]
        await self._queries.fhir_settle([
            FhirSettlement(r.event_id, r.outcome, delay, r.status, r.reason)
            for r, delay in zip(results, delays, strict=True)])
        for r in results:
            if r.outcome == "done":
                FORWARDED.labels(r.kind).inc()
            else:
                FAILED.labels(r.outcome, r.kind).inc()
            if r.outcome == "dead":
                log.warning("fhir_entry_dead", event_id=str(r.event_id), status=r.status,
                            reason=r.reason)
        counts = {o: sum(1 for r in results if r.outcome == o) for o in ("done", "retry", "dead")}
        retry_reasons = sorted({r.reason for r in results if r.outcome == "retry" and r.reason})
        log.info("fhir_batch", entries=len(results), **counts,
                 **({"retry_reasons": retry_reasons} if retry_reasons else {}))

    async def _refresh_metrics(self) -> None:
        now = time.monotonic()
        if now - self._metrics_at < self.config.metrics_every_s:
            return
        self._metrics_at = now
        counts = await self._queries.fhir_counts()
        PENDING.set(counts.pending)
        DEAD.set(counts.dead)
        OLDEST_PENDING.set(counts.oldest_pending_s or 0.0)


def _phrase(status: int) -> str:
    """The HTTP reason phrase, lower case: letters and spaces only."""
    return safe_reason(httpx.codes.get_reason_phrase(status) or "http error")


def _dead(event_id: uuid.UUID, status: int, phrase: str, outcome: Any) -> Result:
    reason = safe_reason(" ".join(["rejected", phrase, *_issue_codes(outcome)]), limit=120)
    return Result(event_id, "dead", "rejected", status, reason)


def _issue_codes(outcome: Any) -> list[str]:
    """The issue codes of an OperationOutcome (a FHIR value set: no personal data can be in
    them), from a resource or a response body; never its diagnostics or text."""
    if isinstance(outcome, bytes | str):
        try:
            outcome = msgspec.json.decode(outcome)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return []
    issues = outcome.get("issue") if isinstance(outcome, dict) else None
    if not isinstance(issues, list):
        return []
    found: list[str] = []
    for issue in issues:
        code = issue.get("code") if isinstance(issue, dict) else None
        if isinstance(code, str) and code not in found:
            found.append(code)
    return found[:3]


def _entry_statuses(body: bytes, expected: int) -> list[tuple[int, Any]] | None:
    """(status, outcome) per entry of a transaction-response, in order; None when the answer
    is not one, or has not one entry per request entry. Status 0: the entry has none."""
    try:
        doc = msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or doc.get("resourceType") != "Bundle" or doc.get("type") not in (
            "transaction-response", "batch-response"):
        return None
    entries = doc.get("entry")
    if not isinstance(entries, list) or len(entries) != expected:
        return None
    out: list[tuple[int, Any]] = []
    for e in entries:
        response = e.get("response") if isinstance(e, dict) else None
        text = response.get("status") if isinstance(response, dict) else None
        head = text.split(" ", 1)[0] if isinstance(text, str) else ""
        status = int(head) if head.isascii() and head.isdigit() and len(head) == 3 else 0
        out.append((status, response.get("outcome") if isinstance(response, dict) else None))
    return out
