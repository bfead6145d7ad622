"""The telemetry gateway: one code base, one `gateway` command, the roles of
docs/architecture.md. A folder per concern:

- `ingest/`: what happens to a device's bytes: decoding, routing and sealing, group commit.
- `ownership/`: who owns what: the registry, routing rules, assignments, the device lifecycle,
  keys, erasure and retention, the audit log.
- `transports/`: MQTT, HTTP (device endpoints and the admin API) and SIP (SCAIP).
- `delivery/`: the outbox to the huvudmän's sinks, and alarms to alarm centres.
- `node/`: the huvudman node, which holds the private key.
- `store/`: the one data-access layer (all SQL); `crypto/`: sealing and opening.
- `roles/`: a role as one running process; `cli/`: the command; `demo/`: embedded services.
- `observability/`: logs and metrics; `settings.py`: configuration from the environment.

The canonical events the adapters produce are adapters/events.py: the gateway depends on the
adapters, never the reverse.
"""
