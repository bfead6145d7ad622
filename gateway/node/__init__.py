"""The huvudman node (docs/architecture.md, Roles): receives one huvudman's deliveries, opens them
with that huvudman's private key(s) and keeps the huvudman's copy (docs/delivery.md).

- `opening`: one wire item to an opened copy, or the reason it is refused.
- `app`: the FastAPI app (`POST /v1/deliveries`, health, readiness, metrics).
- `server`: configuration from files, and running the app under uvicorn.
- `metrics`: the node's Prometheus metrics.
- `fhir_bundle`: stored readings as a FHIR R4 transaction Bundle of PHD Observations (pure).
- `fhir_forward`: the background loop posting them to the huvudman's FHIR server, with retries.

Its storage (migrations and statements, schema `huvudman_node`) is gateway/store/node.py,
beside the rest of the project's SQL.
"""
