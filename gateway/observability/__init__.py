"""Logs (structlog, with redaction as a last line of defence) and Prometheus metrics: ids,
counts and durations only, never values, positions or subject references."""
