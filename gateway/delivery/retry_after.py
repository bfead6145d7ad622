"""A receiver's `Retry-After` (RFC 9110 §10.2.3): how long it asks to be left alone.

Kommun webhooks and regional FHIR servers answer 429 or 503 with it when they are overloaded or
in maintenance. Asking again before then adds to their load and only earns another refusal, so
the webhook dispatcher and the node's FHIR forwarder wait at least that long (never longer than
`cap_s`: a receiver's typo must not park a huvudman's deliveries for a week).
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

CAP_S = 3600.0


def seconds(value: str | None, *, now: datetime | None = None,
            cap_s: float = CAP_S) -> float | None:
    """The wait asked for, in seconds within [0, cap_s]; None when absent or not understood.

    Both forms are accepted: delay-seconds (`120`) and an HTTP-date
    (`Wed, 21 Oct 2026 07:28:00 GMT`); a date in the past means "now" (0)."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        # A long digit string is "very long" (and int() refuses over 4,300 digits).
        return cap_s if len(text) > 9 else min(float(int(text)), cap_s)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; email.utils leaves "-0000" naive
        when = when.replace(tzinfo=UTC)
    wait = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(wait, 0.0), cap_s)
