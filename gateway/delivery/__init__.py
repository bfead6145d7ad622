"""Delivery: from the outbox to the huvudmän and alarm receivers (docs/delivery.md)."""
