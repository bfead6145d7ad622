"""Ownership end to end: who gets a reading, sealed so only they can read it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
import msgspec
import pytest

from adapters import native
from gateway.crypto import (
    CryptoError,
    IntegrityError,
    KeySuite,
    Opener,
    WrappedKey,
    WrongRecipientError,
)
from gateway.crypto.subject import open_subject, subject_digest
from gateway.ingest.sealing import Subject
from gateway.ownership import key_management
from gateway.store.connector import Store
from tests.support import FakeDevice, Keys, RunningGateway, open_copies, register_device

pytestmark = pytest.mark.integration
SUBJECT_REGION = "test-subject-19121212-1212-region"
SUBJECT_KOMMUN = "test-subject-19121212-1212-gbg"


async def _send(gateway: RunningGateway, device: FakeDevice, body: bytes) -> dict[str, list[str]]:
    async with httpx.AsyncClient(base_url=gateway.http) as client:
        answer = await client.post(f"/v1/devices/{device.id}/readings", content=body,
                                   headers={"Authorization": f"Bearer {device.token}"})
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def _weight(at: datetime, value: float) -> bytes:
    return native.encode_message([native.encode_reading("weight", at, value=value, unit="kg")])


async def _shared_scale(store: Store, gateway: RunningGateway) -> FakeDevice:
    device = await register_device(store, assignments=[
        {"huvudman": "14", "subject_ref": SUBJECT_REGION, "legal_basis": "HSL",
         "kinds": ["weight"], "valid_from": "2026-01-01T00:00:00+00:00"},
        {"huvudman": "1480", "subject_ref": SUBJECT_KOMMUN, "legal_basis": "SoL",
         "kinds": ["weight"], "valid_from": "2026-01-01T00:00:00+00:00"}])
    await gateway.knows(device)
    return device


async def test_one_scale_feeds_region_and_kommun_each_reading_only_its_own(
        gateway: RunningGateway, store: Store, keys: Keys) -> None:
    device = await _shared_scale(store, gateway)
    (event_id,) = (await _send(gateway, device, _weight(datetime(2026, 11, 1, 8, tzinfo=UTC),
                                                        81.3)))["accepted"]
    eid = uuid.UUID(event_id)
    copies = await open_copies(store, keys, eid)
    assert set(copies) == {"14", "1480"}
    assert copies["14"].event.values[0].value == 81.3
    # Each node opens its own subject reference; the gateway stored only sealed ones, once per
    # assignment, and each copy names its assignment and the digest of that sealed reference.
    async def sealed(subject: Subject) -> bytes:
        blob = await store.pool.fetchval("SELECT subject_sealed FROM assignment WHERE id = $1",
                                         subject.assignment_id)
        assert subject.sealed_ref is None and subject.digest == subject_digest(blob)
        return bytes(blob)

    assert [open_subject(keys.private("14"), s.assignment_id, await sealed(s))
            for s in copies["14"].subjects] == [SUBJECT_REGION]
    assert [open_subject(keys.private("1480"), s.assignment_id, await sealed(s))
            for s in copies["1480"].subjects] == [SUBJECT_KOMMUN]
    region_subject = copies["14"].subjects[0]
    with pytest.raises(CryptoError):  # not openable by another huvudman's key
        open_subject(keys.private("1480"), region_subject.assignment_id,
                     await sealed(region_subject))
    deliveries = await store.pool.fetch(
        "SELECT huvudman, lane FROM delivery WHERE event_id = $1 ORDER BY huvudman", eid)
    assert [(d["huvudman"], d["lane"]) for d in deliveries] == [("14", "bulk"), ("1480", "bulk")]

    # The region's key opens nothing of Göteborg's: not the data key, not the envelope.
    row = await store.pool.fetchrow(
        "SELECT c.envelope, k.* FROM event_copy c JOIN data_key k USING (key_id)"
        " WHERE c.event_id = $1 AND c.recipient = '1480'", eid)
    with pytest.raises(WrongRecipientError):
        Opener("1480", [keys.private("14")])
    region = Opener("14", [keys.private("14")])
    wrapped = WrappedKey(key_id=bytes(row["key_id"]), huvudman=row["huvudman"],
                         subject_pseudonym=bytes(row["subject_pseudonym"]), epoch=row["epoch"],
                         recipient_key_id=bytes(row["recipient_key_id"]),
                         suite=KeySuite(row["suite"]), wrapped=bytes(row["wrapped"]))
    with pytest.raises(WrongRecipientError):
        region.open(bytes(row["envelope"]), event_id=eid, kind="weight", wrapped_key=wrapped)
    # Relabelled as the region's, the wrapped key still does not unwrap: HPKE binds its owner.
    forged = msgspec.structs.replace(wrapped, huvudman="14",
                                     recipient_key_id=keys.private("14").key_id)
    with pytest.raises(IntegrityError):
        region.open(bytes(row["envelope"]), event_id=eid, kind="weight", wrapped_key=forged)


async def test_ingest_stores_no_value_and_no_subject_reference_in_clear(
        gateway: RunningGateway, store: Store) -> None:
    device = await _shared_scale(store, gateway)
    (event_id,) = (await _send(gateway, device, _weight(datetime(2026, 11, 2, 8, tzinfo=UTC),
                                                        93.7)))["accepted"]
    eid = uuid.UUID(event_id)
    stored = b"".join([
        msgspec.json.encode([list(r.values()) for r in await store.pool.fetch(
            f"SELECT * FROM {table} WHERE event_id = $1", eid)], enc_hook=_bytes)
        for table in ("event", "event_copy", "delivery")])
    stored += msgspec.json.encode([list(r.values()) for r in await store.pool.fetch(
        "SELECT k.* FROM data_key k JOIN event_copy c USING (key_id) WHERE c.event_id = $1",
        eid)], enc_hook=_bytes)
    stored += msgspec.json.encode([list(r.values()) for r in await store.pool.fetch(
        "SELECT * FROM assignment WHERE device_id = $1", device.id)], enc_hook=_bytes)
    stored += msgspec.json.encode([list(r.values()) for r in await store.pool.fetch(
        "SELECT * FROM audit_log WHERE details->>'device' = $1", device.id)], enc_hook=_bytes)
    for secret in (b"93.7", SUBJECT_REGION.encode(), SUBJECT_KOMMUN.encode(), b"19121212"):
        assert secret not in stored
    assert stored  # the rows exist: this is not an empty comparison


def _bytes(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


async def test_return_and_reissue_late_batch_goes_to_the_owner_at_measurement_time(
        gateway: RunningGateway, store: Store, keys: Keys) -> None:
    """Lent to a Borås user, returned on 1 Nov, reissued to a Mölndal user on 3 Nov; the device
    then uploads its offline buffer holding readings from before and after."""
    device = await register_device(store, assignments=[
        {"huvudman": "1490", "subject_ref": "test-old-user", "legal_basis": "SoL",
         "kinds": ["weight"], "valid_from": "2026-06-01T00:00:00+00:00",
         "valid_to": "2026-11-01T00:00:00+00:00"},
        {"huvudman": "1481", "subject_ref": "test-new-user", "legal_basis": "SoL",
         "kinds": ["weight"], "valid_from": "2026-11-03T00:00:00+00:00"}])
    await gateway.knows(device)
    old, gap, new = (datetime(2026, 10, 31, 23, 59, tzinfo=UTC),
                     datetime(2026, 11, 2, 12, tzinfo=UTC), datetime(2026, 11, 3, 0, tzinfo=UTC))
    batch = native.encode_message([
        native.encode_reading("weight", t, value=v, unit="kg")
        for t, v in ((old, 70.0), (gap, 71.0), (new, 72.0))])
    ids = [uuid.UUID(i) for i in (await _send(gateway, device, batch))["accepted"]]
    recipients = [set(await open_copies(store, keys, i)) for i in ids]
    assert recipients == [{"1490"}, {"hmc-quarantine"}, {"1481"}]
    gap_row = await store.pool.fetchrow(
        "SELECT e.quarantined, c.expires_at FROM event e JOIN event_copy c"
        " USING (event_id, measured_at) WHERE event_id = $1", ids[1])
    assert gap_row["quarantined"] and gap_row["expires_at"] is not None
    assert await store.pool.fetchval("SELECT count(*) FROM delivery WHERE event_id = $1",
                                     ids[1]) == 0


async def test_unclaimed_alarm_goes_to_the_fallback_receiver_and_raises_an_incident(
        gateway: RunningGateway, store: Store, keys: Keys) -> None:
    device = await register_device(store)  # in stock: no assignment at all
    await gateway.knows(device)
    body = native.encode_message([], alarms=[{"type": "fall", "priority": 9,
                                              "time": "2026-11-20T03:12:00+00:00"}])
    (event_id,) = (await _send(gateway, device, body))["accepted"]
    eid = uuid.UUID(event_id)
    delivery = await store.pool.fetchrow(
        "SELECT huvudman, receiver, lane FROM delivery WHERE event_id = $1", eid)
    fallback = gateway.settings.fallback_alarm_receiver
    assert dict(delivery) == {"huvudman": None, "receiver": fallback, "lane": "alarm"}
    incident = await store.pool.fetchval("SELECT reason FROM incident WHERE event_id = $1", eid)
    assert incident == "unclaimed_alarm"
    assert set(await open_copies(store, keys, eid)) == {"hmc-quarantine"}


async def test_rotated_key_seals_new_data_from_then_on(
        gateway: RunningGateway, store: Store, keys: Keys, tmp_path: object) -> None:
    device = await register_device(store, assignments=[
        {"huvudman": "1499", "subject_ref": "test-rotation", "legal_basis": "SoL",
         "kinds": ["weight"], "valid_from": "2026-01-01T00:00:00+00:00"}])
    await gateway.knows(device)
    before = uuid.UUID((await _send(gateway, device, _weight(
        datetime(2026, 11, 5, 8, tzinfo=UTC), 60.0)))["accepted"][0])
    old_key = await store.pool.fetchval(
        "SELECT k.recipient_key_id FROM data_key k JOIN event_copy c USING (key_id)"
        " WHERE c.event_id = $1", before)

    from pathlib import Path
    folder = Path(str(tmp_path))
    new_private, _, new_public = key_management.write_keypair(folder, "1499")
    await key_management.register(store, key_management.read_public(new_public), rotate=True)
    registry = gateway.runtime.registry
    for _ in range(200):
        if registry.snapshot.public_keys["1499"].key_id == new_private.key_id:
            break
        import asyncio
        await asyncio.sleep(0.01)
    after = uuid.UUID((await _send(gateway, device, _weight(
        datetime(2026, 11, 5, 9, tzinfo=UTC), 60.5)))["accepted"][0])
    new_key = await store.pool.fetchval(
        "SELECT k.recipient_key_id FROM data_key k JOIN event_copy c USING (key_id)"
        " WHERE c.event_id = $1", after)
    assert bytes(old_key) != bytes(new_key) == new_private.key_id
    retired = await store.pool.fetchval(
        "SELECT retired_at FROM huvudman_key WHERE key_id = $1", old_key)
    assert retired is not None
    # Restore the test run's key for the tests after this one.
    await key_management.register(store, keys.private("1499").public_key(), rotate=True)
