"""Runtime settings, from the environment (12-factor), with defaults that suit one machine."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _port_or_off(name: str, default: int) -> int:
    """A port number; `off` (or 0) means the listener is not started."""
    raw = os.environ.get(name, "").strip().lower()
    return 0 if raw in ("off", "0") else int(raw or default)


@dataclass(frozen=True, slots=True)
class Settings:
    # Unset means "start the embedded one" in `gateway demo`; `gateway serve` requires them.
    database_url: str | None = field(default_factory=lambda: os.environ.get("DATABASE_URL"))
    # The schema's owner, for `gateway migrate` only; DATABASE_URL is a gateway_runtime member.
    migration_database_url: str | None = field(
        default_factory=lambda: os.environ.get("MIGRATION_DATABASE_URL"))
    mqtt_url: str | None = field(default_factory=lambda: os.environ.get("MQTT_URL"))
    # The alarm channel's connection (its own broker user: the shipped broker ties client ids
    # to users, docs/mqtt.md); unset, MQTT_URL's.
    mqtt_alarm_url: str | None = field(
        default_factory=lambda: os.environ.get("MQTT_ALARM_URL") or None)
    # mqtts://: the broker's CA (unset: the system's), and a client certificate if it asks.
    mqtt_ca_file: Path | None = field(default_factory=lambda: _path("MQTT_CA_FILE"))
    mqtt_cert_file: Path | None = field(default_factory=lambda: _path("MQTT_CERT_FILE"))
    mqtt_key_file: Path | None = field(default_factory=lambda: _path("MQTT_KEY_FILE"))
    http_host: str = field(default_factory=lambda: os.environ.get("HTTP_HOST", "127.0.0.1"))
    http_port: int = field(default_factory=lambda: _int("HTTP_PORT", 8080))
    # Group commit: a batch is written when it holds this many events or is this old.
    batch_max_events: int = field(default_factory=lambda: _int("BATCH_MAX_EVENTS", 2000))
    batch_max_wait_s: float = field(default_factory=lambda: _float("BATCH_MAX_WAIT_S", 0.005))
    # Client id of the persistent MQTT session; the broker keeps unacked messages for it.
    mqtt_client_id: str = field(
        default_factory=lambda: os.environ.get("MQTT_CLIENT_ID", "gateway-ingest"))
    # Set to a group name to share the load among several ingest instances ($share/<group>/…).
    mqtt_shared_group: str | None = field(
        default_factory=lambda: os.environ.get("MQTT_SHARED_GROUP") or None)
    # Which MQTT channels this instance reads (docs/mqtt.md): `up` and `alarm`, each on its own
    # connection. An instance (process) of its own for `alarm` keeps alarms off the interpreter
    # that parses telemetry.
    # `none`: no MQTT at all (an instance that only delivers, or only serves HTTP and SIP).
    mqtt_channels: tuple[str, ...] = field(default_factory=lambda: tuple(
        c.strip() for c in os.environ.get("MQTT_CHANNELS", "up,alarm").split(",")
        if c.strip() and c.strip() != "none"))
    mqtt_topic_prefix: str = field(
        default_factory=lambda: os.environ.get("MQTT_TOPIC_PREFIX", "devices"))
    # Paho message ids are 16 bit; stay far below 65,535 unacknowledged messages.
    mqtt_max_inflight: int = field(default_factory=lambda: _int("MQTT_MAX_INFLIGHT", 1000))
    http_max_body_bytes: int = field(
        default_factory=lambda: _int("HTTP_MAX_BODY_BYTES", 1_048_576))
    # Slow and idle clients, and floods (docs/http.md, Limits): a request must arrive whole
    # within this many seconds; at most this many connections at once; requests a second (on
    # average, and at once) per device and per source address; 0 turns a rate limit off.
    http_request_timeout_s: float = field(
        default_factory=lambda: _float("HTTP_REQUEST_TIMEOUT_S", 10.0))
    http_max_connections: int = field(
        default_factory=lambda: _int("HTTP_MAX_CONNECTIONS", 1000))
    http_rate_per_device: float = field(
        default_factory=lambda: _float("HTTP_RATE_PER_DEVICE", 10.0))
    http_burst_per_device: float = field(
        default_factory=lambda: _float("HTTP_BURST_PER_DEVICE", 100.0))
    http_rate_per_address: float = field(
        default_factory=lambda: _float("HTTP_RATE_PER_ADDRESS", 2000.0))
    http_burst_per_address: float = field(
        default_factory=lambda: _float("HTTP_BURST_PER_ADDRESS", 20000.0))
    mqtt_max_payload_bytes: int = field(
        default_factory=lambda: _int("MQTT_MAX_PAYLOAD_BYTES", 262_144))
    # How long an HTTP request waits for its commit before answering 503 (the client retries).
    http_commit_timeout_s: float = field(
        default_factory=lambda: _float("HTTP_COMMIT_TIMEOUT_S", 10.0))
    # How long a stop (SIGTERM) may take to commit and acknowledge what it holds; past it the
    # rest is left unacknowledged, for the broker and the devices to send again (exit 1).
    shutdown_timeout_s: float = field(
        default_factory=lambda: _float("SHUTDOWN_TIMEOUT_S", 20.0))
    state_dir: Path = field(
        default_factory=lambda: Path(os.environ.get("GATEWAY_STATE_DIR", ".state")))
    log_format: str = field(default_factory=lambda: os.environ.get("LOG_FORMAT", "json"))
    # Secret for subject pseudonyms in stored key rows (gateway.crypto.pseudonym): ingest
    # configuration like a database password, never stored with the data.
    pseudonym_secret_file: Path | None = field(default_factory=lambda: _path(
        "PSEUDONYM_SECRET_FILE"))
    # HMC's fault-finding key: what no huvudman owns is sealed to it, and expires.
    quarantine_public_key_file: Path | None = field(default_factory=lambda: _path(
        "QUARANTINE_PUBLIC_KEY_FILE"))
    quarantine_ttl_s: float = field(default_factory=lambda: _float("QUARANTINE_TTL_S",
                                                                   7 * 86400))
    # How often the interpreter lets another thread run (sys.setswitchinterval). Python's
    # 5 ms default lets paho's busy network thread hold up the event loop, and so an alarm, for
    # up to 5 ms at each hand-over; 1 ms trades a little throughput for alarm latency.
    gil_switch_interval_s: float = field(
        default_factory=lambda: _float("GIL_SWITCH_INTERVAL_S", 0.001))
    # The alarm relay (docs/delivery.md, "Alarm centres"): alarms routed to an alarm centre are
    # also sealed to its public key; an instance given the private key also resends alarms
    # that another (stopped) instance left unfinished.
    alarm_relay_public_key_file: Path | None = field(default_factory=lambda: _path(
        "ALARM_RELAY_PUBLIC_KEY_FILE"))
    alarm_relay_private_key_file: Path | None = field(default_factory=lambda: _path(
        "ALARM_RELAY_PRIVATE_KEY_FILE"))
    # The UDP address alarms leave from and alarm centres answer to (port 0: any free one).
    arc_sip_host: str = field(default_factory=lambda: os.environ.get("ARC_SIP_HOST",
                                                                     "127.0.0.1"))
    arc_sip_port: int = field(default_factory=lambda: _int("ARC_SIP_PORT", 0))
    # How long an alarm being sent stays this instance's before another may take it over.
    arc_lease_s: float = field(default_factory=lambda: _float("ARC_LEASE_S", 30.0))
    # Where an alarm goes that no assignment routes to an alarm receiver (never dropped).
    fallback_alarm_receiver: str = field(default_factory=lambda: os.environ.get(
        "FALLBACK_ALARM_RECEIVER", "hmc-fallback-arc"))
    # SCAIP over SIP (docs/sip.md): UDP and TCP on the same port; SIP_PORT=off disables it.
    sip_host: str = field(default_factory=lambda: os.environ.get("SIP_HOST", "127.0.0.1"))
    sip_port: int = field(default_factory=lambda: _port_or_off("SIP_PORT", 5060))
    # SIP over TLS (`sips:`, SCAIP's transport security): its own port, off unless given,
    # with the gateway's certificate chain and key (docs/sip.md).
    sip_tls_port: int = field(default_factory=lambda: _port_or_off("SIP_TLS_PORT", 0))
    # SIP Digest realm of SCAIP units (the credentials HMC issues are bound to it: changing it
    # means issuing new ones). `SIP_UNIT_AUTH=off` accepts units that cannot authenticate
    # (docs/sip.md: anyone who reaches the port can then raise or cancel their alarms).
    sip_realm: str = field(default_factory=lambda: os.environ.get(
        "SIP_REALM", "vgr-telemetry-gateway"))
    sip_unit_auth: bool = field(default_factory=lambda: os.environ.get(
        "SIP_UNIT_AUTH", "digest").strip().lower() != "off")
    # SCAIP units over TLS may prove who they are with a certificate from this CA instead
    # (its common name the unit's device id).
    sip_tls_client_ca_file: Path | None = field(
        default_factory=lambda: _path("SIP_TLS_CLIENT_CA_FILE"))
    # As for HTTP: a SIP message over TCP/TLS must arrive whole in this time; connections at
    # once per listener; MESSAGEs a second per source address (0: no limit).
    sip_request_timeout_s: float = field(
        default_factory=lambda: _float("SIP_REQUEST_TIMEOUT_S", 10.0))
    sip_max_connections: int = field(default_factory=lambda: _int("SIP_MAX_CONNECTIONS", 1000))
    sip_rate_per_address: float = field(
        default_factory=lambda: _float("SIP_RATE_PER_ADDRESS", 50.0))
    sip_burst_per_address: float = field(
        default_factory=lambda: _float("SIP_BURST_PER_ADDRESS", 500.0))
    sip_tls_cert_file: Path | None = field(default_factory=lambda: _path("SIP_TLS_CERT_FILE"))
    sip_tls_key_file: Path | None = field(default_factory=lambda: _path("SIP_TLS_KEY_FILE"))
    # The heartbeat interval (`hbi`, minutes) offered to units that let the ARC set it.
    scaip_heartbeat_interval_min: int = field(
        default_factory=lambda: _int("SCAIP_HEARTBEAT_INTERVAL_MIN", 10))
    # Delivery (docs/delivery.md): DELIVERY=off disables the dispatcher in this instance.
    delivery_enabled: bool = field(default_factory=lambda: os.environ.get(
        "DELIVERY", "on").strip().lower() not in ("off", "0", "false", "no"))
    sinks_file: Path = field(default_factory=lambda: Path(os.environ.get(
        "SINKS_FILE", "config/sinks.toml")))
    delivery_max_attempts: int = field(default_factory=lambda: _int("DELIVERY_MAX_ATTEMPTS", 20))
    delivery_backoff_base_s: float = field(
        default_factory=lambda: _float("DELIVERY_BACKOFF_BASE_S", 1.0))
    delivery_breaker_open_s: float = field(
        default_factory=lambda: _float("DELIVERY_BREAKER_OPEN_S", 30.0))
    # Device supervision (docs/supervision.md): SUPERVISION=off disables it in this instance.
    supervision_enabled: bool = field(default_factory=lambda: os.environ.get(
        "SUPERVISION", "on").strip().lower() not in ("off", "0", "false", "no"))
    supervision_check_s: float = field(
        default_factory=lambda: _float("SUPERVISION_CHECK_S", 30.0))
    supervision_grace_s: float = field(
        default_factory=lambda: _float("SUPERVISION_GRACE_S", 60.0))
    supervision_flush_s: float = field(
        default_factory=lambda: _float("SUPERVISION_FLUSH_S", 5.0))
    supervision_battery_low_pct: float = field(
        default_factory=lambda: _float("SUPERVISION_BATTERY_LOW_PCT", 15.0))
    # Expected heartbeat interval (minutes) per device type; types not listed are unsupervised
    # unless the device has its own `heartbeat_interval`
    # (gateway.ingest.supervision.parse_intervals).
    supervision_intervals_min: str = field(default_factory=lambda: os.environ.get(
        "SUPERVISION_INTERVALS_MIN",
        "gps_alarm=15,night_sensor=15,medicine_robot=60,pill_dispenser=60"))
