"""Retry-After as kommun webhooks and FHIR servers send it (gateway/delivery/retry_after.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from gateway.delivery import retry_after

NOW = datetime(2026, 10, 21, 7, 27, tzinfo=UTC)


def test_delay_seconds_and_http_dates_give_the_wait_asked_for() -> None:
    assert retry_after.seconds("120", now=NOW) == 120.0
    assert retry_after.seconds(" 0 ", now=NOW) == 0.0
    assert retry_after.seconds("Wed, 21 Oct 2026 07:28:00 GMT", now=NOW) == 60.0
    # The obsolete forms RFC 9110 still asks recipients to accept.
    assert retry_after.seconds("Wednesday, 21-Oct-26 07:28:00 GMT", now=NOW) == 60.0
    assert retry_after.seconds("Wed Oct 21 07:28:00 2026", now=NOW) == 60.0


def test_a_date_in_the_past_means_now_and_a_long_wait_is_capped() -> None:
    assert retry_after.seconds("Sun, 06 Nov 1994 08:49:37 GMT", now=NOW) == 0.0
    assert retry_after.seconds("86400", now=NOW) == retry_after.CAP_S
    assert retry_after.seconds("9" * 5000, now=NOW) == retry_after.CAP_S
    assert retry_after.seconds("Wed, 21 Oct 2027 07:28:00 GMT", now=NOW) == retry_after.CAP_S


def test_absent_or_not_understood_is_none() -> None:
    for value in (None, "", "soon", "-5", "1.5", "٣", "Wed, 32 Oct 2026 07:28:00 GMT"):
        assert retry_after.seconds(value, now=NOW) is None, value


@given(st.text(max_size=60))
def test_any_header_value_gives_none_or_a_wait_within_the_cap(value: str) -> None:
    wait = retry_after.seconds(value, now=NOW)
    assert wait is None or 0.0 <= wait <= retry_after.CAP_S
