"""The node's Prometheus metrics. Labels are bounded (result, reason): never an id."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter("gateway_node_requests_total",
                   "Delivery requests, by result (ok, unauthorized, too_large, "
                   "content_type, unavailable)", ["result"])
ITEMS = Counter("gateway_node_items_total",
                "Delivered items, by status (stored, duplicate, rejected, undecodable)",
                ["status"])
REJECTED = Counter("gateway_node_items_rejected_total", "Rejected items, by reason", ["reason"])
STORE_SECONDS = Histogram("gateway_node_store_seconds", "Time to store one opened batch",
                          buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1, 5))
