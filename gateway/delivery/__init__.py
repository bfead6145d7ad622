"""Delivery: from the outbox to the huvudmän and alarm receivers (docs/delivery.md).

- `outbox`: claim a lane's due deliveries, settle what the sinks answered; `dispatcher`: the
  loop per lane, retries with backoff, a circuit breaker per sink, dead letters.
- `sink`: what a sink promises (the contract); `sink_config`: config/sinks.toml; the sinks
  `webhook` (signed NDJSON, `wire` its format) and `mqtt_bridge` (the huvudman's own broker);
  `retry_after`.
- Alarm centres over SCAIP: `arc` (the forwarder: fast path from memory, hold, escalation,
  recovery), `arc_config`, `scaip_alarm` (the `<mrq>` it sends), `scaip_client` (UDP, TCP, TLS,
  Digest).
- Operators' views: `dead_letters` (`gateway deliveries`), `alarm_history` (`gateway alarms`).
"""
