"""`make bench`: every benchmark, results as JSON under bench/results/.

Slow and load runs live here, never in `make test`. Quote the figures from the JSON files.
"""

from __future__ import annotations

from bench import ingest_drain


def main() -> None:
    # `make bench ARGS="--readings 200000"` passes its arguments on to the ingest drain.
    ingest_drain.main()


if __name__ == "__main__":
    main()
