"""Long-lived tasks that must not die silently: a loop that ends with an exception is logged
(its error's class: a message could quote a value), counted (`gateway_task_failures_total`)
and started again after a backoff, for as long as it is wanted. A loop that returns is done."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from gateway.observability import metrics
from gateway.observability.logs import get as get_logger

log = get_logger("tasks")
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
# Ran this long without failing: the next failure starts the backoff afresh.
HEALTHY_AFTER_S = 60.0


def keep_running(name: str, loop: Callable[[], Coroutine[Any, Any, None]]) -> asyncio.Task[None]:
    """Run `loop()` as the task `name`, and again after each failure, until cancelled."""
    return asyncio.create_task(_keep(name, loop), name=name)


async def _keep(name: str, loop: Callable[[], Coroutine[Any, Any, None]]) -> None:
    delay = BACKOFF_FIRST_S
    while True:
        started = asyncio.get_running_loop().time()
        try:
            await loop()
            return
        except asyncio.CancelledError:
            raise
        except Exception as err:  # the point: nothing ends this task but cancellation
            metrics.TASK_FAILURES.labels(name).inc()
            if asyncio.get_running_loop().time() - started > HEALTHY_AFTER_S:
                delay = BACKOFF_FIRST_S
            log.error("task_failed_restarting", task=name, error=type(err).__name__,
                      restart_in_s=delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, BACKOFF_MAX_S)
