"""The fault runs of `make faults` (issue 11, point 9): each puts the gateway under steady load
from MQTT and HTTP devices, does something bad to it, and ends with the reconciliation of what
the devices sent against what was stored and delivered: lost = 0, duplicates = 0.

Not in `make test` (they take minutes); FAULT_RECEIVER_DOWN_S (default 300) sets how long the
receiver is away, FAULT_KILLS (default 10) how many SIGKILLs."""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

import pytest

from gateway.store.connector import Store
from tests.faults.bench import OWNER, fault_bench
from tests.support import Keys

pytestmark = [pytest.mark.integration, pytest.mark.faults]

KILLS = int(os.environ.get("FAULT_KILLS", "10"))
RECEIVER_DOWN_S = float(os.environ.get("FAULT_RECEIVER_DOWN_S", "300"))
# Batches that take a moment to fill, so a kill often lands between receipt and commit.
SLOW_BATCHES = {"BATCH_MAX_WAIT_S": "0.2"}


async def test_sigkill_at_random_moments(tmp_path: Path, store: Store, database_url: str,
                                         keys: Keys) -> None:
    rng = random.Random(11)
    async with fault_bench(tmp_path, store, database_url, keys, **SLOW_BATCHES) as bench:
        for _ in range(KILLS):
            await asyncio.sleep(rng.uniform(0.5, 3.0))
            await bench.kill_gateway()
            await asyncio.sleep(rng.uniform(0.0, 1.0))  # devices keep sending meanwhile
            await bench.start_gateway(**SLOW_BATCHES)
        await asyncio.sleep(2)
        result = await bench.settle(f"{KILLS} SIGKILLs")
    assert result.ok, result.line()
    assert result.acknowledged > 500


async def test_sigterm_stops_within_its_time_committing_or_leaving_unacknowledged(
        tmp_path: Path, store: Store, database_url: str, keys: Keys) -> None:
    stop_s = 5.0
    async with fault_bench(tmp_path, store, database_url, keys,
                           SHUTDOWN_TIMEOUT_S=str(stop_s), **SLOW_BATCHES) as bench:
        for _ in range(3):
            await asyncio.sleep(2)
            t0 = time.monotonic()
            code = await asyncio.to_thread(bench.gateway.terminate, stop_s + 10)
            took = time.monotonic() - t0
            assert code == 0, f"a stop with the database up commits all it holds (exit {code})"
            assert took < stop_s + 2, f"the stop took {took:.1f} s"
            await bench.start_gateway(**SLOW_BATCHES)
        await asyncio.sleep(2)
        result = await bench.settle("SIGTERM ×3")
    assert result.ok, result.line()


async def test_a_receiver_away_for_minutes_gets_everything_once_back(
        tmp_path: Path, store: Store, database_url: str, keys: Keys) -> None:
    async with fault_bench(tmp_path, store, database_url, keys, interval_s=0.5) as bench:
        await asyncio.sleep(2)
        await bench.receiver.stop()
        await asyncio.sleep(RECEIVER_DOWN_S)
        before = len(bench.delivered())
        await bench.receiver.start()
        await asyncio.sleep(2)
        result = await bench.settle(f"receiver down {RECEIVER_DOWN_S:g} s")
        assert result.delivered > before
        assert max(bench.receiver.endpoints[OWNER].accepted.values()) >= 1
    assert result.ok, result.line()
