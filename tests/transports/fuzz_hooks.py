"""schemathesis hooks for tests/transports/test_admin_api_fuzz.py (SCHEMATHESIS_HOOKS).

Huvudman codes are configuration, not schema: a generated code almost never exists, so nearly
every generated assignment would be refused and the fuzz would never reach a device that is
assigned, returned or being reconditioned. Three in four generated codes are therefore mapped
to codes the test database has; the fourth stays as generated (mostly unknown, refused)."""

from __future__ import annotations

import re
from typing import Any

import schemathesis

KNOWN = ("14", "1480", "1490", "1481")
CODE = re.compile(r"^[0-9]{2}([0-9]{2})?$")


@schemathesis.hook
def map_body(context: Any, body: Any) -> Any:
    if isinstance(body, dict) and isinstance(body.get("assignments"), list):
        for a in body["assignments"]:
            code = a.get("huvudman") if isinstance(a, dict) else None
            if isinstance(code, str) and CODE.fullmatch(code) and int(code) % 4:
                a["huvudman"] = KNOWN[int(code) % len(KNOWN)]
    return body
