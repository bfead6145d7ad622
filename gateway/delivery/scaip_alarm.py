"""An alarm as the `<mrq>` the gateway sends to an alarm receiving centre (SS 91100), pure.

The gateway speaks to the ARC as a relaying unit: one `<mrq>` per alarm, `mty=ME`, with
- `ref`: derived from the event id and the receiver, so every resend (after `snu=4`, after a
  restart, from another instance) carries the same ref and the ARC can recognise a repeat
  (SS 91100 §5);
- `cid`/`did`: a SCAIP unit's own ids when the alarm came from one (the ARC already knows the
  unit); otherwise the gateway's caller id at that ARC (`cid` in its `[[arc]]` entry) and the
  device id as `did` (a device id longer than 16 characters, or not printable ASCII, is sent
  as a stable 16-character digest: the ARC registers that, `gateway arc did DEVICE` prints it);
- `dty`/`stc`: from the alarm type (table below; a SCAIP unit's own `dty` cannot be recovered
  from the canonical alarm, the type is what matters to the operator);
- `pri`, `tim` (measurement time) and, only when the assignment allows positions to this
  receiver, `lco=034` with `<geo>`.
"""

from __future__ import annotations

import hashlib
import re
import uuid

from adapters import scaip
from adapters.events import Alarm, AlarmType
from adapters.scaip import Mty

# (dty, stc, lco) per alarm type. stc 0009 "automatic alarm" where the device type says what
# happened; explicit status codes of SS 91100 Annex C where one exists.
_CODES: dict[AlarmType, tuple[int, int, int | None]] = {
    AlarmType.BUTTON: (scaip.DTY_PERSONAL_TRIGGER, scaip.STC_MANUAL, None),
    AlarmType.FALL: (scaip.DTY_FALL, scaip.STC_AUTOMATIC, None),
    AlarmType.GEOFENCE_EXIT: (scaip.DTY_TRACKER, scaip.STC_AUTOMATIC, scaip.LCO_GEOFENCE),
    AlarmType.BED_EXIT: (scaip.DTY_BED, scaip.STC_AUTOMATIC, None),
    AlarmType.DOOR_OPEN_TOO_LONG: (scaip.DTY_DOOR, 77, None),
    AlarmType.INACTIVITY: (scaip.DTY_ACTIVITY, scaip.STC_AUTOMATIC, None),
    AlarmType.DOSE_MISSED: (scaip.DTY_PILL, scaip.STC_PILL_NOT_TAKEN, None),
    AlarmType.DEVICE_SILENT: (scaip.DTY_SYSTEM, 123, None),
    AlarmType.BATTERY_LOW: (scaip.DTY_SYSTEM, 16, None),
    AlarmType.LINK_LOST: (scaip.DTY_LINK, 23, None),
    AlarmType.MAINS_LOST: (scaip.DTY_SYSTEM, 85, None),
    AlarmType.DEVICE_FAULT: (scaip.DTY_SYSTEM, 125, None),
    AlarmType.OTHER: (scaip.DTY_LUC, 110, None),
}
_PRINTABLE_16 = re.compile(r"[\x21-\x7e]{1,16}")
_SCAIP_ID = re.compile(r"scaip:([0-9]{1,32})(?::([\x21-\x7e]{1,16}))?")


def ref_for(event_id: uuid.UUID, receiver: str) -> str:
    """16 hex digits from the event id and the alarm centre: the same for every resend of this
    alarm to this receiver, from any instance; another for the same alarm to another receiver
    (the gateway's answers are matched by ref)."""
    digest = hashlib.sha256(event_id.bytes + receiver.encode("utf-8")).hexdigest()
    return digest[:16].upper()


def did_for(device_id: str) -> str:
    """The device as `did` (1-16 printable ASCII), a digest when the id does not fit."""
    if _PRINTABLE_16.fullmatch(device_id):
        return device_id
    return "D" + hashlib.sha256(device_id.encode("utf-8")).hexdigest()[:15].upper()


def caller_ids(device_id: str, gateway_cid: str) -> tuple[str, str | None]:
    """(cid, did): a SCAIP unit's own, else the gateway's caller id and the device."""
    match = _SCAIP_ID.fullmatch(device_id)
    if match is not None:
        return match.group(1), match.group(2)
    return gateway_cid, did_for(device_id)


def alarm_mrq(alarm: Alarm, *, receiver: str, gateway_cid: str, with_position: bool) -> bytes:
    """The `<mrq>` for `alarm` (its position only when `with_position`)."""
    dty, stc, lco = _CODES.get(alarm.alarm_type, _CODES[AlarmType.OTHER])
    cid, did = caller_ids(alarm.device_id, gateway_cid)
    position = alarm.position if with_position else None
    geo = (position.lat, position.lon) if position is not None else None
    if geo is not None and lco is None:
        lco = scaip.LCO_GEO
    if geo is None and lco == scaip.LCO_GEO:
        lco = None
    # Where in the home a fixed sensor is (the unit's own lco, lva and lte), when the message
    # has no position code to carry instead: one lco per message, as a unit's has.
    room = alarm.location
    lva = None
    if room is not None and room.code is not None and lco is None:
        lco, lva = room.code, room.value
    return scaip.build_mrq(ref=ref_for(alarm.event_id, receiver), cid=cid, dty=dty,
                           mty=Mty.MESSAGE,
                           stc=stc, did=did, pri=max(0, min(9, alarm.priority)), lco=lco,
                           lva=lva, lte=room.text if room is not None else None,
                           geo=geo, tim=alarm.measured_at)


def reset_mrq(alarm: Alarm, *, receiver: str, gateway_cid: str) -> bytes:
    """`mty=RE` for the alarm's ref: sent to an ARC the gateway stopped waiting for (SS 91100
    §5: the unit says so when it takes its alternative action)."""
    dty, _, _ = _CODES.get(alarm.alarm_type, _CODES[AlarmType.OTHER])
    cid, did = caller_ids(alarm.device_id, gateway_cid)
    return scaip.build_mrq(ref=ref_for(alarm.event_id, receiver), cid=cid, dty=dty, mty=Mty.RESET,
                           did=did)


def cancel_mrq(alarm: Alarm, *, receiver: str, gateway_cid: str) -> bytes:
    """`mty=IN` with `stc=0019` for the alarm's ref: the device cancelled an alarm the ARC has
    (SS 91100 §5: an update repeats the open event's mandatory elements unchanged)."""
    dty, _, _ = _CODES.get(alarm.alarm_type, _CODES[AlarmType.OTHER])
    cid, did = caller_ids(alarm.device_id, gateway_cid)
    return scaip.build_mrq(ref=ref_for(alarm.event_id, receiver), cid=cid, dty=dty, mty=Mty.INFO,
                           stc=scaip.STC_CANCEL, did=did)


def ping_mrq(ref: str, *, gateway_cid: str) -> bytes:
    """A heartbeat (`mty=PI`, `hbo=001`: the ARC may set the interval with `<hbi>`)."""
    return scaip.build_mrq(ref=ref, cid=gateway_cid, dty=scaip.DTY_LOCAL_UNIT, mty=Mty.PING,
                           hbo=True)
