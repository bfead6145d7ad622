"""`make bench`: every benchmark, results as JSON under bench/results/.

Slow and load runs live here, never in `make test`. Quote the figures from the JSON files.
"""

from __future__ import annotations

from bench import alarm_latency, ingest_drain


def main() -> None:
    # `make bench ARGS="--readings 200000"` passes its arguments on to the ingest drain.
    ingest_drain.main()
    # Then alarm latency under a steady background load, with its own defaults.
    alarm_latency.main([])


if __name__ == "__main__":
    main()
