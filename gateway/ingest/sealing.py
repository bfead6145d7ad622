"""From canonical events to what ingest stores: clear metadata, one sealed copy per owner.

For each event, `routing.route` decides the owners from the device's assignments at the time
of measurement; each owning huvudman gets its own copy, sealed to its public key
(`crypto.Sealer`), and a delivery row. What no huvudman owns is sealed to HMC's quarantine key and
expires; an alarm nobody claims also goes to the fallback alarm receiver and raises an incident.

Everything here happens in memory, for a whole batch, before the one transaction that stores it
(docs/architecture.md, Invariants: route and seal in memory, no round trip per reading).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import ClassVar

import msgspec

from adapters.events import Alarm, Event, kind_of
from gateway.crypto import HuvudmanPublicKey, Sealer, parse_header
from gateway.ingest.pipeline import CommittedBatch, Stage
from gateway.ownership.keyring import QUARANTINE, RELAY, pseudonymizer, quarantine_key, relay_key
from gateway.ownership.registry import Registry
from gateway.ownership.routing import AssignmentIndex, Destination, Routing
from gateway.settings import Settings
from gateway.store.events import BatchRows, CopyRow, DeliveryRow, EventRow, IncidentRow

QUARANTINE_SUBJECT = "quarantine"
RELAY_SUBJECT = "alarm-relay"


class Subject(msgspec.Struct, frozen=True, omit_defaults=True):
    """An assignment the copy came under. Its subject reference is sealed to the huvudman once
    per assignment and delivered once (docs/delivery.md, format 2); the copy carries the
    digest of that sealed reference, which the node checks the one it holds against
    (gateway.crypto.subject). Copies sealed before format 2 carry the sealed reference itself."""

    assignment_id: uuid.UUID
    sealed_ref: bytes | None = None  # format 1 only
    digest: bytes | None = None  # format 2: subject_digest(the assignment's sealed reference)


class CopyPlaintext(msgspec.Struct, frozen=True):
    """What a huvudman's node finds inside its envelope."""

    event: Event
    subjects: tuple[Subject, ...] = ()
    routed_at: datetime | None = None
    clock_fallback: bool = False


class RelayPlaintext(msgspec.Struct, frozen=True):
    """What the alarm relay finds in its copy: the alarm, and the alarm centres that may see
    its position (the position is left out when none may)."""

    event: Alarm
    positions_for: tuple[str, ...] = ()


def epoch_of(at: datetime) -> int:
    """Key epoch: the UTC month, as 202611. Data keys then line up with monthly partitions, so
    retention can shred a month's keys when it drops that month's partitions."""
    return at.year * 100 + at.month


def event_type(event: Event) -> str:
    return str(type(event).__struct_config__.tag)


_encoder = msgspec.json.Encoder()


class Sealing:
    def __init__(self, sealer: Sealer, index: Callable[[], AssignmentIndex], *,
                 fallback_alarm_receiver: str, quarantine_ttl: timedelta,
                 quarantine_key: HuvudmanPublicKey,
                 relay_key: HuvudmanPublicKey | None = None,
                 arc_receivers: frozenset[str] = frozenset(), arc_lease_s: float = 0.0) -> None:
        if arc_receivers and relay_key is None:
            raise ValueError("alarm centres are configured but the alarm relay's key is not")
        self._sealer = sealer
        self._quarantine_key = quarantine_key
        self._relay_key = relay_key
        self._arc_receivers = arc_receivers
        self._arc_lease_s = arc_lease_s
        self._index = index
        self._fallback = fallback_alarm_receiver
        self._quarantine_ttl = quarantine_ttl

    @property
    def sealer(self) -> Sealer:
        return self._sealer

    def forget_cached_keys(self) -> None:
        """Keys were destroyed (crypto-shredding): never seal under a cached copy of one. Every
        subject gets a fresh data key on its next reading."""
        current = self._sealer.public_keys
        self._sealer.replace_public_keys({})
        self._sealer.replace_public_keys(current)

    def replace_public_keys(self, keys: dict[str, HuvudmanPublicKey]) -> None:
        """New or rotated huvudman keys (registry reload); HMC's own keys stay."""
        own = {QUARANTINE: self._quarantine_key}
        if self._relay_key is not None:
            own[RELAY] = self._relay_key
        self._sealer.replace_public_keys(keys | own)

    def prepare(self, events: Sequence[Event]) -> BatchRows:
        index = self._index()
        rows = BatchRows()
        for event in events:
            routing = index.route(event, fallback_alarm_receiver=self._fallback)
            rows.events.append(EventRow(
                event_id=event.event_id, measured_at=event.measured_at,
                received_at=event.received_at, device_id=event.device_id,
                event_type=event_type(event), kind=kind_of(event),
                code=getattr(event, "code", None), source=event.source,
                flags=tuple(event.flags), routed_at=routing.routed_at,
                quarantined=routing.quarantined))
            self._seal_copies(event, routing, rows)
            if routing.incident is not None:
                rows.incidents.append(IncidentRow(event.event_id, event.device_id,
                                                  routing.incident.reason))
        return rows

    stage: ClassVar[Stage] = Stage.CONFIRM

    def committed(self, batch: CommittedBatch) -> None:
        """The wrapped keys in the batch are stored: stop handing them out."""
        self._sealer.confirm(batch.rows.data_keys.values())

    def _seal_copies(self, event: Event, routing: Routing, rows: BatchRows) -> None:
        epoch = epoch_of(routing.routed_at)
        kind = kind_of(event)
        by_huvudman: dict[str, list[Destination]] = {}
        for dest in routing.destinations:
            if dest.huvudman is not None:
                by_huvudman.setdefault(dest.huvudman, []).append(dest)
            else:  # the fallback alarm receiver, run by HMC: sealed to the quarantine key
                rows.deliveries.append(DeliveryRow(event.event_id, None, None, dest.lane,
                                                   dest.alarm_receiver))
        for huvudman, dests in by_huvudman.items():
            # One copy per huvudman even when it holds two assignments (HSL and SoL): its node
            # stores its data once and learns every assignment it came under.
            first = dests[0]
            plain = CopyPlaintext(
                event=_without_position(event) if not first.include_position else event,
                subjects=tuple(Subject(d.assignment_id, digest=d.subject_digest) for d in dests
                               if d.assignment_id is not None),
                routed_at=routing.routed_at, clock_fallback=routing.clock_fallback)
            self._add_copy(rows, event, huvudman, first.subject_key or "", epoch, kind, plain,
                           expires_at=None)
            rows.deliveries.append(DeliveryRow(
                event.event_id, huvudman, first.assignment_id, first.lane, first.alarm_receiver,
                more_assignment_ids=tuple(d.assignment_id for d in dests[1:]
                                          if d.assignment_id is not None)))
        if routing.quarantined or any(d.fallback for d in routing.destinations):
            expires = (event.received_at + self._quarantine_ttl if routing.quarantined
                       else None)  # an unclaimed alarm is kept like any alarm
            self._add_copy(rows, event, QUARANTINE, QUARANTINE_SUBJECT, epoch, kind,
                           CopyPlaintext(event=event, routed_at=routing.routed_at,
                                         clock_fallback=routing.clock_fallback),
                           expires_at=expires)
        if self._arc_receivers and isinstance(event, Alarm):
            self._relay(event, routing, epoch, kind, rows)

    def _relay(self, event: Alarm, routing: Routing, epoch: int, kind: str,
               rows: BatchRows) -> None:
        """One ARC delivery per alarm centre the alarm is routed to, and one relay copy."""
        arcs: dict[str, Destination] = {}
        with_position: set[str] = set()
        for dest in routing.destinations:
            receiver = dest.alarm_receiver
            if receiver is None or receiver not in self._arc_receivers:
                continue
            arcs.setdefault(receiver, dest)
            if dest.include_position and event.position is not None:
                with_position.add(receiver)
        if not arcs:
            return
        plain = RelayPlaintext(event=event if with_position
                               else msgspec.structs.replace(event, position=None),
                               positions_for=tuple(sorted(with_position)))
        self._add_copy(rows, event, RELAY, RELAY_SUBJECT, epoch, kind, plain, expires_at=None)
        for receiver, dest in arcs.items():
            rows.deliveries.append(DeliveryRow(
                event.event_id, dest.huvudman, dest.assignment_id, dest.lane, receiver,
                target="arc", delay_s=self._arc_lease_s,
                with_position=receiver in with_position))

    def _add_copy(self, rows: BatchRows, event: Event, recipient: str, subject_key: str,
                  epoch: int, kind: str, plain: CopyPlaintext | RelayPlaintext,
                  expires_at: datetime | None) -> None:
        sealed = self._sealer.seal(_encoder.encode(plain), event_id=event.event_id,
                                   huvudman=recipient, subject_ref=subject_key, epoch=epoch,
                                   kind=kind)
        if sealed.new_wrapped_key is not None:
            rows.data_keys[sealed.new_wrapped_key.key_id] = sealed.new_wrapped_key
        rows.copies.append(CopyRow(event.event_id, event.measured_at, recipient,
                                   parse_header(sealed.envelope).key_id, sealed.envelope,
                                   expires_at))


def _without_position(event: Event) -> Event:
    if isinstance(event, Alarm) and event.position is not None:
        return msgspec.structs.replace(event, position=None)
    return event


def build_sealing(settings: Settings, registry: Registry, *,
                  arc_receivers: frozenset[str] = frozenset(),
                  arc_lease_s: float = 0.0) -> Sealing:
    """`arc_receivers`: the alarm routes that are alarm centres; their alarms get a relay copy
    (`arc_lease_s`: stored leased to this instance, which sends them at once)."""
    quarantine = quarantine_key(settings)
    relay = relay_key(settings) if arc_receivers else None
    own = {QUARANTINE: quarantine} | ({RELAY: relay} if relay is not None else {})
    sealer = Sealer(registry.snapshot.public_keys | own, pseudonymizer(settings))
    return Sealing(sealer, registry.assignment_index,
                   fallback_alarm_receiver=settings.fallback_alarm_receiver,
                   quarantine_ttl=timedelta(seconds=settings.quarantine_ttl_s),
                   quarantine_key=quarantine, relay_key=relay, arc_receivers=arc_receivers,
                   arc_lease_s=arc_lease_s)
