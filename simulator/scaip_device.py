"""Simulated SCAIP alarm senders (LUC, SS 91100) talking SIP over UDP to the gateway.

A unit sends its `<mrq>` in a SIP MESSAGE, expects the `200 OK` for the SIP hop, then waits for
the gateway's `<mrs>`, which comes as a separate MESSAGE (SIS-TR 91102 §7.5) that the unit
answers with `200 OK`. It follows the unit's side of SS 91100 §5:

- `snu=0`: handled. `snu=5` / `6`: not treated / busy, the unit drops the ref (and would take
  its alternative action). Message errors (1, 2, 3, 7, 10, 99): reported as they are.
- `snu=4` "hold": the *same* request is resent every `resend_s` (5-20 s in the standard) until
  another answer, for at most `hold_max_s` (3-30 min).
- No `<mrs>` within `answer_timeout_s` (lost request or answer): resent the same way.
- Gave up: a `mty=RE` reset with the same ref is sent, as the standard asks.

Three units are modelled on what Västra Götaland's kommuner lend out: a GPS alarm (dty 0051,
alarms with a position), a night-supervision bed sensor (dty 0012) and a pill dispenser (dty
0011). `run()` is what the demo calls; positions are synthetic, around Göteborg.

Blocking (plain sockets), meant to run in a thread, like simulator/senders.py.
"""

from __future__ import annotations

import random
import secrets
import socket
import string
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from adapters import scaip, sip, sip_digest
from adapters.errors import AdapterError
from adapters.scaip import Mty, Snu
from gateway.ownership.registration import read_config

GPS_ALARM, NIGHT_SENSOR, PILL_DISPENSER = "gps_alarm", "night_sensor", "pill_dispenser"
DTY = {GPS_ALARM: scaip.DTY_TRACKER, NIGHT_SENSOR: scaip.DTY_BED, PILL_DISPENSER: scaip.DTY_PILL}
GOTEBORG = (57.70887, 11.97456)
_REF_CHARS = string.ascii_uppercase + string.digits
_FINAL = frozenset({Snu.OK, Snu.NOT_TREATED, Snu.BUSY, Snu.TOO_LONG, Snu.BAD_FORMAT,
                    Snu.WRONG_CONTENT, Snu.MANDATORY_MISSING, Snu.REF_MISSING, Snu.UNDEFINED})


def new_ref() -> str:
    """A fresh `ref` (1-16 letters or digits; new for each message session)."""
    return "".join(secrets.choice(_REF_CHARS) for _ in range(10))


@dataclass
class Outcome:
    """What happened to one request."""

    ref: str
    mty: str
    snu: int | None = None  # the final answer; None when none came
    sip_status: int | None = None  # the gateway's answer to the SIP hop
    attempts: int = 0  # times the request was sent at SCAIP level (first send included)
    holds: int = 0  # snu=4 answers
    hbi: int | None = None
    gave_up: bool = False  # no final answer within hold_max_s; a reset (RE) was sent
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class UnitSpec:
    kind: str  # GPS_ALARM, NIGHT_SENSOR or PILL_DISPENSER
    cid: str
    did: str | None = None
    # The credential HMC issued: the unit answers the gateway's SIP Digest challenge with it,
    # as user its device id (SS 91100 §8). None: a unit that cannot authenticate.
    password: str | None = None

    @property
    def device_id(self) -> str:
        """The gateway's id for this unit: register it to have its messages accepted."""
        return scaip.device_id(self.cid, self.did)


def load_units(path: Path) -> list[UnitSpec]:
    """The SCAIP units of a fleet file: devices `scaip:<cid>[:<did>]` of a SCAIP kind, with
    the credential the file gives them."""
    units = []
    for device in read_config(path).device:
        if device.id.startswith("scaip:") and device.type in DTY:
            cid, _, did = device.id.removeprefix("scaip:").partition(":")
            units.append(UnitSpec(device.type, cid, did or None, device.token))
    return units


class ScaipUnit:
    """One LUC with its own UDP socket."""

    def __init__(self, spec: UnitSpec, gateway: tuple[str, int], *,
                 resend_s: tuple[float, float] = (5.0, 20.0), answer_timeout_s: float = 10.0,
                 hold_max_s: float = 30 * 60, local_host: str = "127.0.0.1",
                 rng: random.Random | None = None) -> None:
        self.spec = spec
        self.gateway = gateway
        self.resend_s = resend_s
        self.answer_timeout_s = answer_timeout_s
        self.hold_max_s = hold_max_s
        self.rng = rng or random.Random()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((local_host, 0))
        self.local = (local_host, int(self.sock.getsockname()[1]))
        self.uri = f"sip:luc{spec.cid}@{local_host}:{self.local[1]}"
        self.cseq = 0
        self._challenge: sip_digest.Challenge | None = None  # the gateway's last
        self._answered_nonce: str | None = None
        self._nc = 0

    def close(self) -> None:
        self.sock.close()

    # --- what the unit says ----------------------------------------------------------------

    def mrq(self, ref: str, *, mty: str = Mty.MESSAGE, stc: int | None = None,
            pri: int | None = None, hbo: bool = False, geo: tuple[float, float] | None = None,
            tim: datetime | None = None, namespace: bool = False) -> bytes:
        return scaip.build_mrq(ref=ref, cid=self.spec.cid, dty=DTY[self.spec.kind], mty=mty,
                               stc=stc, did=self.spec.did, pri=pri, hbo=hbo,
                               lco=scaip.LCO_GEO if geo is not None else None, geo=geo, tim=tim,
                               namespace=namespace)

    # --- the exchange ----------------------------------------------------------------------

    def send(self, body: bytes, *, ref: str, mty: str = Mty.MESSAGE,
             reset_on_give_up: bool = True) -> Outcome:
        """Send one `<mrq>` and follow SS 91100 §5 until a final `<mrs>` or giving up."""
        outcome = Outcome(ref=ref, mty=mty)
        started = time.monotonic()
        give_up_at = started + self.hold_max_s
        while True:
            outcome.attempts += 1
            answer = self._exchange(body, ref, outcome)
            if answer is not None and answer.snu in _FINAL:
                outcome.snu = answer.snu
                outcome.hbi = answer.hbi
                break
            if answer is not None and answer.snu == Snu.HOLD:
                outcome.holds += 1
                outcome.snu = Snu.HOLD
            wait = self.rng.uniform(*self.resend_s)
            if time.monotonic() + wait >= give_up_at:
                outcome.gave_up = True
                break
            time.sleep(wait)
        outcome.elapsed_s = time.monotonic() - started
        if outcome.gave_up and reset_on_give_up and mty != Mty.RESET:
            reset = scaip.build_mrq(ref=ref, cid=self.spec.cid, dty=DTY[self.spec.kind],
                                    mty=Mty.RESET, did=self.spec.did)
            self._exchange(reset, ref, Outcome(ref=ref, mty=Mty.RESET))
        return outcome

    def _exchange(self, body: bytes, ref: str, outcome: Outcome) -> scaip.ScaipResponse | None:
        """One SIP transaction for the request, then wait for the `<mrs>` answering `ref`."""
        ids = sip.new_ids(self.local[0])
        request = self._request(body, ids)
        deadline = time.monotonic() + self.answer_timeout_s
        retransmit_at, interval = time.monotonic(), 0.5
        hop_done = False
        while True:
            now = time.monotonic()
            if now >= deadline:
                return None
            if not hop_done and now >= retransmit_at:
                # RFC 3261 timer E: repeat the same transaction until the hop is answered.
                self.sock.sendto(request, self.gateway)
                retransmit_at, interval = now + interval, min(interval * 2, 4.0)
            self.sock.settimeout(max(0.01, min(deadline, retransmit_at) - now)
                                 if not hop_done else max(0.01, deadline - now))
            try:
                data, addr = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            try:
                msg = sip.parse(data)
            except AdapterError:
                continue
            if not msg.is_request:
                if msg.call_id != ids.call_id or msg.status is None or msg.status < 200:
                    continue
                if msg.status == 401 and self._challenged(msg):
                    # Asked who we are: the same request again, with credentials, as a new
                    # transaction (RFC 3261 §22.2).
                    ids = sip.NewIds(ids.call_id, ids.from_tag, sip.new_ids().branch)
                    request = self._request(body, ids)
                    retransmit_at, interval = time.monotonic(), 0.5
                    continue
                hop_done = True
                outcome.sip_status = msg.status
                if msg.status >= 300:
                    return None
                continue
            if msg.method != "MESSAGE":
                continue
            self.sock.sendto(sip.build_response(msg, 200), addr)
            try:
                answer = scaip.parse_mrs(sip.decoded_body(msg))
            except AdapterError:
                continue
            if answer.ref == ref or (answer.ref is None and answer.snu != Snu.OK):
                return answer


    def _request(self, body: bytes, ids: sip.NewIds) -> bytes:
        self.cseq += 1
        host, port = self.gateway
        uri = f"sip:arc@{host}:{port}"
        extra: list[tuple[str, str]] = []
        if self._challenge is not None and self.spec.password is not None:
            self._nc += 1
            extra.append(("Authorization", sip_digest.authorization(
                self._challenge, method="MESSAGE", uri=uri, username=self.spec.device_id,
                password=self.spec.password, nc=self._nc, cnonce=secrets.token_hex(8))))
        return sip.build_message(
            request_uri=uri, from_uri=self.uri, to_uri=uri, ids=ids, cseq=self.cseq,
            via_sent_by=f"{self.local[0]}:{self.local[1]};rport", body=body, transport="UDP",
            contact=self.uri, extra_headers=extra)

    def _challenged(self, answer: sip.SipMessage) -> bool:
        """Take the gateway's challenge; False when there is nothing (more) to answer it with:
        no credential, or it was just refused (a fresh nonce, not a stale one)."""
        if self.spec.password is None:
            return False
        offered = [sip_digest.parse_challenge(v) for v in answer.header_values("WWW-Authenticate")
                   if v.lower().startswith("digest")]
        if not offered:
            return False
        refused = self._challenge is not None and not offered[0].stale and \
            self._answered_nonce == self._challenge.nonce
        self._challenge, self._nc = offered[0], 0
        self._answered_nonce = offered[0].nonce
        return not refused


@dataclass
class Report:
    """What the simulated units sent and how they were answered."""

    sent: Counter[str] = field(default_factory=Counter)  # by unit kind
    snu: Counter[str] = field(default_factory=Counter)  # "<kind>:<snu>", "none" if unanswered
    holds: int = 0
    resends: int = 0
    gave_up: int = 0
    outcomes: list[Outcome] = field(default_factory=list)

    def add(self, kind: str, outcome: Outcome) -> None:
        self.sent[kind] += 1
        self.snu[f"{kind}:{outcome.snu if outcome.snu is not None else 'none'}"] += 1
        self.holds += outcome.holds
        self.resends += max(0, outcome.attempts - 1)
        self.gave_up += int(outcome.gave_up)
        self.outcomes.append(outcome)

    def summary(self) -> str:
        answers = ", ".join(f"{k}={v}" for k, v in sorted(self.snu.items()))
        return (f"SCAIP: sent {sum(self.sent.values())} ({answers}); holds {self.holds}, "
                f"resends {self.resends}, gave up {self.gave_up}")


def _round(unit: ScaipUnit, index: int, rng: random.Random, now: datetime) -> Outcome:
    """The unit's message for round `index`: a heartbeat first, then what such a unit sends."""
    ref = new_ref()
    kind = unit.spec.kind
    if index == 0:
        return unit.send(unit.mrq(ref, mty=Mty.PING, hbo=True), ref=ref, mty=Mty.PING)
    if kind == GPS_ALARM:
        # Mostly positions with a test transmission, now and then a button alarm.
        geo = (GOTEBORG[0] + rng.uniform(-0.05, 0.05), GOTEBORG[1] + rng.uniform(-0.05, 0.05))
        alarm = rng.random() < 0.3
        body = unit.mrq(ref, stc=scaip.STC_MANUAL if alarm else 102, pri=9 if alarm else None,
                        geo=geo, tim=now)
    elif kind == NIGHT_SENSOR:
        # Lying in bed, movement, and sometimes a bed-exit alarm (stc omitted = alarm).
        body = unit.mrq(ref, stc=rng.choice((117, 119, 117, None)), tim=now)
    else:
        stc = rng.choice((scaip.STC_PILL_REMINDER, scaip.STC_PILL_TAKEN,
                          scaip.STC_PILL_TAKEN, scaip.STC_PILL_NOT_TAKEN))
        body = unit.mrq(ref, stc=stc, tim=now)
    return unit.send(body, ref=ref)


def run(gateway: tuple[str, int], units: Sequence[UnitSpec], *,
        rounds: int | None = 1, interval_s: float = 5.0, stop: threading.Event | None = None,
        resend_s: tuple[float, float] = (5.0, 20.0), answer_timeout_s: float = 10.0,
        hold_max_s: float = 30 * 60, seed: int | None = None) -> Report:
    """Drive `units` against the gateway's SIP address until `rounds` are done or `stop` is set.

    The first round is a heartbeat with `hbo=001` from every unit; later rounds send what each
    kind of unit sends. The units must be registered (their `device_id`), or they get `snu=5`.
    """
    stop = stop or threading.Event()
    rng = random.Random(seed)
    report = Report()
    sims = [ScaipUnit(spec, gateway, resend_s=resend_s, answer_timeout_s=answer_timeout_s,
                      hold_max_s=hold_max_s, rng=random.Random(rng.random())) for spec in units]
    done = 0
    try:
        while not stop.is_set() and (rounds is None or done < rounds):
            now = datetime.now(UTC).replace(microsecond=0)
            for unit in sims:
                report.add(unit.spec.kind, _round(unit, done, rng, now))
            done += 1
            if rounds is None or done < rounds:
                stop.wait(interval_s)
    finally:
        for unit in sims:
            unit.close()
    return report
