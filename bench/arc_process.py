"""A simulated alarm centre in a process of its own, for the alarm latency benchmark.

In the benchmark's own process it would share one interpreter with the load publisher and the
webhook receiver, and the time an alarm waits there for the GIL would be counted against the
gateway. Here it has an interpreter to itself. `time.monotonic()` is CLOCK_MONOTONIC, the same
clock in every process of the machine, so its arrival times compare with the publisher's.

Prints `port <udp port>` when listening; on SIGTERM prints one JSON line per SCAIP request
(`ref`, `mty`, `at`) and exits.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

from simulator.arc import ScaipArc


async def _main() -> None:
    arc = ScaipArc(tcp=False)
    await arc.start()
    print(f"port {arc.udp_port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await arc.stop()
    for r in arc.received:
        sys.stdout.write(json.dumps({"ref": r.ref, "mty": r.mty, "at": r.at}) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(_main())
