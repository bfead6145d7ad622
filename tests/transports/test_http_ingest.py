"""HTTP ingest against the real database: answers come after commit and say what happened."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import msgspec
import pytest

from gateway.store.connector import Store
from tests.support import FakeDevice, Keys, RunningGateway, open_copies, register_device

pytestmark = pytest.mark.integration


def _weight(value: float, minutes_ago: int = 0, unit: str = "kg") -> dict[str, object]:
    t = datetime(2026, 11, 20, 8, 0, tzinfo=UTC) - timedelta(minutes=minutes_ago)
    return {"type": "weight", "value": value, "unit": unit, "time": t.isoformat()}


async def _post(gateway: RunningGateway, device: FakeDevice, body: object,
                token: str | None = None, **kw: object) -> httpx.Response:
    headers = {} if token == "" else {"Authorization": f"Bearer {token or device.token}"}
    async with httpx.AsyncClient(base_url=gateway.http) as client:
        content = body if isinstance(body, bytes) else msgspec.json.encode(body)
        return await client.post(f"/v1/devices/{device.id}/readings", content=content,
                                 headers=headers | dict(kw.get("headers", {})))  # type: ignore[arg-type]


async def _stored(store: Store, device: FakeDevice) -> list[uuid.UUID]:
    rows = await store.pool.fetch(
        "SELECT event_id FROM event WHERE device_id = $1 ORDER BY measured_at", device.id)
    return [r["event_id"] for r in rows]


async def _value_for_region(store: Store, keys: Keys, event_id: uuid.UUID) -> float:
    """The reading as the region's node reads it, with the region's private key."""
    plain = (await open_copies(store, keys, event_id))["14"]
    return float(plain.event.values[0].value)


async def test_single_reading_is_stored_before_the_answer(gateway: RunningGateway, store: Store,
                                                          device: FakeDevice,
                                                          keys: Keys) -> None:
    answer = await _post(gateway, device, _weight(72.4))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert len(body["accepted"]) == 1 and body["duplicates"] == [] and body["rejected"] == []
    stored = await _stored(store, device)
    assert [str(e) for e in stored] == body["accepted"]
    assert await _value_for_region(store, keys, stored[0]) == 72.4


async def test_batch_keeps_good_items_and_names_each_bad_one(gateway: RunningGateway,
                                                             store: Store, keys: Keys,
                                                             device: FakeDevice) -> None:
    batch = {"readings": [
        _weight(70.1, 30),
        _weight(700, 20),                                   # impossible
        {"type": "weight", "value": "heavy", "time": "2026-11-20T08:00:00Z"},  # wrong type
        _weight(154.0, 10, unit="lb"),                      # converted to kg
        {"type": "weight", "value": 71, "time": "2026-11-20T08:00:00"},  # no offset
    ]}
    answer = await _post(gateway, device, batch)
    assert answer.status_code == 200
    body = answer.json()
    assert len(body["accepted"]) == 2
    assert {(r["index"], r["field"]) for r in body["rejected"]} == {
        (1, "readings[1].value"), (2, "readings[2].value"), (4, "readings[4].time")}
    assert "impossible" in body["rejected"][0]["reason"]
    assert all("700" not in r["reason"] for r in body["rejected"])  # values stay out of errors
    stored = await _stored(store, device)
    assert len(stored) == 2
    assert round(await _value_for_region(store, keys, stored[1]), 3) == 69.853  # 154 lb in kg


async def test_retry_of_the_same_request_stores_nothing_twice(gateway: RunningGateway,
                                                              store: Store,
                                                              device: FakeDevice) -> None:
    batch = {"readings": [_weight(80.0, 5), _weight(80.2, 4)]}
    first = (await _post(gateway, device, batch)).json()
    second = (await _post(gateway, device, batch)).json()
    assert len(first["accepted"]) == 2 and first["duplicates"] == []
    assert second["accepted"] == [] and sorted(second["duplicates"]) == sorted(first["accepted"])
    assert len(await _stored(store, device)) == 2


async def test_nothing_usable_is_422_with_reasons(gateway: RunningGateway,
                                                  device: FakeDevice) -> None:
    answer = await _post(gateway, device, b"{not json")
    assert answer.status_code == 422
    assert answer.json()["rejected"] == [{"field": "$", "reason": "malformed JSON"}]
    answer = await _post(gateway, device, {"v": 2, "readings": [_weight(70)]})
    assert answer.status_code == 422
    assert answer.json()["rejected"][0]["field"] == "v"


async def test_wrong_and_foreign_credentials(gateway: RunningGateway, store: Store,
                                             device: FakeDevice) -> None:
    other = await register_device(store)
    await gateway.knows(other)
    no_token = await _post(gateway, device, _weight(70), token="")
    assert no_token.status_code == 401
    wrong = await _post(gateway, device, _weight(70), token="not-a-real-token-at-all")
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    foreign = await _post(gateway, device, _weight(70), token=other.token)
    assert foreign.status_code == 403
    assert foreign.json() == {"error": "credentials belong to another device"}
    assert await _stored(store, device) == []


async def test_size_limit_and_content_type(gateway: RunningGateway, device: FakeDevice) -> None:
    huge = {"readings": [_weight(70.0 + i / 1000, i) for i in range(2000)]}
    answer = await _post(gateway, device, huge)
    assert answer.status_code == 413
    answer = await _post(gateway, device, b"<xml/>", headers={"Content-Type": "text/xml"})
    assert answer.status_code == 415


async def _rejected(gateway: RunningGateway, reason: str) -> float:
    async with httpx.AsyncClient(base_url=gateway.http) as client:
        text = (await client.get("/metrics")).text
    line = f'gateway_ingest_rejected_total{{reason="{reason}",transport="http"}} '
    found = [float(x[len(line):]) for x in text.splitlines() if x.startswith(line)]
    return found[0] if found else 0.0


@pytest.mark.parametrize("path", ["readings", "omh", "events?format=vendor-night"])
async def test_every_native_style_endpoint_reads_credentials_and_counts_refusals_alike(
        gateway: RunningGateway, device: FakeDevice, path: str) -> None:
    """The native endpoint and the OMH and vendor endpoints share one way in: the same bearer
    parsing (any case, spaces before the token) and one count per refused request."""
    async with httpx.AsyncClient(base_url=gateway.http) as client:
        url = f"/v1/devices/{device.id}/{path}"
        spaced = await client.post(url, content=b"{}", headers={
            "Authorization": f"bearer   {device.token}", "Content-Type": "application/json"})
        assert spaced.status_code == 422, spaced.text  # authenticated; the body is refused
        before = await _rejected(gateway, "size")
        huge = await client.post(url, content=b"[" + b"0," * 600_000 + b"0]", headers={
            "Authorization": f"Bearer {device.token}", "Content-Type": "application/json"})
        assert huge.status_code == 413
        assert await _rejected(gateway, "size") == before + 1
        before = await _rejected(gateway, "content_type")
        xml = await client.post(url, content=b"<x/>", headers={
            "Authorization": f"Bearer {device.token}", "Content-Type": "text/xml"})
        assert xml.status_code == 415 and "application/json" in xml.json()["error"]
        assert await _rejected(gateway, "content_type") == before + 1


async def test_new_device_is_usable_without_restart(gateway: RunningGateway,
                                                    store: Store) -> None:
    """The registry reloads on NOTIFY: a device registered now can send at once."""
    fresh = await register_device(store)
    await gateway.knows(fresh, timeout=2.0)
    answer = await _post(gateway, fresh, _weight(66.6))
    assert answer.status_code == 200


async def test_operations_endpoints(gateway: RunningGateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.http) as client:
        assert (await client.get("/healthz")).json() == {"status": "alive"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["database"] is True
        assert ready.json()["checks"]["mqtt"] is True
        spec = (await client.get("/openapi.json")).json()
        assert "/v1/devices/{device_id}/readings" in spec["paths"]
        metrics = (await client.get("/metrics")).text
        assert "gateway_ingest_events_accepted_total" in metrics
        assert "gateway_batch_commit_seconds_bucket" in metrics
