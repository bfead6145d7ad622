"""SIP Digest authentication (RFC 3261 §22.4 with RFC 7616's algorithms), sans-IO.

Alarm centres ask for it (SS 91100 §8: HTTP Digest, MD5 in SIP practice; Basic is forbidden):
an ARC answers a MESSAGE without credentials `401` with `WWW-Authenticate` (or `407` with
`Proxy-Authenticate`), and the sender repeats it with `Authorization` (`Proxy-Authorization`).
The gateway asks SCAIP units for it the same way. Here: parsing a challenge (untrusted input:
a fault is a SipError naming the header), the client's answer to it, the server's challenge,
and the server's check, from H(A1) (what a server keeps instead of the password). Header
values in, header values out.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from adapters.sip import SipError

ALGORITHMS = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s",]+))\s*(?:,|$)')
MAX_HEADER = 4096


@dataclass(frozen=True, slots=True)
class Challenge:
    realm: str
    nonce: str
    algorithm: str = "MD5"  # MD5, MD5-sess, SHA-256 or SHA-256-sess
    qop: tuple[str, ...] = ()  # what the server offers; "auth" is used when offered
    opaque: str | None = None
    stale: bool = False


def params(value: str, header: str) -> dict[str, str]:
    """The auth-params of a `Digest …` header value (names lower-cased, quotes removed)."""
    if len(value) > MAX_HEADER:
        raise SipError(header, f"longer than {MAX_HEADER} characters")
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise SipError(header, "not a Digest challenge or answer")
    out: dict[str, str] = {}
    position = 0
    rest = rest.strip()
    while position < len(rest):
        match = _PARAM.match(rest, position)
        if match is None or match.end() == position:
            raise SipError(header, "auth-params not understood")
        quoted, token = match.group(2), match.group(3)
        out[match.group(1).lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None \
            else token
        position = match.end()
    return out


def parse_challenge(value: str, header: str = "WWW-Authenticate") -> Challenge:
    found = params(value, header)
    realm, nonce = found.get("realm"), found.get("nonce")
    if realm is None or not nonce:
        raise SipError(header, "realm and nonce are required")
    algorithm = found.get("algorithm", "MD5").upper()
    if algorithm.removesuffix("-SESS") not in ALGORITHMS:
        raise SipError(header, f"algorithm {algorithm[:20]} not supported (MD5, SHA-256)")
    qop = tuple(q.strip().lower() for q in found.get("qop", "").split(",") if q.strip())
    if qop and "auth" not in qop:
        raise SipError(header, "only qop=auth is supported")
    return Challenge(realm, nonce, algorithm, qop, found.get("opaque"),
                     found.get("stale", "").lower() == "true")


def _hash(algorithm: str, text: str) -> str:
    return ALGORITHMS[algorithm.upper().removesuffix("-SESS")](text.encode()).hexdigest()


def ha1(algorithm: str, username: str, realm: str, password: str) -> str:
    """H(A1) = H(username:realm:password): what a server keeps instead of the password."""
    return _hash(algorithm, f"{username}:{realm}:{password}")


def response_from_ha1(challenge: Challenge, secret_ha1: str, *, method: str, uri: str,
                      nc: int = 1, cnonce: str = "") -> str:
    """The `response` value: KD(H(A1), nonce[:nc:cnonce:qop]:H(A2)) (RFC 7616 §3.4.1)."""
    algorithm = challenge.algorithm
    if algorithm.upper().endswith("-SESS"):
        secret_ha1 = _hash(algorithm, f"{secret_ha1}:{challenge.nonce}:{cnonce}")
    ha2 = _hash(algorithm, f"{method}:{uri}")
    if "auth" in challenge.qop:
        return _hash(algorithm, f"{secret_ha1}:{challenge.nonce}:{nc:08x}:{cnonce}:auth:{ha2}")
    return _hash(algorithm, f"{secret_ha1}:{challenge.nonce}:{ha2}")


def response(challenge: Challenge, *, method: str, uri: str, username: str, password: str,
             nc: int = 1, cnonce: str = "") -> str:
    """The `response` value a client computes from its password."""
    return response_from_ha1(
        challenge, ha1(challenge.algorithm, username, challenge.realm, password),
        method=method, uri=uri, nc=nc, cnonce=cnonce)


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def authorization(challenge: Challenge, *, method: str, uri: str, username: str,
                  password: str, nc: int = 1, cnonce: str = "") -> str:
    """The `Authorization` (or `Proxy-Authorization`) value answering `challenge`."""
    answer = response(challenge, method=method, uri=uri, username=username, password=password,
                      nc=nc, cnonce=cnonce)
    parts = [f"username={_quoted(username)}", f"realm={_quoted(challenge.realm)}",
             f"nonce={_quoted(challenge.nonce)}", f"uri={_quoted(uri)}",
             f"response={_quoted(answer)}", f"algorithm={challenge.algorithm}"]
    if "auth" in challenge.qop:
        parts += ["qop=auth", f"nc={nc:08x}", f"cnonce={_quoted(cnonce)}"]
    elif challenge.algorithm.upper().endswith("-SESS"):  # H(A1) takes the cnonce
        parts.append(f"cnonce={_quoted(cnonce)}")
    if challenge.opaque is not None:
        parts.append(f"opaque={_quoted(challenge.opaque)}")
    return "Digest " + ", ".join(parts)


def verify(value: str, *, method: str, realm: str, nonces: set[str], username: str,
           password: str, header: str = "Authorization") -> bool:
    """Whether an `Authorization` value answers one of our `nonces` for this user correctly
    (a simulated ARC's check; raises SipError when the value cannot be read)."""
    got = params(value, header)
    nonce, uri, answer = got.get("nonce", ""), got.get("uri", ""), got.get("response", "")
    if got.get("username") != username or got.get("realm") != realm or nonce not in nonces:
        return False
    qop = ("auth",) if got.get("qop") == "auth" else ()
    count = got.get("nc", "1")
    if not re.fullmatch(r"[0-9a-fA-F]{1,8}", count):
        return False
    nc = int(count, 16)
    challenge = Challenge(realm, nonce, got.get("algorithm", "MD5"), qop)
    try:
        expected = response(challenge, method=method, uri=uri, username=username,
                            password=password, nc=nc, cnonce=got.get("cnonce", ""))
    except KeyError:  # an algorithm we never offered
        return False
    return hmac.compare_digest(expected, answer)


def challenge_header(realm: str, nonce: str, algorithm: str = "SHA-256", *,
                     stale: bool = False) -> str:
    """A `WWW-Authenticate` value asking for Digest with qop=auth (a server sends one per
    algorithm it accepts, the strongest first)."""
    value = (f"Digest realm={_quoted(realm)}, nonce={_quoted(nonce)}, algorithm={algorithm}, "
             'qop="auth"')
    return value + (", stale=true" if stale else "")


@dataclass(frozen=True, slots=True)
class Answer:
    """A client's `Authorization`, read (nothing checked yet)."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str
    qop: str | None
    nc: int
    cnonce: str


def parse_answer(value: str, header: str = "Authorization") -> Answer:
    got = params(value, header)
    missing = [n for n in ("username", "realm", "nonce", "uri", "response") if n not in got]
    if missing:
        raise SipError(header, f"{missing[0]} is required")
    count = got.get("nc", "1")
    if not re.fullmatch(r"[0-9a-fA-F]{1,8}", count):
        raise SipError(header, "nc is not 8 hexadecimal digits")
    algorithm = got.get("algorithm", "MD5").upper()
    if algorithm.removesuffix("-SESS") not in ALGORITHMS:
        raise SipError(header, f"algorithm {algorithm[:20]} not supported (MD5, SHA-256)")
    return Answer(got["username"], got["realm"], got["nonce"], got["uri"], got["response"],
                  algorithm, got.get("qop"), int(count, 16), got.get("cnonce", ""))


def answers(answer: Answer, secret_ha1: str, *, method: str) -> bool:
    """Whether `answer` was computed with the password behind `secret_ha1` (its algorithm's
    H(A1)) for its own nonce, uri and count. The nonce's freshness is the caller's to check."""
    qop = ("auth",) if answer.qop == "auth" else ()
    expected = response_from_ha1(Challenge(answer.realm, answer.nonce, answer.algorithm, qop),
                                 secret_ha1, method=method, uri=answer.uri, nc=answer.nc,
                                 cnonce=answer.cnonce)
    return hmac.compare_digest(expected, answer.response)
