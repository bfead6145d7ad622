"""Prometheus metrics. Labels are bounded (transport, reason, format): never device ids."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECEIVED = Counter("gateway_ingest_messages_received_total",
                   "Messages received from devices", ["transport"])
ACCEPTED = Counter("gateway_ingest_events_accepted_total",
                   "Events committed (new, not duplicates)", ["transport"])
DUPLICATES = Counter("gateway_ingest_events_duplicate_total",
                     "Events already stored, absorbed by deduplication", ["transport"])
REJECTED = Counter("gateway_ingest_rejected_total",
                   "Rejected messages or items, by reason", ["transport", "reason"])
ACKED = Counter("gateway_ingest_messages_acked_total",
                "Messages acknowledged to the device or broker after commit", ["transport"])
BATCH_SIZE = Histogram("gateway_batch_events", "Events per committed batch",
                       buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2000, 5000))
COMMIT_SECONDS = Histogram("gateway_batch_commit_seconds", "Time to commit one batch",
                           buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1, 5))
ACK_SECONDS = Histogram("gateway_ingest_ack_latency_seconds",
                        "From receipt of a message to its acknowledgement", ["transport"],
                        buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1, 5))
COMMIT_FAILURES = Counter("gateway_batch_commit_failures_total",
                          "Batch commits that failed and were retried")
UNSTORABLE = Counter("gateway_unstorable_events_total",
                     "Events the database refused for their own data (SQLSTATE class 22/23): "
                     "left unacknowledged, the rest of their batch stored", ["lane"])
PENDING = Gauge("gateway_pipeline_pending_events", "Events received and not yet committed")
MQTT_CONNECTED = Gauge("gateway_mqtt_connected", "1 while the ingest MQTT session is up")
MQTT_ALARM_CONNECTED = Gauge("gateway_mqtt_alarm_connected",
                             "1 while the MQTT session of the alarm channel is up")

# Delivery (gateway/delivery/). `sink` is a configured sink's name (one per huvudman at most):
# bounded by configuration, never an event or device id.
DELIVERED = Counter("gateway_delivery_delivered_total",
                    "Deliveries the receiver stored (or already had)", ["sink", "lane"])
RETRIED = Counter("gateway_delivery_retried_total",
                  "Deliveries scheduled for another attempt", ["sink", "lane"])
DEAD_LETTERED = Counter("gateway_delivery_dead_lettered_total",
                        "Deliveries moved to the dead-letter queue", ["sink", "lane"])
NO_SINK = Counter("gateway_delivery_no_sink_total",
                  "Claims of deliveries whose destination has no sink (left pending)", ["lane"])
DELIVERY_REQUESTS = Counter("gateway_delivery_requests_total",
                            "Requests to sinks, by result (ok, failed)", ["sink", "result"])
BREAKER_OPEN = Gauge("gateway_delivery_breaker_open", "1 while a sink's circuit is open",
                     ["sink"])
ARC_ANSWERS = Counter("gateway_arc_answers_total",
                      "Alarm centres' answers to alarms: accepted, hold, busy, not_treated, "
                      "refused, no_answer, sip_error", ["receiver", "arc", "outcome"])
ARC_ACCEPTED = Counter("gateway_arc_accepted_total", "Alarms an alarm centre accepted",
                       ["receiver", "arc"])
ARC_ESCALATED = Counter("gateway_arc_escalated_total",
                        "Alarms moved to the next alarm centre", ["receiver"])
ARC_UP = Gauge("gateway_arc_up", "1 while an alarm centre answers heartbeats",
               ["receiver", "arc"])
DELIVERY_PENDING = Gauge("gateway_delivery_pending", "Deliveries pending, by lane", ["lane"])
DELIVERY_SECONDS = Histogram("gateway_delivery_latency_seconds",
                             "From the event's commit to its delivery being done", ["lane"],
                             buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
                                      60, 300, 3600))

# Device supervision (gateway/ingest/supervision.py). `type` is an AlarmType value: a fixed set.
SUPERVISED_DEVICES = Gauge("gateway_supervision_devices",
                           "Assigned devices with an expected heartbeat interval")
SILENT_DEVICES = Gauge("gateway_supervision_silent_devices",
                       "Supervised devices past their interval and grace")
TECHNICAL_ALARMS = Counter("gateway_supervision_technical_alarms_total",
                           "Technical alarms raised by the gateway (new, not resends)", ["type"])
TASK_FAILURES = Counter("gateway_task_failures_total",
                        "Long-lived tasks that failed and were started again (or, for the "
                        "pipeline, stopped the process)", ["task"])
LISTENING = Gauge("gateway_db_listening",
                  "1 while a LISTEN for this channel is established", ["channel"])
CONNECTIONS_REFUSED = Counter("gateway_connections_closed_total",
                              "Connections a listener closed: too many open, or a request that "
                              "did not arrive in time", ["listener", "reason"])
RATE_LIMITED = Counter("gateway_rate_limited_total",
                       "Requests refused for coming too fast, by listener and by what was "
                       "limited (device, address)", ["listener", "per"])
