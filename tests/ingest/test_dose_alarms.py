"""A missed medicine dose becomes an alarm when the assignment says so (`dose_alarm`), decided by
the assignment valid when the dose was missed (gateway/ingest/dose_alarms.py,
gateway/ownership/routing.py rule 5).

The pure rules first (no database), then end to end against the running gateway, the real
database and broker: medicine robots over MQTT and HTTP, SCAIP pill dispensers over SIP, and the
CLI and admin API refusing a dose alarm that could reach nobody.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from rich.console import Console
from typer.testing import CliRunner

from adapters import scaip, vendor_medicine
from adapters.codes import Kind
from adapters.events import Alarm, AlarmType, DeviceEvent, Event, Flag, PositionFix
from gateway.cli import common
from gateway.cli.main import app
from gateway.ingest import dose_alarms
from gateway.ownership import operators, registration
from gateway.ownership.assignment import Assignment, LegalBasis
from gateway.ownership.lifecycle import InvalidRequest, NewAssignment
from gateway.ownership.routing import AssignmentIndex, IncidentReason, Lane, route
from gateway.store.connector import Store
from simulator.receivers import RecordingReceiver
from tests.support import (
    FakeDevice,
    Keys,
    MqttProbe,
    RunningGateway,
    open_copies,
    register_device,
    register_scaip_unit,
    wait_until,
)
from tests.transports.test_sip_ingest import Unit

DEV = "T-MEDIC-pure"
RX = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
JAN, JUN = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC)
SLOT_A, SLOT_B = "2026-05-10T08:00+02:00", "2026-11-20T08:00+01:00"
FALLBACK = "hmc-fallback"


def _assignment(*, huvudman: str = "1480", kinds: Sequence[Kind] = (Kind.MEDICATION,),
                valid_from: datetime = JAN, valid_to: datetime | None = None,
                alarm_route: str | None = "route-1480", dose_alarm: bool = False,
                device_id: str = DEV) -> Assignment:
    return Assignment(id=uuid.uuid4(), device_id=device_id, huvudman=huvudman,
                      subject_key=f"key-{huvudman}", legal_basis=LegalBasis.SOL,
                      kinds=frozenset(kinds), valid_from=valid_from, valid_to=valid_to,
                      alarm_route=alarm_route, dose_alarm=dose_alarm)


def _robot(*events: dict[str, object]) -> bytes:
    return vendor_medicine.encode_message(list(events))


def _parse(payload: bytes, alarms: bool) -> list[Event]:
    return vendor_medicine.parse(payload, device_id=DEV, received_at=RX,
                                 medication_alarms=alarms).events


def _apply(payload: bytes, assignments: Sequence[Assignment]) -> list[Event]:
    return dose_alarms.apply(_parse(payload, False), AssignmentIndex(assignments),
                             lambda: _parse(payload, True))


def _not_taken(slot: str, at: datetime, **kw: Any) -> dict[str, object]:
    return vendor_medicine.encode_event("dose_not_taken", at, dose=slot, **kw)


# --- the pure step ---------------------------------------------------------------------------

def test_a_missed_dose_is_the_adapters_alarm_when_the_assignment_says_so() -> None:
    at = RX - timedelta(minutes=15)
    payload = _robot(vendor_medicine.encode_event("dose_dispensed", at - timedelta(hours=1),
                                                  dose=SLOT_B),
                     _not_taken(SLOT_B, at, priority=8))
    out = _apply(payload, [_assignment(dose_alarm=True)])
    dispensed, alarm = out
    assert isinstance(dispensed, DeviceEvent) and dispensed.event_type.startswith("dose_disp")
    assert isinstance(alarm, Alarm) and alarm.alarm_type == AlarmType.DOSE_MISSED
    assert alarm.priority == 8 and alarm.measured_at == at
    # The adapter's own ids: a later "taken" for the slot names this alarm.
    assert out == _parse(payload, True)
    assert alarm.event_id == vendor_medicine.not_taken_id(DEV, SLOT_B)
    (taken,) = _parse(_robot(vendor_medicine.encode_event("dose_taken", RX, dose=SLOT_B)), False)
    assert isinstance(taken, DeviceEvent)
    base, slot = vendor_medicine.dose_slot(taken.event_type)
    assert (base, slot) == ("dose_taken", SLOT_B) and slot is not None
    assert vendor_medicine.not_taken_id(DEV, slot) == alarm.event_id


@pytest.mark.parametrize("assignments", [
    [_assignment()],  # medication, alarm route, but no dose_alarm
    [],  # unassigned
    [_assignment(dose_alarm=True, device_id="T-MEDIC-other")],  # another device's
])
def test_without_a_dose_alarm_the_events_are_unchanged_and_not_parsed_again(
        assignments: list[Assignment]) -> None:
    payload = _robot(_not_taken(SLOT_B, RX - timedelta(minutes=5)),
                     vendor_medicine.encode_event("refill_needed", RX, doses_left=2))
    plain = _parse(payload, False)

    def never() -> list[Event]:
        raise AssertionError("parsed again although no assignment asks for dose alarms")

    assert dose_alarms.apply(plain, AssignmentIndex(assignments), never) == plain
    assert isinstance(plain[0], DeviceEvent) and dose_alarms.is_missed_dose(plain[0])


@pytest.mark.parametrize("old_has_dose_alarm", [True, False])
def test_decided_by_the_assignment_valid_when_the_dose_was_missed(
        old_has_dose_alarm: bool) -> None:
    """A late offline batch across a return and reissue: each missed dose is judged by the
    assignment it was measured under, not by the device's current one."""
    old = _assignment(huvudman="1440", valid_to=JUN, dose_alarm=old_has_dose_alarm)
    new = _assignment(huvudman="1441", valid_from=JUN, dose_alarm=not old_has_dose_alarm,
                      alarm_route="route-1441")
    may, nov = datetime(2026, 5, 10, 9, tzinfo=UTC), datetime(2026, 11, 20, 9, tzinfo=UTC)
    payload = _robot(_not_taken(SLOT_A, may),
                     vendor_medicine.encode_event("reminder", nov, dose=SLOT_B),
                     _not_taken(SLOT_B, nov))
    first, reminder, last = _apply(payload, [old, new])
    alarmed, plain = (first, last) if old_has_dose_alarm else (last, first)
    assert isinstance(alarmed, Alarm) and alarmed.alarm_type == AlarmType.DOSE_MISSED
    assert isinstance(plain, DeviceEvent) and dose_alarms.is_missed_dose(plain)
    assert isinstance(reminder, DeviceEvent)
    slot = SLOT_A if old_has_dose_alarm else SLOT_B
    assert alarmed.event_id == vendor_medicine.not_taken_id(DEV, slot)
    # Each goes where routing sends it at its own measurement time.
    index = AssignmentIndex([old, new])
    alarm_route = index.route(alarmed, fallback_alarm_receiver=FALLBACK)
    assert [(d.huvudman, d.lane, d.alarm_receiver) for d in alarm_route.destinations] == [
        (old.huvudman, Lane.ALARM, old.alarm_route) if old_has_dose_alarm
        else (new.huvudman, Lane.ALARM, new.alarm_route)]
    plain_route = index.route(plain, fallback_alarm_receiver=FALLBACK)
    assert [(d.huvudman, d.lane) for d in plain_route.destinations] == [
        (new.huvudman if old_has_dose_alarm else old.huvudman, Lane.BULK)]


def test_an_implausible_device_clock_is_judged_at_the_receive_time() -> None:
    # The device says two days ahead; routing uses the receive time, so must this decision.
    around_rx = _assignment(valid_from=RX - timedelta(hours=1), valid_to=RX + timedelta(hours=1),
                            dose_alarm=True)
    payload = _robot(_not_taken(SLOT_B, RX + timedelta(days=2)))
    (alarm,) = _apply(payload, [around_rx])
    assert isinstance(alarm, Alarm) and Flag.CLOCK_IMPLAUSIBLE in alarm.flags


@pytest.mark.parametrize("dose_alarm", [True, False])
def test_scaip_pill_not_taken_becomes_the_adapters_alarm(dose_alarm: bool) -> None:
    body = scaip.build_mrq(ref="PILL1", cid="4711", dty=scaip.DTY_PILL,
                           stc=scaip.STC_PILL_NOT_TAKEN, pri=6, geo=(57.70887, 11.97456))
    unit = scaip.device_id("4711", None)
    plain = scaip.parse_mrq(body, received_at=RX).events
    assert [type(e) for e in plain] == [DeviceEvent, PositionFix]
    out = dose_alarms.apply(
        plain, AssignmentIndex([_assignment(device_id=unit, dose_alarm=dose_alarm)]),
        lambda: scaip.parse_mrq(body, received_at=RX, medication_alarms=True).events)
    if not dose_alarm:
        assert out == plain
        return
    (alarm,) = out  # the position travels in the alarm, as in any SCAIP alarm
    assert out == scaip.parse_mrq(body, received_at=RX, medication_alarms=True).events
    assert isinstance(alarm, Alarm) and alarm.alarm_type == AlarmType.DOSE_MISSED
    assert alarm.position is not None and alarm.priority == 6


# --- routing of a DOSE_MISSED alarm ----------------------------------------------------------

def _missed(device_id: str = DEV) -> Alarm:
    return Alarm(event_id=uuid.uuid4(), device_id=device_id, alarm_type=AlarmType.DOSE_MISSED,
                 measured_at=RX, received_at=RX, source="vendor_medicine")


def test_a_missed_dose_alarm_goes_to_those_who_asked_and_informs_the_other_medication_users(
        ) -> None:
    asked = _assignment(huvudman="1480", dose_alarm=True, alarm_route="arc-1480")
    medication_only = _assignment(huvudman="14", alarm_route=None)
    alarm_only = _assignment(huvudman="1481", kinds=(Kind.ALARM,), alarm_route="arc-1481")
    routing = route(_missed(), [alarm_only, medication_only, asked],
                    fallback_alarm_receiver=FALLBACK)
    assert routing.incident is None and not routing.quarantined
    assert [(d.huvudman, d.lane, d.alarm_receiver, d.assignment_id)
            for d in routing.destinations] == [
        ("1480", Lane.ALARM, "arc-1480", asked.id),
        ("14", Lane.BULK, None, medication_only.id)]
    # Any other alarm of the device still goes by the `alarm` grant.
    fault = Alarm(event_id=uuid.uuid4(), device_id=DEV, alarm_type=AlarmType.DEVICE_FAULT,
                  measured_at=RX, received_at=RX, source="vendor_medicine", technical=True)
    routed = route(fault, [alarm_only, medication_only, asked], fallback_alarm_receiver=FALLBACK)
    assert [d.huvudman for d in routed.destinations] == ["1481"]


def test_one_huvudman_with_both_kinds_of_assignment_gets_its_copy_on_the_alarm_lane() -> None:
    # The HSL assignment starts earlier, so plain ordering would put it first.
    hsl = _assignment(huvudman="1480", valid_from=JAN - timedelta(days=30), alarm_route=None)
    sol = _assignment(huvudman="1480", dose_alarm=True, alarm_route="arc-1480")
    routing = route(_missed(), [hsl, sol], fallback_alarm_receiver=FALLBACK)
    assert routing.destinations[0].lane == Lane.ALARM
    assert routing.destinations[0].assignment_id == sol.id


def test_a_missed_dose_alarm_nobody_asked_for_reaches_the_fallback_receiver() -> None:
    medication_only = _assignment(huvudman="14", alarm_route=None)
    routing = route(_missed(), [medication_only], fallback_alarm_receiver=FALLBACK)
    assert routing.incident is not None
    assert routing.incident.reason == IncidentReason.UNCLAIMED_ALARM
    assert [(d.huvudman, d.lane, d.alarm_receiver, d.fallback)
            for d in routing.destinations] == [(None, Lane.ALARM, FALLBACK, True),
                                               ("14", Lane.BULK, None, False)]


# --- validation (pure) -----------------------------------------------------------------------

@pytest.mark.parametrize(("kinds", "alarm_route", "named"), [
    (["weight", "alarm"], "arc-1", "medication"),
    (["medication"], None, "alarm_route"),
])
def test_a_dose_alarm_needs_the_medication_kind_and_an_alarm_route(
        kinds: list[str], alarm_route: str | None, named: str) -> None:
    common: dict[str, Any] = {"huvudman": "1480", "subject_ref": "test-subject-19121212-1212",
                              "legal_basis": "SoL", "kinds": kinds, "alarm_route": alarm_route,
                              "dose_alarm": True}
    with pytest.raises(ValidationError) as lifecycle_err:
        NewAssignment.model_validate(common)
    refused = InvalidRequest.from_validation(lifecycle_err.value)
    assert refused.field == "dose_alarm" and named in refused.reason
    assert "19121212" not in str(refused)
    with pytest.raises(ValidationError) as config_err:
        registration.AssignmentSpec.model_validate(
            {**common, "device": DEV, "valid_from": JAN.isoformat()})
    assert config_err.value.errors()[0]["loc"] == ("dose_alarm",)
    assert named in config_err.value.errors()[0]["msg"]
    # Off, the same kinds and route are fine.
    assert not NewAssignment.model_validate({**common, "dose_alarm": False}).dose_alarm


# --- end to end ------------------------------------------------------------------------------

integration = pytest.mark.integration


def _on(code: str, route_name: str, **extra: Any) -> dict[str, Any]:
    return {"huvudman": code, "subject_ref": f"test-dose-{code}", "legal_basis": "SoL",
            "kinds": ["medication", "status"], "alarm_route": route_name,
            "valid_from": "2026-01-01T00:00:00+00:00", "dose_alarm": True, **extra}


async def _event_row(store: Store, event_id: uuid.UUID) -> tuple[str, str] | None:
    row = await store.pool.fetchrow("SELECT event_type, kind FROM event WHERE event_id = $1",
                                    event_id)
    return None if row is None else (row["event_type"], row["kind"])


async def _stored(store: Store, event_id: uuid.UUID) -> tuple[str, str]:
    async def found() -> tuple[str, str] | None:
        return await _event_row(store, event_id)
    row = await wait_until(found)
    assert row is not None, "never stored"
    return row  # type: ignore[no-any-return]


Delivery = tuple[str | None, str, str | None]


async def _deliveries(store: Store, event_id: uuid.UUID) -> list[Delivery]:
    rows = await store.pool.fetch(
        "SELECT huvudman, lane, receiver FROM delivery WHERE event_id = $1 ORDER BY id", event_id)
    return [(r["huvudman"], r["lane"], r["receiver"]) for r in rows]


async def _arrived(receiver: RecordingReceiver, code: str, event_id: uuid.UUID) -> Any:
    ep = receiver.endpoints[code]

    async def there() -> bool:
        return event_id in ep.stored
    assert await wait_until(there), "never reached the huvudman's endpoint"
    return ep.stored[event_id]


@integration
async def test_mqtt_missed_dose_reaches_the_huvudman_on_the_alarm_lane(
        gateway: RunningGateway, store: Store, keys: Keys, receiver: RecordingReceiver,
        mqtt_probe: MqttProbe) -> None:
    code, route_name = "1440", f"test-dose-route-{uuid.uuid4().hex[:8]}"
    robot = await register_device(store, "medicine_robot", [_on(code, route_name)])
    await gateway.knows(robot)
    at = datetime(2026, 11, 21, 8, 45, tzinfo=UTC)
    mqtt_probe.publish(f"devices/{robot.id}/up/vendor-medicine", _robot(_not_taken(SLOT_B, at)))
    alarm_id = vendor_medicine.not_taken_id(robot.id, SLOT_B)
    assert await _stored(store, alarm_id) == ("alarm", "alarm")
    assert await _deliveries(store, alarm_id) == [(code, "alarm", route_name)]
    item = await _arrived(receiver, code, alarm_id)
    assert (item.lane, item.event_type, item.receiver) == ("alarm", "alarm", route_name)
    copy = (await open_copies(store, keys, alarm_id))[code]
    assert isinstance(copy.event, Alarm) and copy.event.alarm_type == AlarmType.DOSE_MISSED
    assert copy.event.event_id == alarm_id

    # The dose is taken later: the receiver can tell which alarm that closes.
    taken_at = at + timedelta(minutes=20)
    mqtt_probe.publish(f"devices/{robot.id}/up/vendor-medicine", _robot(
        vendor_medicine.encode_event("dose_taken", taken_at, dose=SLOT_B)))

    async def taken_id() -> Any:
        return await store.pool.fetchval(
            "SELECT event_id FROM event WHERE device_id = $1 AND event_type = 'event'",
            robot.id)
    taken = await wait_until(taken_id)
    assert taken is not None
    await _arrived(receiver, code, taken)
    opened = (await open_copies(store, keys, taken))[code].event
    assert isinstance(opened, DeviceEvent)
    _, slot = vendor_medicine.dose_slot(opened.event_type)
    assert slot is not None and vendor_medicine.not_taken_id(robot.id, slot) == alarm_id


@integration
async def test_mqtt_missed_dose_without_dose_alarm_stays_a_medication_event(
        gateway: RunningGateway, store: Store, keys: Keys, mqtt_probe: MqttProbe) -> None:
    code = "1440"
    robot = await register_device(store, "medicine_robot", [
        _on(code, "test-dose-route-off", dose_alarm=False, kinds=["medication", "alarm"])])
    await gateway.knows(robot)
    mqtt_probe.publish(f"devices/{robot.id}/up/vendor-medicine",
                       _robot(_not_taken(SLOT_B, datetime(2026, 11, 21, 8, 45, tzinfo=UTC))))
    event_id = vendor_medicine.not_taken_id(robot.id, SLOT_B)
    assert await _stored(store, event_id) == ("event", "medication")
    assert await _deliveries(store, event_id) == [(code, "bulk", None)]
    assert not await store.pool.fetchval(
        "SELECT count(*) FROM event WHERE device_id = $1 AND event_type = 'alarm'", robot.id)
    opened = (await open_copies(store, keys, event_id))[code].event
    assert isinstance(opened, DeviceEvent) and dose_alarms.is_missed_dose(opened)


@integration
async def test_http_late_batch_is_decided_by_measurement_time(
        gateway: RunningGateway, store: Store, keys: Keys) -> None:
    """Returned in June and reissued to another kommun without dose alarms; the robot then
    uploads what it buffered since May. May's missed dose is an alarm for the old assignment;
    November's is a plain event for the new one."""
    route_name = f"test-dose-route-{uuid.uuid4().hex[:8]}"
    robot = await register_device(store, "medicine_robot", [
        _on("1440", route_name, valid_to="2026-06-01T00:00:00+00:00"),
        _on("1441", "test-dose-route-new", dose_alarm=False,
            valid_from="2026-06-01T00:00:00+00:00")])
    await gateway.knows(robot)
    may, nov = datetime(2026, 5, 10, 9, tzinfo=UTC), datetime(2026, 11, 20, 9, tzinfo=UTC)
    async with httpx.AsyncClient(base_url=gateway.http) as client:
        answer = await client.post(
            f"/v1/devices/{robot.id}/events", params={"format": "vendor-medicine"},
            content=_robot(_not_taken(SLOT_A, may), _not_taken(SLOT_B, nov)),
            headers={"Authorization": f"Bearer {robot.token}",
                     "Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text
    old_id = vendor_medicine.not_taken_id(robot.id, SLOT_A)
    new_id = vendor_medicine.not_taken_id(robot.id, SLOT_B)
    assert sorted(answer.json()["accepted"]) == sorted([str(old_id), str(new_id)])
    assert await _event_row(store, old_id) == ("alarm", "alarm")
    assert await _event_row(store, new_id) == ("event", "medication")
    assert await _deliveries(store, old_id) == [("1440", "alarm", route_name)]
    assert await _deliveries(store, new_id) == [("1441", "bulk", None)]
    assert set(await open_copies(store, keys, old_id)) == {"1440"}
    assert set(await open_copies(store, keys, new_id)) == {"1441"}


@pytest.fixture
async def unit(gateway: RunningGateway) -> AsyncIterator[Unit]:
    """A unit that authenticates as whichever registered unit its `<mrq>` names."""
    opened = await Unit("UDP", gateway.settings.sip_port).open()
    yield opened
    opened.close()


@integration
@pytest.mark.parametrize("dose_alarm", [True, False])
async def test_scaip_pill_not_taken_over_sip(
        dose_alarm: bool, gateway: RunningGateway, store: Store, keys: Keys, unit: Unit) -> None:
    code, route_name = "1441", f"test-dose-route-{uuid.uuid4().hex[:8]}"
    dispenser: FakeDevice = await register_scaip_unit(
        store, "pill_dispenser", assignments=[_on(code, route_name, dose_alarm=dose_alarm)])
    await gateway.knows(dispenser)
    cid = dispenser.id.split(":")[1]
    body = scaip.build_mrq(ref="PILL81", cid=cid, dty=scaip.DTY_PILL,
                           stc=scaip.STC_PILL_NOT_TAKEN, pri=7)
    answer, mrs = await unit.exchange(body, cid=cid)
    assert answer.status == 200 and scaip.parse_mrs(mrs.body).snu == scaip.Snu.OK
    rows = await store.pool.fetch(
        "SELECT event_id, event_type, kind FROM event WHERE device_id = $1", dispenser.id)
    assert [(r["event_type"], r["kind"]) for r in rows] == (
        [("alarm", "alarm")] if dose_alarm else [("event", "medication")])
    event_id = rows[0]["event_id"]
    assert await _deliveries(store, event_id) == (
        [(code, "alarm", route_name)] if dose_alarm else [(code, "bulk", None)])
    opened = (await open_copies(store, keys, event_id))[code].event
    if dose_alarm:
        assert isinstance(opened, Alarm) and opened.alarm_type == AlarmType.DOSE_MISSED
        assert opened.source == "scaip" and opened.priority == 7
    else:
        assert isinstance(opened, DeviceEvent) and opened.event_type == "dose_not_taken"


@pytest.fixture
def run(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The CLI in a thread (it runs its own event loop)."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("GATEWAY_ACTOR", "test-dose-operator")
    monkeypatch.setattr(common, "console", Console(width=250, force_terminal=False))
    runner = CliRunner()

    async def invoke(*args: str, ok: bool = True) -> str:
        result = await asyncio.to_thread(runner.invoke, app, list(args))
        assert (result.exit_code == 0) == ok, result.output
        return result.output

    return invoke


@integration
async def test_cli_refuses_a_dose_alarm_without_medication_or_route_and_records_one(
        run: Any, gateway: RunningGateway, store: Store) -> None:
    dev = f"T-DOSE-{uuid.uuid4().hex[:10]}"
    await run("device", "register", dev, "medicine_robot")
    subject = ["--subject-ref", "test-subject-19121212-1212", "--legal-basis", "SoL"]
    for command in (["device", "assign", dev, "1480"], ["assignment", "add", dev, "1480"]):
        out = await run(*command, *subject, "--kind", "medication", "--dose-alarm", ok=False)
        assert "dose_alarm" in out and "alarm_route" in out, out
        out = await run(*command, *subject, "--kind", "weight", "--alarm-route", "arc-1",
                        "--dose-alarm", ok=False)
        assert "dose_alarm" in out and "medication" in out, out
        assert "19121212" not in out
    assert not await store.pool.fetchval(
        "SELECT count(*) FROM assignment WHERE device_id = $1", dev)

    await run("device", "assign", dev, "1480", *subject, "--kind", "medication",
              "--alarm-route", "arc-1480", "--dose-alarm")
    assert "yes" in (await run("device", "show", dev)).rsplit("dose alarm", 1)[1]

    async def loaded() -> bool:
        return any(a.dose_alarm for a in gateway.runtime.registry.assignment_index()
                   .for_device(dev))
    assert await wait_until(loaded), "the registry never loaded dose_alarm"
    audited = await store.pool.fetchval(
        "SELECT details->>'dose_alarm' FROM audit_log WHERE action = 'assignment.add'"
        " AND details->>'device' = $1", dev)
    assert audited == "true"


@integration
async def test_admin_api_refuses_a_dose_alarm_naming_the_field(
        gateway: RunningGateway, store: Store) -> None:
    name = f"test-op-{uuid.uuid4().hex[:8]}"
    token = await operators.add(store, name, ["admin"])
    dev = f"T-DOSE-{uuid.uuid4().hex[:10]}"
    base: dict[str, Any] = {"huvudman": "1480", "subject_ref": "test-subject-19121212-1212",
                            "legal_basis": "SoL", "dose_alarm": True}
    async with httpx.AsyncClient(base_url=f"{gateway.http}/admin/v1",
                                 headers={"Authorization": f"Bearer {token}"}) as api:
        created = await api.post("/devices", json={"id": dev, "type": "medicine_robot"})
        assert created.status_code == 201, created.text
        for body, named in (({**base, "kinds": ["medication"]}, "alarm_route"),
                            ({**base, "kinds": ["alarm"], "alarm_route": "arc-1"}, "medication")):
            bad = await api.post(f"/devices/{dev}/assignments", json={"assignments": [body]})
            assert bad.status_code == 422, bad.text
            assert bad.json()["field"] == "assignments.0.dose_alarm"
            assert named in bad.json()["error"] and "19121212" not in bad.text
        assert (await api.get(f"/devices/{dev}")).json()["assignments"] == []
        ok = await api.post(f"/devices/{dev}/assignments", json={"assignments": [
            {**base, "kinds": ["medication"], "alarm_route": "arc-1480"}]})
        assert ok.status_code == 201, ok.text
        assert [a["dose_alarm"] for a in ok.json()["view"]["assignments"]] == [True]
    audited = await store.pool.fetchval(
        "SELECT actor FROM audit_log WHERE action = 'assignment.add'"
        " AND details->>'device' = $1 AND details->>'dose_alarm' = 'true'", dev)
    assert audited == operators.actor(name)


@integration
async def test_the_database_refuses_a_dose_alarm_without_medication_or_route(
        store: Store) -> None:
    import asyncpg

    robot = await register_device(store, "medicine_robot")
    for kinds, alarm_route in ((["medication"], None), (["alarm"], "arc-1")):
        with pytest.raises(asyncpg.CheckViolationError):
            await store.pool.execute(
                "INSERT INTO assignment (id, device_id, huvudman, subject_key, legal_basis,"
                " kinds, valid_from, alarm_route, dose_alarm)"
                " VALUES ($1, $2, '1480', 'k', 'SoL', $3, now(), $4, true)",
                uuid.uuid4(), robot.id, kinds, alarm_route)
