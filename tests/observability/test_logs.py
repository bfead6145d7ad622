"""Logs carry ids, never values, positions or subject references."""

from __future__ import annotations

import json

import pytest

from gateway.observability import logs


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_personal_fields_are_redacted_and_tracebacks_have_no_locals(
        fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure(fmt)
    log = logs.get("test")
    subject_ref = "test-subject-19121212-1212"
    try:
        weight = 72.4
        raise ValueError(f"reading rejected ({weight > 0})")
    except ValueError:
        log.exception("rejected", device_id="SCALE-1", value=72.4, subject_ref=subject_ref,
                      position=(57.7, 11.97))
    err = capsys.readouterr().err
    assert "SCALE-1" in err and "ValueError" in err
    for secret in ("72.4", "19121212", "57.7", "11.97"):
        assert secret not in err
    if fmt == "json":
        assert json.loads(err)["value"] == "[redacted]"
    logs.configure("json")
