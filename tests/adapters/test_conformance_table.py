"""docs/formats/conformance.md is what the adapters do with the corpora today (issue 16)."""

from __future__ import annotations

from tests import conformance_table


def test_the_conformance_table_is_current() -> None:
    assert conformance_table.TABLE.read_text("utf-8") == conformance_table.render(), (
        "the adapters changed what they do with the corpora: run "
        "`python -m tests.conformance_table` and commit docs/formats/conformance.md")
