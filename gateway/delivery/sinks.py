"""Where deliveries go: the `Sink` protocol, its per-item results, a circuit breaker per sink,
the webhook sink and its configuration (`config/sinks.toml`).

A sink answers per item: DONE (stored, or the receiver already had it), RETRY(reason) (try
again later) or REJECTED(reason) (the dead-letter queue at once). A request that failed as a
whole (5xx, 429, 401/403, timeout, connection error, an answer that does not decode) is RETRY
for every item: a configuration error must never turn data into dead letters. Reasons are
short and fixed, or the receiver's reason reduced to letters (`safe_reason`), so no value can
reach `last_error` or a log.
"""

from __future__ import annotations

import enum
import os
import re
import ssl
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Protocol, Self
from urllib.parse import urlsplit

import httpx
import msgspec
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.delivery import retry_after, wire
from gateway.delivery.arc_config import ArcSpec
from gateway.delivery.tls import client_context


class Outcome(enum.Enum):
    DONE = "done"
    RETRY = "retry"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class ItemResult:
    outcome: Outcome
    reason: str | None = None
    # The request failed in a way that must stop sending at once (401/403: configuration).
    open_breaker: bool = False
    # The receiver asked not to be sent anything for this long (429/503 `Retry-After`).
    retry_after_s: float | None = None


DONE = ItemResult(Outcome.DONE)


def RETRY(reason: str, *, open_breaker: bool = False,
          retry_after_s: float | None = None) -> ItemResult:
    return ItemResult(Outcome.RETRY, reason, open_breaker, retry_after_s)


def REJECTED(reason: str) -> ItemResult:
    return ItemResult(Outcome.REJECTED, reason)


_UNSAFE = re.compile(r"[^a-z _-]+")


def safe_reason(text: str | None, *, limit: int = 80) -> str:
    """A receiver's free-text reason reduced to lower-case letters, spaces, `_` and `-`: no
    digits or punctuation can carry a value or an identifier into last_error."""
    cleaned = " ".join(_UNSAFE.sub(" ", (text or "").lower()).split())
    return cleaned[:limit] or "unspecified"


class Sink(Protocol):
    name: str  # for the circuit breaker and metrics
    batch_max: int  # items per request
    timeout_s: float  # the longest one request may take

    async def send(self, items: Sequence[wire.Item]) -> Sequence[ItemResult]: ...

    async def aclose(self) -> None: ...


class Breaker:
    """Per-sink circuit breaker: after `threshold` consecutive failed requests it opens for
    `open_s`; then one trial request is let through, whose result closes or reopens it."""

    def __init__(self, threshold: int = 5, open_s: float = 30.0) -> None:
        self.threshold = threshold
        self.open_s = open_s
        self.failures = 0
        self.open_until: float | None = None
        self.trial_in_flight = False

    @property
    def is_open(self) -> bool:
        return self.open_until is not None

    def allow(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if self.open_until is None:
            return True
        if now < self.open_until or self.trial_in_flight:
            return False
        self.trial_in_flight = True
        return True

    def retry_in(self, now: float | None = None) -> float:
        """Seconds until a request may go again (for items held back while open)."""
        now = time.monotonic() if now is None else now
        if self.open_until is None:
            return 0.0
        return max(self.open_until - now, 0.0) + (1.0 if self.trial_in_flight else 0.0)

    def record(self, ok: bool, *, open_now: bool = False, open_for: float | None = None,
               now: float | None = None) -> None:
        """`open_for`: the receiver asked for that pause (`Retry-After`): open for exactly
        that long, at once."""
        now = time.monotonic() if now is None else now
        trial, self.trial_in_flight = self.trial_in_flight, False
        if ok:
            self.failures = 0
            self.open_until = None
            return
        self.failures += 1
        if open_for is not None:
            self.open_until = now + open_for
        elif trial or open_now or self.failures >= self.threshold:
            self.open_until = now + self.open_s


class WebhookSink:
    """POSTs a signed NDJSON batch (gateway.delivery.wire) to one huvudman's endpoint."""

    def __init__(self, name: str, url: str, secret: bytes, *, batch_max: int = 500,
                 timeout_s: float = 10.0, client: httpx.AsyncClient | None = None) -> None:
        self.name = name
        self.url = url
        self.batch_max = batch_max
        self.timeout_s = timeout_s
        self._secret = secret
        self._client = client or httpx.AsyncClient(timeout=timeout_s)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(self, items: Sequence[wire.Item]) -> Sequence[ItemResult]:
        body = wire.encode_batch(items)
        timestamp = int(time.time())
        headers = {"Content-Type": wire.CONTENT_TYPE,
                   wire.TIMESTAMP_HEADER: str(timestamp),
                   wire.SIGNATURE_HEADER: wire.sign(self._secret, timestamp, body)}
        try:
            answer = await self._client.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException:
            return [RETRY("timeout")] * len(items)
        except httpx.HTTPError:
            return [RETRY("connection failed")] * len(items)
        status = answer.status_code
        if status in (401, 403):
            return [RETRY(f"http {status}", open_breaker=True)] * len(items)
        if not 200 <= status < 300:
            # 5xx and 429 as the design says; any other 4xx too: a receiver's or a
            # configuration's fault must not dead-letter data.
            wait = retry_after.seconds(answer.headers.get("retry-after")) \
                if status in (429, 503) else None
            return [RETRY(f"http {status}", retry_after_s=wait)] * len(items)
        if not answer.content.strip():
            return [DONE] * len(items)
        try:
            decoded = wire.decode_answer(answer.content)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return [RETRY("answer not understood")] * len(items)
        by_id = {r.event_id: r for r in decoded.results}
        return [_item_result(by_id.get(str(i.event_id))) for i in items]


def _item_result(status: wire.ItemStatus | None) -> ItemResult:
    if status is None:
        return RETRY("no answer for item")
    if status.status in ("stored", "duplicate"):
        return DONE
    if status.status == "rejected":
        return REJECTED("rejected: " + safe_reason(status.reason))
    return RETRY("unknown item status")


# --- configuration --------------------------------------------------------------------------

Code = Annotated[str, StringConstraints(pattern=r"^[0-9]{2,4}$")]
Receiver = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]


class WebhookSpec(BaseModel):
    """One `[[webhook]]`: for a huvudman, or (`receiver`) for HMC's fallback alarm receiver."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    huvudman: Code | None = None
    receiver: Receiver | None = None
    url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")]
    secret_file: Path | None = None
    secret_env: Annotated[str, StringConstraints(pattern=r"^[A-Z_][A-Z0-9_]*$")] | None = None
    batch_max: Annotated[int, Field(ge=1, le=5000)] = 500
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0

    @model_validator(mode="after")
    def _one_each(self) -> Self:
        if (self.huvudman is None) == (self.receiver is None):
            raise ValueError("give exactly one of huvudman and receiver")
        if (self.secret_file is None) == (self.secret_env is None):
            raise ValueError("give exactly one of secret_file and secret_env")
        return self

    @property
    def destination(self) -> str:
        return destination(self.huvudman, self.receiver)


EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Z_][A-Z0-9_]*$")]
# Topic levels of letters, digits, `_`, `.`, `-`: no wildcard, no empty level, no `$` topic.
TopicPrefix = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")]


class MqttSpec(BaseModel):
    """One `[[mqtt]]`: a huvudman's own broker (gateway.delivery.mqtt_bridge)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    huvudman: Code
    # No user:password@ in the URL: credentials live in files or the environment, not here.
    url: Annotated[str, StringConstraints(
        pattern=r"^mqtts?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?/?$")]
    topic_prefix: TopicPrefix = "hmc-gateway"
    username: Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f]{1,256}$")] | None = None
    password_file: Path | None = None
    password_env: EnvName | None = None
    secret_file: Path | None = None  # the HMAC secret shared with the huvudman, as a webhook's
    secret_env: EnvName | None = None
    ca_file: Path | None = None
    client_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] | None = None
    require_subscriber: bool = True
    batch_max: Annotated[int, Field(ge=1, le=5000)] = 500
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0

    @field_validator("url")
    @classmethod
    def _port(cls, url: str) -> str:
        urlsplit(url).port  # noqa: B018  (raises ValueError when out of range)
        return url

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.secret_file is None) == (self.secret_env is None):
            raise ValueError("give exactly one of secret_file and secret_env")
        if self.password_file is not None and self.password_env is not None:
            raise ValueError("give at most one of password_file and password_env")
        if (self.password_file or self.password_env) and self.username is None:
            raise ValueError("password_file or password_env needs a username")
        if self.ca_file is not None and not self.url.startswith("mqtts://"):
            raise ValueError("ca_file needs an mqtts:// url")
        return self

    @property
    def destination(self) -> str:
        return self.huvudman


class SinksFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    webhook: list[WebhookSpec] = []
    mqtt: list[MqttSpec] = []
    arc: list[ArcSpec] = []


class SinkConfigError(Exception):
    """A refusal naming the file, the entry and the field."""


RECEIVER_PREFIX = "receiver:"


def destination(huvudman: str | None, receiver: str | None) -> str:
    """The key a delivery's sink is found by: its huvudman, else its (fallback) receiver."""
    return huvudman if huvudman is not None else f"{RECEIVER_PREFIX}{receiver}"


def read_sinks(path: Path) -> dict[str, WebhookSpec | MqttSpec]:
    """The sinks of `path` by destination; no file means no sinks (deliveries wait)."""
    return {dest: spec for dest, (_, spec) in _entries(path).items()}


def read_arcs(path: Path) -> dict[str, ArcSpec]:
    """The alarm centres (`[[arc]]`) of `path` by receiver name; no file means none."""
    if not path.exists():
        return {}
    arcs: dict[str, ArcSpec] = {}
    for n, spec in enumerate(_parse(path).arc):
        if spec.receiver in arcs:
            raise SinkConfigError(f"{path}: arc.{n}: a second entry for {spec.receiver}")
        files = {name: path.parent / value for name in ("tls_ca_file", "tls_cert_file",
                                                         "tls_key_file", "auth_password_file")
                 if (value := getattr(spec, name)) is not None and not value.is_absolute()}
        spec = spec.model_copy(update=files)
        if spec.uses_tls:  # read now: a file that will not do refuses start-up, naming it
            _check_tls(path, f"arc.{n}", spec)
        if spec.auth_user is not None:
            arc_password(path, f"arc.{n}", spec)
        arcs[spec.receiver] = spec
    return arcs


def arc_password(path: Path, where: str, spec: ArcSpec) -> str | None:
    """The Digest password of an `[[arc]]` (its file already resolved by read_arcs)."""
    if spec.auth_user is None:
        return None
    return read_credential(path, where, "auth_password", spec.auth_password_file,
                           spec.auth_password_env).decode()


def _check_tls(path: Path, where: str, spec: ArcSpec) -> None:
    try:
        context = client_context(spec.tls_ca_file)
    except (OSError, ssl.SSLError) as err:
        raise SinkConfigError(f"{path}: {where}.tls_ca_file: cannot use {spec.tls_ca_file} "
                              f"({type(err).__name__})") from None
    if spec.tls_cert_file is not None and spec.tls_key_file is not None:
        try:
            context.load_cert_chain(str(spec.tls_cert_file), str(spec.tls_key_file))
        except (OSError, ssl.SSLError) as err:
            raise SinkConfigError(f"{path}: {where}.tls_cert_file: cannot use "
                                  f"{spec.tls_cert_file} with {spec.tls_key_file} "
                                  f"({type(err).__name__})") from None


def _parse(path: Path) -> SinksFile:
    try:
        return SinksFile.model_validate(tomllib.loads(path.read_text("utf-8")))
    except tomllib.TOMLDecodeError as err:
        raise SinkConfigError(f"{path}: not valid TOML: {err}") from None
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SinkConfigError(f"{path}: {where}: {first['msg']}") from None


def _entries(path: Path) -> dict[str, tuple[str, WebhookSpec | MqttSpec]]:
    """Each destination's entry and where it is in the file (`webhook.0`, `mqtt.1`, ...)."""
    if not path.exists():
        return {}
    parsed = _parse(path)
    # One sink per destination, whatever its kind: two would each get half the items.
    specs: dict[str, tuple[str, WebhookSpec | MqttSpec]] = {}
    kinds: list[tuple[str, Sequence[WebhookSpec | MqttSpec]]] = [
        ("webhook", parsed.webhook), ("mqtt", parsed.mqtt)]
    for kind, entries in kinds:
        for n, spec in enumerate(entries):
            if spec.destination in specs:
                raise SinkConfigError(f"{path}: {kind}.{n}: a second sink for "
                                      f"{spec.destination} (the first is "
                                      f"{specs[spec.destination][0]})")
            specs[spec.destination] = (f"{kind}.{n}", spec)
    return specs


def read_credential(path: Path, where: str, field: str, file: Path | None,
                    env: str | None) -> bytes:
    """`{field}_env`'s variable or `{field}_file`'s content (relative to `path`), stripped; a
    refusal names the file, the entry (`where`) and the field."""
    if env is not None:
        value = os.environ.get(env, "").strip()
        if not value:
            raise SinkConfigError(f"{path}: {where}.{field}_env: {env} is not set")
        return value.encode()
    assert file is not None
    file = file if file.is_absolute() else path.parent / file
    try:
        value = file.read_text("utf-8").strip()
    except OSError as err:
        raise SinkConfigError(f"{path}: {where}.{field}_file: cannot read {file}: "
                              f"{err.strerror}") from None
    if not value:
        raise SinkConfigError(f"{path}: {where}.{field}_file: {file} is empty")
    return value.encode()


def build_sinks(path: Path) -> dict[str, Sink]:
    """Sinks by destination, from `path` (secrets read now: a missing one refuses start-up).
    MQTT bridges start connecting only once every entry has been read."""
    from gateway.delivery.mqtt_bridge import MqttBridgeSink, build  # it imports this module

    sinks: dict[str, Sink] = {}
    bridges: list[MqttBridgeSink] = []
    for dest, (where, spec) in _entries(path).items():
        if isinstance(spec, MqttSpec):
            bridges.append(build(path, where, spec))
            sinks[dest] = bridges[-1]
            continue
        secret = read_credential(path, where, "secret", spec.secret_file, spec.secret_env)
        sinks[dest] = WebhookSink(f"webhook:{dest}", spec.url, secret,
                                  batch_max=spec.batch_max, timeout_s=spec.timeout_s)
    for bridge in bridges:
        bridge.connect_soon()
    return sinks
