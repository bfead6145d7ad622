"""Rate limits for the listeners: a token bucket per key (a device, a source address), held in
memory and bounded (the least recently seen keys are forgotten first). A refusal says how long
to wait, for the protocol's own "try later" (HTTP 429 and SIP 503 with Retry-After)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

MAX_KEYS = 100_000


class RateLimit:
    """`per_s` requests a second on average, `burst` at once; `per_s <= 0`: no limit."""

    def __init__(self, per_s: float, burst: float, *, max_keys: int = MAX_KEYS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_s = per_s
        self.burst = max(burst, 1.0)
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def take(self, key: str) -> float:
        """0 when a request of `key` may go now (and counts it); else seconds to wait."""
        if self.per_s <= 0:
            return 0.0
        now = self._clock()
        tokens, at = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.per_s)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.per_s
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return wait


def retry_after(wait_s: float) -> str:
    """A Retry-After value: whole seconds, at least one."""
    return str(max(1, int(wait_s + 0.999)))
