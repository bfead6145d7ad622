"""msgspec decode errors as (field, reason) without the offending value.

msgspec's messages look like ``Expected `float`, got `str` - at `$.location.coords` ``. The path
becomes the field, the rest the reason; anything quoted is removed, since a value may be personal
data (a position, a name).
"""

from __future__ import annotations

import re

import msgspec

from adapters.errors import AdapterError

# What decoding untrusted JSON with msgspec can raise: its own errors, invalid UTF-8 inside a
# string (UnicodeDecodeError, not a DecodeError), and absurd nesting.
DECODE_ERRORS = (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError)

_AT = re.compile(r"^(?P<reason>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_MISSING = re.compile(r"^Object missing required field `([A-Za-z0-9_]{1,40})`$")


def explain(err: Exception, prefix: str = "") -> AdapterError:
    """An AdapterError naming `prefix` + msgspec's path, with a value-free reason."""
    if not isinstance(err, msgspec.ValidationError):
        return AdapterError(prefix or "$", "malformed JSON")
    match = _AT.match(str(err))
    reason = match.group("reason") if match else "invalid"
    path = (match.group("path") or "") if match else ""
    missing = _MISSING.match(reason)
    if missing is not None:
        # A field name is format, not data: name the missing field itself.
        path = f"{path}.{missing.group(1)}"
        reason = "required field missing"
    reason = _QUOTED.sub("", reason).replace("`", "")
    reason = re.sub(r"\s+", " ", reason).strip() or "invalid"
    field = f"{prefix}{path}".lstrip(".") or "$"
    return AdapterError(field, reason)
