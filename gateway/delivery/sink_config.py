"""config/sinks.toml: which sink each destination's deliveries go to, its credentials and
limits, and the alarm centres (`[[arc]]`). Read at start-up; a mistake refuses start-up with a
message naming the file, the entry and the field (docs/delivery.md)."""

from __future__ import annotations

import os
import ssl
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Self
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.delivery.arc_config import ArcSpec
from gateway.delivery.mqtt_bridge import MqttBridgeSink
from gateway.delivery.sink import Sink, destination
from gateway.delivery.webhook import WebhookSink
from gateway.tls import client_context

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
    sinks: dict[str, Sink] = {}
    bridges: list[MqttBridgeSink] = []
    for dest, (where, spec) in _entries(path).items():
        if isinstance(spec, MqttSpec):
            bridges.append(_bridge(path, where, spec))
            sinks[dest] = bridges[-1]
            continue
        secret = read_credential(path, where, "secret", spec.secret_file, spec.secret_env)
        sinks[dest] = WebhookSink(f"webhook:{dest}", spec.url, secret,
                                  batch_max=spec.batch_max, timeout_s=spec.timeout_s)
    for bridge in bridges:
        bridge.connect_soon()
    return sinks


def _bridge(path: Path, where: str, spec: MqttSpec) -> MqttBridgeSink:
    """The bridge of one `[[mqtt]]` entry, not connected yet. Credentials and the CA file are
    read now; a refusal names the file, the entry and the field."""
    secret = read_credential(path, where, "secret", spec.secret_file, spec.secret_env)
    password = None
    if spec.password_file is not None or spec.password_env is not None:
        password = read_credential(path, where, "password", spec.password_file,
                                   spec.password_env).decode()
    tls = None
    if spec.url.startswith("mqtts://"):
        ca = spec.ca_file
        if ca is not None and not ca.is_absolute():
            ca = path.parent / ca
        try:
            tls = client_context(ca)
        except ssl.SSLError:  # an OSError too: first
            raise SinkConfigError(f"{path}: {where}.ca_file: {ca} holds no PEM "
                                  "certificate") from None
        except OSError as err:
            raise SinkConfigError(f"{path}: {where}.ca_file: cannot read {ca}: "
                                  f"{err.strerror}") from None
    return MqttBridgeSink(
        f"mqtt:{spec.destination}", spec.url, huvudman=spec.huvudman, secret=secret,
        topic_prefix=spec.topic_prefix, username=spec.username, password=password, tls=tls,
        client_id=spec.client_id, require_subscriber=spec.require_subscriber,
        batch_max=spec.batch_max, timeout_s=spec.timeout_s)
