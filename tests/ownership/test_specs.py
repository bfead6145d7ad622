"""Free text and numbers of devices, huvudmän and assignments are refused as values (naming
the field) wherever they come from, never failed on later: config files, the CLI (whose
arguments may carry lone surrogates from undecodable bytes) and the admin API share the rules."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.ownership.registration import AssignmentSpec, HuvudmanSpec
from gateway.ownership.specs import DeviceSpec

ASSIGNMENT = {"device": "SCALE-1", "huvudman": "1490", "subject_ref": "test-19121212-1212",
              "legal_basis": "SoL", "kinds": ["weight"], "valid_from": "2026-01-01T00:00:00Z"}


def _field(err: ValidationError) -> str:
    return ".".join(str(p) for p in err.errors()[0]["loc"])


@pytest.mark.parametrize("text", ["a\x00b", "\x1b[2J", "tab\there", "del\x7f", "\udc80", "\ud800"])
@pytest.mark.parametrize(("model", "field", "base"), [
    (DeviceSpec, "model", {"id": "SCALE-1", "type": "scale"}),
    (HuvudmanSpec, "name", {"code": "1490", "kind": "kommun"}),
    (AssignmentSpec, "subject_ref", ASSIGNMENT),
    (AssignmentSpec, "alarm_route", ASSIGNMENT),
])
def test_control_characters_and_surrogates_are_refused_naming_the_field(
        model: type[DeviceSpec | HuvudmanSpec | AssignmentSpec], field: str,
        base: dict[str, object], text: str) -> None:
    with pytest.raises(ValidationError) as caught:
        model.model_validate({**base, field: text})
    assert _field(caught.value) == field
    assert ("must not contain control characters" in str(caught.value)
            or "unable to parse raw data as a unicode string" in str(caught.value))


def test_printable_text_in_any_script_is_accepted() -> None:
    spec = AssignmentSpec.model_validate({**ASSIGNMENT, "subject_ref": "Åsa Öberg – ÿ 東京 🙂"})
    assert spec.subject_ref.startswith("Åsa")


@pytest.mark.parametrize("seconds", [0, -1, 7 * 86400 + 1, 10**20])
def test_a_heartbeat_interval_is_positive_and_at_most_a_week(seconds: int) -> None:
    with pytest.raises(ValidationError) as caught:
        DeviceSpec(id="SCALE-1", type="scale", heartbeat_interval_s=seconds)
    assert _field(caught.value) == "heartbeat_interval_s"
    assert DeviceSpec(id="S", type="scale", heartbeat_interval_s=7 * 86400).heartbeat_interval_s
