"""Transports: the sockets. Each hands a device's bytes to gateway.ingest and acknowledges only
after the commit (MQTT PUBACK, HTTP 2xx, SCAIP `snu`).

- `mqtt_ingest`: paho-mqtt, QoS 1, persistent session, manual ack (docs/mqtt.md).
- `http/`: the device endpoints of every format, the admin API, operations (docs/http.md).
- `sip_listener`: SCAIP over SIP on UDP, TCP and TLS (docs/sip.md).
"""
