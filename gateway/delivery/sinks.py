"""Where deliveries go: the `Sink` protocol, its per-item results, a circuit breaker per sink,
the webhook sink and its configuration (`config/sinks.toml`).

A sink answers per item: DONE (stored, or the receiver already had it), RETRY(reason) (try
again later) or REJECTED(reason) (the dead-letter queue at once). A request that failed as a
whole (5xx, 429, 401/403, timeout, connection error, an answer that does not decode) is RETRY
for every item: a configuration error must never turn data into dead letters. Reasons are
short and fixed, or the receiver's reason reduced to letters (`safe_reason`), so no value can
reach `last_error` or a log.
"""

from __future__ import annotations

import enum
import os
import re
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Protocol, Self

import httpx
import msgspec
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from gateway.delivery import wire


class Outcome(enum.Enum):
    DONE = "done"
    RETRY = "retry"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class ItemResult:
    outcome: Outcome
    reason: str | None = None
    # The request failed in a way that must stop sending at once (401/403: configuration).
    open_breaker: bool = False


DONE = ItemResult(Outcome.DONE)


def RETRY(reason: str, *, open_breaker: bool = False) -> ItemResult:
    return ItemResult(Outcome.RETRY, reason, open_breaker)


def REJECTED(reason: str) -> ItemResult:
    return ItemResult(Outcome.REJECTED, reason)


_UNSAFE = re.compile(r"[^a-z _-]+")


def safe_reason(text: str | None, *, limit: int = 80) -> str:
    """A receiver's free-text reason reduced to lower-case letters, spaces, `_` and `-`: no
    digits or punctuation can carry a value or an identifier into last_error."""
    cleaned = " ".join(_UNSAFE.sub(" ", (text or "").lower()).split())
    return cleaned[:limit] or "unspecified"


class Sink(Protocol):
    name: str  # for the circuit breaker and metrics
    batch_max: int  # items per request
    timeout_s: float  # the longest one request may take

    async def send(self, items: Sequence[wire.Item]) -> Sequence[ItemResult]: ...

    async def aclose(self) -> None: ...


class Breaker:
    """Per-sink circuit breaker: after `threshold` consecutive failed requests it opens for
    `open_s`; then one trial request is let through, whose result closes or reopens it."""

    def __init__(self, threshold: int = 5, open_s: float = 30.0) -> None:
        self.threshold = threshold
        self.open_s = open_s
        self.failures = 0
        self.open_until: float | None = None
        self.trial_in_flight = False

    @property
    def is_open(self) -> bool:
        return self.open_until is not None

    def allow(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if self.open_until is None:
            return True
        if now < self.open_until or self.trial_in_flight:
            return False
        self.trial_in_flight = True
        return True

    def retry_in(self, now: float | None = None) -> float:
        """Seconds until a request may go again (for items held back while open)."""
        now = time.monotonic() if now is None else now
        if self.open_until is None:
            return 0.0
        return max(self.open_until - now, 0.0) + (1.0 if self.trial_in_flight else 0.0)

    def record(self, ok: bool, *, open_now: bool = False, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        trial, self.trial_in_flight = self.trial_in_flight, False
        if ok:
            self.failures = 0
            self.open_until = None
            return
        self.failures += 1
        if trial or open_now or self.failures >= self.threshold:
            self.open_until = now + self.open_s


class WebhookSink:
    """POSTs a signed NDJSON batch (gateway.delivery.wire) to one huvudman's endpoint."""

    def __init__(self, name: str, url: str, secret: bytes, *, batch_max: int = 500,
                 timeout_s: float = 10.0, client: httpx.AsyncClient | None = None) -> None:
        self.name = name
        self.url = url
        self.batch_max = batch_max
        self.timeout_s = timeout_s
        self._secret = secret
        self._client = client or httpx.AsyncClient(timeout=timeout_s)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(self, items: Sequence[wire.Item]) -> Sequence[ItemResult]:
        body = wire.encode_batch(items)
        timestamp = int(time.time())
        headers = {"Content-Type": wire.CONTENT_TYPE,
                   wire.TIMESTAMP_HEADER: str(timestamp),
                   wire.SIGNATURE_HEADER: wire.sign(self._secret, timestamp, body)}
        try:
            answer = await self._client.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException:
            return [RETRY("timeout")] * len(items)
        except httpx.HTTPError:
            return [RETRY("connection failed")] * len(items)
        status = answer.status_code
        if status in (401, 403):
            return [RETRY(f"http {status}", open_breaker=True)] * len(items)
        if not 200 <= status < 300:
            # 5xx and 429 as the design says; any other 4xx too: a receiver's or a
            # configuration's fault must not dead-letter data.
            return [RETRY(f"http {status}")] * len(items)
        if not answer.content.strip():
            return [DONE] * len(items)
        try:
            decoded = wire.decode_answer(answer.content)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return [RETRY("answer not understood")] * len(items)
        by_id = {r.event_id: r for r in decoded.results}
        return [_item_result(by_id.get(str(i.event_id))) for i in items]


def _item_result(status: wire.ItemStatus | None) -> ItemResult:
    if status is None:
        return RETRY("no answer for item")
    if status.status in ("stored", "duplicate"):
        return DONE
    if status.status == "rejected":
        return REJECTED("rejected: " + safe_reason(status.reason))
    return RETRY("unknown item status")


# --- configuration --------------------------------------------------------------------------

Code = Annotated[str, StringConstraints(pattern=r"^[0-9]{2,4}$")]
Receiver = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]


class WebhookSpec(BaseModel):
    """One `[[webhook]]`: for a huvudman, or (`receiver`) for HMC's fallback alarm receiver."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    huvudman: Code | None = None
    receiver: Receiver | None = None
    url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")]
    secret_file: Path | None = None
    secret_env: Annotated[str, StringConstraints(pattern=r"^[A-Z_][A-Z0-9_]*$")] | None = None
    batch_max: Annotated[int, Field(ge=1, le=5000)] = 500
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0

    @model_validator(mode="after")
    def _one_each(self) -> Self:
        if (self.huvudman is None) == (self.receiver is None):
            raise ValueError("give exactly one of huvudman and receiver")
        if (self.secret_file is None) == (self.secret_env is None):
            raise ValueError("give exactly one of secret_file and secret_env")
        return self

    @property
    def destination(self) -> str:
        return destination(self.huvudman, self.receiver)


class SinksFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    webhook: list[WebhookSpec] = []


class SinkConfigError(Exception):
    """A refusal naming the file, the entry and the field."""


RECEIVER_PREFIX = "receiver:"


def destination(huvudman: str | None, receiver: str | None) -> str:
    """The key a delivery's sink is found by: its huvudman, else its (fallback) receiver."""
    return huvudman if huvudman is not None else f"{RECEIVER_PREFIX}{receiver}"


def read_sinks(path: Path) -> dict[str, WebhookSpec]:
    """The webhooks of `path` by destination; no file means no sinks (deliveries wait)."""
    if not path.exists():
        return {}
    try:
        parsed = SinksFile.model_validate(tomllib.loads(path.read_text("utf-8")))
    except tomllib.TOMLDecodeError as err:
        raise SinkConfigError(f"{path}: not valid TOML: {err}") from None
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SinkConfigError(f"{path}: {where}: {first['msg']}") from None
    specs: dict[str, WebhookSpec] = {}
    for n, spec in enumerate(parsed.webhook):
        if spec.destination in specs:
            raise SinkConfigError(f"{path}: webhook.{n}: a second webhook for "
                                  f"{spec.destination}")
        specs[spec.destination] = spec
    return specs


def _secret(path: Path, n: int, spec: WebhookSpec) -> bytes:
    if spec.secret_env is not None:
        value = os.environ.get(spec.secret_env, "").strip()
        if not value:
            raise SinkConfigError(f"{path}: webhook.{n}.secret_env: {spec.secret_env} is not set")
        return value.encode()
    assert spec.secret_file is not None
    file = spec.secret_file if spec.secret_file.is_absolute() else path.parent / spec.secret_file
    try:
        value = file.read_text("utf-8").strip()
    except OSError as err:
        raise SinkConfigError(f"{path}: webhook.{n}.secret_file: cannot read {file}: "
                              f"{err.strerror}") from None
    if not value:
        raise SinkConfigError(f"{path}: webhook.{n}.secret_file: {file} is empty")
    return value.encode()


def build_sinks(path: Path) -> dict[str, Sink]:
    """Sinks by destination, from `path` (secrets read now: a missing one refuses start-up)."""
    specs = read_sinks(path)
    sinks: dict[str, Sink] = {}
    for n, (dest, spec) in enumerate(specs.items()):
        sinks[dest] = WebhookSink(f"webhook:{dest}", spec.url, _secret(path, n, spec),
                                  batch_max=spec.batch_max, timeout_s=spec.timeout_s)
    return sinks
