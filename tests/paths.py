"""Where the tests find the repository's own files (config/, the conformance corpora)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFORMANCE_ROOT = ROOT / "tests" / "conformance"
