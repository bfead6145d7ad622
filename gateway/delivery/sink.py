"""The sink contract: what a destination of deliveries promises, per item, and the circuit
breaker the dispatcher keeps per sink.

A sink answers per item: DONE (stored, or the receiver already had it), RETRY(reason) (try
again later) or REJECTED(reason) (the dead-letter queue at once). A request that failed as a
whole (5xx, 429, 401/403, timeout, connection error, an answer that does not decode) is RETRY
for every item: a configuration error must never turn data into dead letters. Reasons are
short and fixed, or the receiver's reason reduced to letters (`safe_reason`), so no value can
reach `last_error` or a log.

The implementations: `webhook.WebhookSink`, `mqtt_bridge.MqttBridgeSink`; `sink_config` builds
them from config/sinks.toml.
"""

from __future__ import annotations

import enum
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.delivery import wire


class Verdict(enum.Enum):
    """What a sink says of one item."""

    DONE = "done"
    RETRY = "retry"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class ItemResult:
    verdict: Verdict
    reason: str | None = None
    # The request failed in a way that must stop sending at once (401/403: configuration).
    open_breaker: bool = False
    # The receiver asked not to be sent anything for this long (429/503 `Retry-After`).
    retry_after_s: float | None = None


DONE = ItemResult(Verdict.DONE)


def RETRY(reason: str, *, open_breaker: bool = False,
          retry_after_s: float | None = None) -> ItemResult:
    return ItemResult(Verdict.RETRY, reason, open_breaker, retry_after_s)


def REJECTED(reason: str) -> ItemResult:
    return ItemResult(Verdict.REJECTED, reason)


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

    async def send(self, items: Sequence[wire.Item],
                   subjects: Sequence[wire.SubjectLine] = ()) -> Sequence[ItemResult]:
        """Deliver `items`, and before them the `subjects` they need (format 2)."""
        ...

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

    def record(self, ok: bool, *, open_now: bool = False, open_for: float | None = None,
               now: float | None = None) -> None:
        """`open_for`: the receiver asked for that pause (`Retry-After`): open for exactly
        that long, at once."""
        now = time.monotonic() if now is None else now
        trial, self.trial_in_flight = self.trial_in_flight, False
        if ok:
            self.failures = 0
            self.open_until = None
            return
        self.failures += 1
        if open_for is not None:
            self.open_until = now + open_for
        elif trial or open_now or self.failures >= self.threshold:
            self.open_until = now + self.open_s


RECEIVER_PREFIX = "receiver:"


def destination(huvudman: str | None, receiver: str | None) -> str:
    """The key a delivery's sink is found by: its huvudman, else its (fallback) receiver."""
    return huvudman if huvudman is not None else f"{RECEIVER_PREFIX}{receiver}"
