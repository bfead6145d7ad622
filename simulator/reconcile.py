"""What the simulated devices sent against what the gateway kept: the reconciliation that ends
every fault run (`make faults`).

The `Ledger` records each message a device sends (its readings, as device, kind and measured
time) and when the device got its acknowledgement: the broker's PUBACK over MQTT, a 200 over
HTTP. `reconcile` then asks the database what was stored for those devices and the receiver
what it was delivered, and counts:

- sent, acknowledged: readings;
- stored: acknowledged readings the database holds;
- delivered: acknowledged readings their owner's receiver has;
- lost: acknowledged readings missing from the database or, once delivery is done, from the
  receiver (a reading the device still holds unacknowledged is not lost: it sends it again);
- duplicates: readings stored under more than one event, or delivered as more than one.

The gateway promises lost = 0 and duplicates = 0 whatever the fault.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from rich.table import Table

from gateway.store.connector import Store

Key = tuple[str, str, datetime]  # device id, kind, measured at (UTC)


def key(device_id: str, kind: str, measured_at: datetime) -> Key:
    return device_id, kind, measured_at.astimezone(UTC)


@dataclass
class Message:
    device_id: str
    transport: str
    readings: tuple[Key, ...]
    sent_at: float
    acked_at: float | None = None


@dataclass
class Ledger:
    messages: list[Message] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def sent(self, device_id: str, transport: str, readings: Iterable[Key]) -> Message:
        message = Message(device_id, transport, tuple(readings), time.monotonic())
        with self._lock:
            self.messages.append(message)
        return message

    def acked(self, message: Message) -> None:
        with self._lock:
            if message.acked_at is None:
                message.acked_at = time.monotonic()

    @property
    def devices(self) -> list[str]:
        with self._lock:
            return sorted({m.device_id for m in self.messages})

    def readings(self, *, acked_only: bool = False) -> set[Key]:
        with self._lock:
            return {r for m in self.messages if not acked_only or m.acked_at is not None
                    for r in m.readings}

    def unacknowledged(self) -> int:
        with self._lock:
            return sum(1 for m in self.messages if m.acked_at is None)


@dataclass(frozen=True)
class Reconciliation:
    sent: int
    acknowledged: int
    stored: int
    delivered: int
    lost: int
    duplicates: int
    pending: int  # deliveries still queued when it was counted
    dead: int  # deliveries given up

    @property
    def ok(self) -> bool:
        return (self.lost == 0 and self.duplicates == 0 and self.acknowledged == self.sent
                and self.pending == 0 and self.dead == 0)

    def table(self, title: str) -> Table:
        table = Table("sent", "acknowledged", "stored", "delivered", "lost", "duplicates",
                      "pending", "dead", title=f"{title}: {'OK' if self.ok else 'FAILED'}")
        table.add_row(*(str(v) for v in (self.sent, self.acknowledged, self.stored,
                                          self.delivered, self.lost, self.duplicates,
                                          self.pending, self.dead)))
        return table

    def line(self) -> str:
        return (f"sent={self.sent} acknowledged={self.acknowledged} stored={self.stored} "
                f"delivered={self.delivered} lost={self.lost} duplicates={self.duplicates} "
                f"pending={self.pending} dead={self.dead}")


async def reconcile(ledger: Ledger, store: Store,
                    delivered: Iterable[uuid.UUID] | None = None) -> Reconciliation:
    """Count (module docstring). `delivered`: the event ids the owners' receivers hold; None
    where delivery is not part of the run."""
    sent = ledger.readings()
    acked = ledger.readings(acked_only=True)
    events = await store.reconciliation.events_of(ledger.devices)
    by_key: dict[Key, set[uuid.UUID]] = {}
    for e in events:
        by_key.setdefault(key(e.device_id, e.kind, e.measured_at), set()).add(e.event_id)
    stored = {k for k in acked if k in by_key}
    duplicates = sum(len(ids) - 1 for k, ids in by_key.items() if k in sent)
    # Only the deliveries of what the ledger sent: the devices may have sent more before it.
    sent_ids = {i for k in sent if k in by_key for i in by_key[k]}
    states = Counter(d.state for d in await store.reconciliation.deliveries_of(ledger.devices)
                     if d.target == "owner" and d.event_id in sent_ids)
    if delivered is None:
        got, undelivered = len(stored), 0
    else:
        have = set(delivered)
        reached = {k for k in stored if by_key[k] & have}
        got, undelivered = len(reached), len(stored) - len(reached)
    return Reconciliation(
        sent=len(sent), acknowledged=len(acked), stored=len(stored), delivered=got,
        lost=len(acked) - len(stored) + (undelivered if states["pending"] == 0 else 0),
        duplicates=duplicates, pending=states["pending"], dead=states["dead"])
