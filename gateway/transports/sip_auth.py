"""Who a SCAIP request comes from (SS 91100 §8): SIP Digest against the unit's credential, or
a certificate from HMC's device CA on the TLS listener.

A MESSAGE without valid credentials is answered `401` with a fresh challenge, whatever the
unit: an unknown id, a wrong password and a stale nonce look the same from outside, so the
port tells nobody which units are registered. Nothing of a refused request is stored.

Nonces are stateless (a time and an HMAC under a key of this process): they need no table, and
one issued by another instance is simply refused and challenged again. Each (nonce, count) is
accepted once, so a captured MESSAGE cannot be played again to raise the alarm a second time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from adapters import sip_digest
from adapters.sip import SipError, SipMessage
from gateway.ownership.registry import Registry

NONCE_TTL_S = 300.0
SEEN_MAX = 100_000


@dataclass(frozen=True, slots=True)
class Verdict:
    device_id: str | None  # the authenticated unit, or None: challenge it
    stale: bool = False  # the answer was right but its nonce too old: say so (RFC 7616)
    failed: bool = False  # credentials were offered and refused (not merely absent)


class UnitAuth:
    def __init__(self, registry: Registry, realm: str, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._registry = registry
        self._realm = realm
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._seen: dict[tuple[str, int], float] = {}

    def challenge(self, *, stale: bool = False) -> tuple[tuple[str, str], ...]:
        """`WWW-Authenticate` headers for a `401`: SHA-256 first, MD5 (what most units speak)."""
        nonce = self._nonce()
        return tuple(("WWW-Authenticate",
                      sip_digest.challenge_header(self._realm, nonce, algorithm, stale=stale))
                     for algorithm in ("SHA-256", "MD5"))

    def check(self, msg: SipMessage, certified: str | None = None) -> Verdict:
        """The unit a MESSAGE comes from: `certified` (a verified TLS client certificate's
        device id) when that device may use the gateway, else its Digest answer's user."""
        if certified is not None and self._active(certified):
            return Verdict(certified)
        value = msg.header("Authorization")
        if value is None:
            return Verdict(None)
        try:
            answer = sip_digest.parse_answer(value)
        except SipError:
            return Verdict(None, failed=True)
        device = self._registry.device(answer.username)
        secret = None
        if device is not None and device.state != "retired":
            secret = device.sip_ha1_sha256 if answer.algorithm.startswith("SHA-256") \
                else device.sip_ha1_md5
        if secret is None or answer.realm != self._realm or \
                not sip_digest.answers(answer, secret, method=msg.method or ""):
            return Verdict(None, failed=True)
        fresh, stale = self._fresh(answer.nonce)
        if not fresh:
            return Verdict(None, stale=stale, failed=not stale)
        if not self._first_use(answer.nonce, answer.nc):
            return Verdict(None, failed=True)
        return Verdict(answer.username)

    def _active(self, device_id: str) -> bool:
        device = self._registry.device(device_id)
        return device is not None and device.state != "retired"

    def _nonce(self) -> str:
        issued = f"{int(self._clock() * 1000):x}"
        return f"{issued}.{self._mac(issued)}"

    def _mac(self, issued: str) -> str:
        return hmac.new(self._key, issued.encode(), hashlib.sha256).hexdigest()[:32]

    def _fresh(self, nonce: str) -> tuple[bool, bool]:
        """(ours and young enough, ours but too old)."""
        issued, _, mac = nonce.partition(".")
        if not hmac.compare_digest(mac, self._mac(issued)):
            return False, False
        try:
            age = self._clock() - int(issued, 16) / 1000
        except ValueError:
            return False, False
        return (0 <= age < NONCE_TTL_S), age >= NONCE_TTL_S

    def _first_use(self, nonce: str, nc: int) -> bool:
        now = self._clock()
        if len(self._seen) >= SEEN_MAX:
            self._seen = {k: t for k, t in self._seen.items() if now - t < NONCE_TTL_S}
        if (nonce, nc) in self._seen:
            return False
        self._seen[(nonce, nc)] = now
        return True
