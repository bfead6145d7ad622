"""Small checks on untrusted text that the standard library gets subtly wrong for our use."""

from __future__ import annotations


def ascii_digits(text: str) -> bool:
    """Only 0-9. `str.isdigit()` also accepts '¹' and other Unicode digits that `int()` refuses
    (found by hypothesis in the PCD-01 adapter)."""
    return text.isascii() and text.isdigit()
