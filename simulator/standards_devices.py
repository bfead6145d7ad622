"""Simulated devices that speak the standard and vendor formats (docs/http.md, docs/mqtt.md).

- `Pcd01Hub`: a Continua hub, IHE PCD-01 ORU^R01 in SOAP (`adapters.continua.encode_oru`)
  for its paired PHDs, to `POST /pcd01/CommunicatePCDData`;
- `FhirHub`: a Continua PHG, HL7 PHD FHIR transaction Bundles (`phd_fhir_bundle`, written after
  the PHD IG's examples) for its paired PHDs, to `POST /fhir/`;
- `OmhDevice`: Open mHealth body-weight data points, to `POST /v1/devices/{id}/omh`;
- `VendorDevice`: vendor-gps, vendor-night or vendor-medicine JSON (the adapters' encoders),
  over HTTP `POST /v1/devices/{id}/events?format=…` or MQTT `devices/{id}/up/{format}`.

The demo is not wired to these yet. What it can call: `load(fleet_path, http_url=…,
mqtt_url=…)` builds one sender per standards device of a fleet file (hubs with their paired
devices, `hub = "<hub id>"`), `send_round(senders, now)` makes each send one message, and
`close(senders)` ends them. Every sender counts into a `simulator.senders.Tally`.

Measurement times are whole seconds, so a resend yields the same event ids. Hubs never send a
patient identifier: the gateway would not read it anyway (PID / Patient are ignored).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Protocol

import httpx
import msgspec

from adapters import codes, continua, phd_fhir, vendor_gps, vendor_medicine, vendor_night
from gateway.ownership.registration import read_config
from simulator.physiology import Person
from simulator.senders import MqttDevice, Tally

VENDOR_TYPES: Final = {"gps_alarm": "vendor-gps", "night_sensor": "vendor-night",
                       "medicine_robot": "vendor-medicine"}
OMH_TYPES: Final = ("omh_scale",)
# MDC device specialisations (PCD-01 device rows) per device type.
_PROFILES: Final = {"scale": 528399, "bp_meter": 528391, "pulse_oximeter": 528388}
_PHG_TYPE: Final = "531981"  # MDC_MOC_VMS_MDS_AHD: a Continua PHG
_VITAL_SIGNS: Final = {"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                       "code": "vital-signs"}


class Sender(Protocol):
    def send(self, now: datetime) -> object: ...

    def close(self) -> None: ...


@dataclass
class Phd:
    """A personal health device paired with a hub: its EUI-64 (= registry id) and type."""

    eui64: str
    device_type: str
    person: Person


def _whole_seconds(now: datetime) -> datetime:
    return now.replace(microsecond=0)


def _measurements(phd: Phd) -> list[tuple[int, float]]:
    """(MDC code, value) pairs of what this kind of device measures, canonical units."""
    p = phd.person
    if phd.device_type == "scale":
        return [(codes.WEIGHT.code, p.weight())]
    if phd.device_type == "bp_meter":
        sys, dia, mean = p.blood_pressure()
        return [(codes.BP_SYSTOLIC.code, sys), (codes.BP_DIASTOLIC.code, dia),
                (codes.BP_MEAN.code, mean), (codes.PULSE_CUFF.code, p.heart_rate())]
    if phd.device_type == "pulse_oximeter":
        return [(codes.SPO2.code, p.saturation()), (codes.PULSE_OXIMETER.code, p.heart_rate())]
    return []


# --- PCD-01 ----------------------------------------------------------------------------------

def pcd01_message(phds: Sequence[Phd], now: datetime, *, control_id: str,
                  sender_eui64: str | None = None) -> str:
    """An ORU^R01 with one OBR group per paired device."""
    at = _whole_seconds(now)
    groups = [continua.DeviceGroup(phd.eui64, _PROFILES.get(phd.device_type, 528399), at,
                                   [continua.Measurement(code, value)
                                    for code, value in _measurements(phd)])
              for phd in phds]
    return continua.encode_oru(control_id=control_id, sent_at=at, devices=groups,
                               sender_eui64=sender_eui64, sending_application="VGR-SIM-HUB")


# --- PHD FHIR --------------------------------------------------------------------------------

@dataclass(frozen=True)
class FhirObservation:
    """One PHD observation: MDC code, value (or BP components), UCUM unit, time."""

    eui64: str
    code: int
    measured_at: datetime
    value: float | None = None
    components: tuple[tuple[int, float], ...] = ()


def _coding(code: int) -> dict[str, Any]:
    metric = codes.metric(code)
    codings: list[dict[str, str]] = [{"system": phd_fhir.MDC_SYSTEM, "code": str(code),
                                      "display": metric.ref_id if metric else ""}]
    if metric is not None and metric.loinc:
        codings.append({"system": phd_fhir.LOINC_SYSTEM, "code": metric.loinc})
    return {"coding": codings}


def _quantity(code: int, value: float) -> dict[str, Any]:
    metric = codes.metric(code)
    unit = metric.ucum if metric else ""
    return {"value": value, "unit": unit, "system": phd_fhir.UCUM_SYSTEM, "code": unit}


def _device_entry(full_url: str, eui64: str, *, phg: bool) -> dict[str, Any]:
    spaced = "-".join(eui64[i:i + 2] for i in range(0, 16, 2))
    identifier = {"type": {"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/ContinuaDeviceIdentifiers",
        "code": "SYSID"}]}, "system": phd_fhir.EUI64_SYSTEM, "value": spaced}
    resource: dict[str, Any] = {"resourceType": "Device", "identifier": [identifier]}
    if phg:
        resource["type"] = {"coding": [{"system": phd_fhir.MDC_SYSTEM, "code": _PHG_TYPE,
                                        "display": "MDC_MOC_VMS_MDS_AHD"}]}
    return {"fullUrl": full_url, "resource": resource, "request": {
        "method": "POST", "url": "Device",
        "ifNoneExist": f"identifier={phd_fhir.EUI64_SYSTEM}|{spaced}"}}


def phd_fhir_bundle(phg_eui64: str, observations: Sequence[FhirObservation]) -> bytes:
    """A transaction Bundle in the PHD IG's shape: PHG and PHD Devices (conditional create),
    then one Observation per measurement referencing its PHD and, via the gateway extension,
    the PHG. No Patient: the gateway stores no patient data."""
    phg_url = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_OID, phg_eui64)}"
    entries = [_device_entry(phg_url, phg_eui64, phg=True)]
    phd_urls: dict[str, str] = {}
    for obs in observations:
        if obs.eui64 not in phd_urls:
            phd_urls[obs.eui64] = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_OID, obs.eui64)}"
            entries.append(_device_entry(phd_urls[obs.eui64], obs.eui64, phg=False))
    for obs in observations:
        resource: dict[str, Any] = {
            "resourceType": "Observation", "status": "final",
            "meta": {"profile": ["http://hl7.org/fhir/uv/phd/StructureDefinition/"
                                 "PhdNumericObservation"]},
            "category": [{"coding": [_VITAL_SIGNS]}],
            "code": _coding(obs.code),
            "effectiveDateTime": _whole_seconds(obs.measured_at).isoformat(),
            "device": {"reference": phd_urls[obs.eui64]},
            "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/device-gateway",
                           "valueReference": {"reference": phg_url}}],
        }
        if obs.components:
            resource["component"] = [{"code": _coding(c), "valueQuantity": _quantity(c, v)}
                                     for c, v in obs.components]
        elif obs.value is not None:
            resource["valueQuantity"] = _quantity(obs.code, obs.value)
        entries.append({"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": resource,
                        "request": {"method": "POST", "url": "Observation"}})
    return msgspec.json.encode({"resourceType": "Bundle", "type": "transaction",
                                "entry": entries})


def fhir_observations(phd: Phd, now: datetime) -> list[FhirObservation]:
    at = _whole_seconds(now)
    values = dict(_measurements(phd))
    bp = tuple((c, values.pop(c)) for c in (codes.BP_SYSTOLIC.code, codes.BP_DIASTOLIC.code,
                                            codes.BP_MEAN.code) if c in values)
    out = [FhirObservation(phd.eui64, code, at, value) for code, value in values.items()]
    if bp:
        out.insert(0, FhirObservation(phd.eui64, codes.BP_COMPOUND.code, at, components=bp))
    return out


# --- Open mHealth ----------------------------------------------------------------------------

def omh_data_point(name: str, version: str, body: dict[str, Any], *,
                   created: datetime) -> dict[str, Any]:
    """A full Open mHealth data point (header with schema id, body)."""
    return {"header": {"id": str(uuid.uuid4()), "creation_date_time": created.isoformat(),
                       "schema_id": {"namespace": "omh", "name": name, "version": version}},
            "body": body}


def omh_body_weight(kg: float, at: datetime) -> dict[str, Any]:
    return omh_data_point("body-weight", "3.0", {
        "body_weight": {"value": kg, "unit": "kg"},
        "effective_time_frame": {"date_time": _whole_seconds(at).isoformat()}}, created=at)


# --- senders ---------------------------------------------------------------------------------

@dataclass
class _Http:
    base_url: str
    token: str
    tally: Tally
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.base_url, timeout=15,
                                   headers={"Authorization": f"Bearer {self.token}"})

    def post(self, key: str, path: str, content: bytes, content_type: str,
             params: dict[str, str] | None = None) -> httpx.Response | None:
        self.tally.add(self.tally.sent, key)
        try:
            answer = self.client.post(path, content=content, params=params,
                                      headers={"Content-Type": content_type})
        except httpx.HTTPError:
            self.tally.add(self.tally.errors, key)
            return None
        if answer.status_code >= 300:
            self.tally.add(self.tally.errors, key)
            return None
        self.tally.add(self.tally.confirmed, key)
        return answer

    def close(self) -> None:
        self.client.close()


class Pcd01Hub:
    """A Continua hub uploading its paired devices' readings as PCD-01 over SOAP."""

    def __init__(self, http_url: str, hub_id: str, token: str, phds: Sequence[Phd],
                 tally: Tally) -> None:
        self.hub_id, self.phds = hub_id, list(phds)
        self.http = _Http(http_url, token, tally)
        self.sequence = 0

    def send(self, now: datetime) -> str | None:
        """Send one message; the ACK code (AA, AE, AR) or None when nothing came back."""
        self.sequence += 1
        er7 = pcd01_message(self.phds, now, control_id=f"{self.hub_id}-{self.sequence}")
        soap = continua.encode_soap(er7, message_id=f"urn:uuid:{uuid.uuid4()}")
        answer = self.http.post("pcd01", "/pcd01/CommunicatePCDData", soap,
                                "application/soap+xml; charset=utf-8")
        code = _ack_code(answer.text) if answer is not None else None
        if code not in (None, "AA"):
            self.http.tally.add(self.http.tally.rejected, "pcd01")
        return code

    def close(self) -> None:
        self.http.close()


def _ack_code(text: str) -> str | None:
    start = text.find("MSA|")
    return text[start + 4:start + 6] if start >= 0 else None


class FhirHub:
    """A Continua PHG uploading its paired devices' readings as PHD FHIR Bundles."""

    def __init__(self, http_url: str, hub_id: str, token: str, phg_eui64: str,
                 phds: Sequence[Phd], tally: Tally) -> None:
        self.phg_eui64, self.phds = phg_eui64, list(phds)
        self.http = _Http(http_url, token, tally)

    def send(self, now: datetime) -> list[str]:
        """Send one Bundle; the per-entry statuses of the transaction-response."""
        observations = [o for phd in self.phds for o in fhir_observations(phd, now)]
        answer = self.http.post("fhir", "/fhir/", phd_fhir_bundle(self.phg_eui64, observations),
                                "application/fhir+json")
        if answer is None:
            return []
        statuses = [str(e["response"]["status"]) for e in answer.json().get("entry", [])]
        if any(s.startswith("4") for s in statuses):
            self.http.tally.add(self.http.tally.rejected, "fhir")
        return statuses

    def close(self) -> None:
        self.http.close()


class OmhDevice:
    """A scale whose app relays Open mHealth body-weight data points."""

    def __init__(self, http_url: str, device_id: str, token: str, person: Person,
                 tally: Tally) -> None:
        self.device_id, self.person = device_id, person
        self.http = _Http(http_url, token, tally)

    def send(self, now: datetime) -> None:
        doc = omh_body_weight(self.person.weight(), now)
        answer = self.http.post("omh", f"/v1/devices/{self.device_id}/omh",
                                msgspec.json.encode(doc), "application/json")
        if answer is not None and answer.json().get("rejected"):
            self.http.tally.add(self.http.tally.rejected, "omh")

    def close(self) -> None:
        self.http.close()


def vendor_message(device_type: str, device_id: str, now: datetime, rng: random.Random,
                   sequence: int, *, alarm: bool | None = None) -> bytes:
    """One message of the device type's vendor format: mostly routine, now and then (or when
    `alarm` says so) an alarm."""
    at = _whole_seconds(now)
    alarm = rng.random() < 0.1 if alarm is None else alarm
    if device_type == "gps_alarm":
        return vendor_gps.encode_json(
            device_id, time=at, lat=57.70887 + rng.uniform(-0.01, 0.01),
            lon=11.97456 + rng.uniform(-0.01, 0.01), accuracy=round(rng.uniform(5, 30), 1),
            alarm="sos" if alarm else None, event=None if alarm else "heartbeat",
            battery_level=round(rng.uniform(0.3, 1.0), 2), charging=False,
            uuid=f"{device_id}-{sequence}")
    if device_type == "night_sensor":
        kind = "bed_exit" if alarm else rng.choice(["in_bed", "movement", "heartbeat"])
        return vendor_night.encode_message(
            [vendor_night.encode_event(kind, at, seq=sequence)],
            status=vendor_night.encode_status(at, battery=round(rng.uniform(40, 100)),
                                              heartbeat=True))
    if device_type == "medicine_robot":
        dose = vendor_medicine.dose_of(at.replace(second=0))
        kind = "dose_not_taken" if alarm else rng.choice(["dose_dispensed", "dose_taken"])
        return vendor_medicine.encode_message(
            [vendor_medicine.encode_event(kind, at, dose=dose, seq=sequence)],
            status=vendor_medicine.encode_status(at, battery=round(rng.uniform(60, 100))))
    raise ValueError(f"no vendor format for device type {device_type}")


class VendorDevice:
    """A GPS alarm, night sensor or medicine robot, over HTTP or MQTT."""

    def __init__(self, device_type: str, device_id: str, token: str, tally: Tally, *,
                 http_url: str | None = None, mqtt_url: str | None = None,
                 seed: int = 0) -> None:
        if (http_url is None) == (mqtt_url is None):
            raise ValueError("give exactly one of http_url and mqtt_url")
        self.device_type, self.device_id = device_type, device_id
        self.format = VENDOR_TYPES[device_type]
        self.rng = random.Random(seed)
        self.sequence = 0
        self.http = _Http(http_url, token, tally) if http_url else None
        self.mqtt = MqttDevice(mqtt_url, device_id, token, tally) if mqtt_url else None
        if self.mqtt is not None:
            self.mqtt.topic = self.mqtt.topic.rsplit("/", 1)[0] + f"/{self.format}"

    def send(self, now: datetime) -> None:
        self.sequence += 1
        alarm = self.rng.random() < 0.1
        payload = vendor_message(self.device_type, self.device_id, now, self.rng, self.sequence,
                                 alarm=alarm)
        if self.mqtt is not None:
            # Alarms on the alarm channel (docs/mqtt.md): they never queue behind readings.
            self.mqtt.send(payload, topic=self.mqtt.topic.replace("/up/", "/alarm/", 1)
                           if alarm else None)
        elif self.http is not None:
            self.http.post(self.format, f"/v1/devices/{self.device_id}/events", payload,
                           "application/json", params={"format": self.format})

    def close(self) -> None:
        if self.mqtt is not None:
            self.mqtt.close()
        if self.http is not None:
            self.http.close()


# --- from a fleet file -----------------------------------------------------------------------

def load(fleet_path: Path, *, http_url: str, mqtt_url: str | None = None,
         tally: Tally | None = None) -> list[Sender]:
    """One sender per standards device in the fleet file (hubs carry their paired devices).

    Vendor devices alternate between MQTT and HTTP when `mqtt_url` is given.
    """
    tally = tally or Tally()
    config = read_config(fleet_path)
    paired: dict[str, list[Phd]] = {}
    for i, d in enumerate(config.device):
        if d.hub is not None:
            paired.setdefault(d.hub, []).append(Phd(d.id, d.type, Person(seed=1000 + i)))
    senders: list[Sender] = []
    vendor_count = 0
    for i, d in enumerate(config.device):
        if d.token is None or d.id.startswith("scaip:"):  # SCAIP units speak SIP (scaip_device)
            continue
        if d.type == "continua_hub":
            senders.append(Pcd01Hub(http_url, d.id, d.token, paired.get(d.id, []), tally))
        elif d.type == "fhir_hub":
            senders.append(FhirHub(http_url, d.id, d.token, _eui64_of(d.id), paired.get(d.id, []),
                                   tally))
        elif d.type in OMH_TYPES:
            senders.append(OmhDevice(http_url, d.id, d.token, Person(seed=2000 + i), tally))
        elif d.type in VENDOR_TYPES:
            use_mqtt = mqtt_url is not None and vendor_count % 2 == 0
            vendor_count += 1
            senders.append(VendorDevice(d.type, d.id, d.token, tally, seed=i,
                                        http_url=None if use_mqtt else http_url,
                                        mqtt_url=mqtt_url if use_mqtt else None))
    return senders


def _eui64_of(hub_id: str) -> str:
    """The PHG's EUI-64 for a hub whose registry id is not one: stable, derived from the id."""
    return phd_fhir.normalise_eui64(hub_id) or uuid.uuid5(uuid.NAMESPACE_OID, hub_id).hex[
        :16].upper()


def send_round(senders: Iterable[Sender], now: datetime) -> None:
    for sender in senders:
        sender.send(now)


def close(senders: Iterable[Sender]) -> None:
    for sender in senders:
        sender.close()
