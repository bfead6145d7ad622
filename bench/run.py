"""`make bench`: every benchmark, results as JSON under bench/results/.

Slow and load runs live here, never in `make test`. Quote the figures from the JSON files.
"""

from __future__ import annotations

from bench import alarm_latency, ingest_drain


def main() -> None:
    # `make bench ARGS="--readings 200000"` passes its arguments on to the ingest drain.
    ingest_drain.main()
    # Then alarm latency under a steady background load, with its own defaults: alarms on the
    # alarm channel, first read by the one gateway process (the simple deployment), then by a
    # process of its own (the recommended one, docs/operations.md).
    alarm_latency.main([])
    alarm_latency.main(["--alarm-process", "--out", "alarm_latency_alarm_process.json"])
    # And SCAIP units' alarms over SIP (UDP) to the alarm instance's SIP listener.
    alarm_latency.main(["--alarm-process", "--channel", "sip",
                        "--out", "alarm_latency_sip.json"])


if __name__ == "__main__":
    main()
