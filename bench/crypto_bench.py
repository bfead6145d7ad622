"""Micro-benchmark of gateway.crypto: µs per seal with a cached data key and per new data key.

Run: `.venv/bin/python bench/crypto_bench.py [--payload 150] [--cached 20000] [--new 300]`.
Plain Python, single thread; numbers are best-of-repeats means, so they show the floor a busy
machine adds to, not what a loaded ingest process sees.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable

from gateway.crypto import KeySuite, Opener, Pseudonymizer, Sealer, generate_keypair
from gateway.crypto.envelope import WrappedKey


def best_mean_us(fn: Callable[[int], None], n: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(n)
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e6


def bench_suite(suite: KeySuite, payload: bytes, n_cached: int, n_new: int,
                repeats: int) -> dict[str, float]:
    private, public = generate_keypair("1480", suite)
    pseudonyms = Pseudonymizer(b"b" * 32)
    event_ids = [uuid.uuid4() for _ in range(1024)]

    sealer = Sealer({"1480": public}, pseudonyms, max_key_age_s=None)
    first = sealer.seal(payload, event_id=event_ids[0], huvudman="1480",
                        subject_ref="subject-1", epoch=1, kind="weight")
    assert first.new_wrapped_key is not None
    sealer.confirm([first.new_wrapped_key])

    def cached(n: int) -> None:
        seal = sealer.seal
        for i in range(n):
            seal(payload, event_id=event_ids[i & 1023], huvudman="1480",
                 subject_ref="subject-1", epoch=1, kind="weight")

    counter = [0]

    def new_key(n: int) -> None:
        fresh = Sealer({"1480": public}, pseudonyms, max_key_age_s=None)
        seal = fresh.seal
        base = counter[0]
        counter[0] += n
        for i in range(n):
            seal(payload, event_id=event_ids[i & 1023], huvudman="1480",
                 subject_ref=f"subject-{base + i}", epoch=1, kind="weight")

    # Opening on the node, for comparison.
    opener = Opener("1480", [private])
    sealed = sealer.seal(payload, event_id=event_ids[1], huvudman="1480",
                         subject_ref="subject-1", epoch=1, kind="weight")
    opener.add_wrapped_key(first.new_wrapped_key)

    def open_cached(n: int) -> None:
        op = opener.open
        env = sealed.envelope
        eid = event_ids[1]
        for _ in range(n):
            op(env, event_id=eid, kind="weight")

    wrapped_keys: list[WrappedKey] = []
    for i in range(n_new):
        s = sealer.seal(payload, event_id=event_ids[0], huvudman="1480",
                        subject_ref=f"unwrap-{i}", epoch=1, kind="weight")
        assert s.new_wrapped_key is not None
        wrapped_keys.append(s.new_wrapped_key)

    def unwrap(n: int) -> None:
        o = Opener("1480", [private])
        for w in wrapped_keys[:n]:
            o.add_wrapped_key(w)

    return {
        "seal, cached data key": best_mean_us(cached, n_cached, repeats),
        "seal, new data key (HPKE wrap)": best_mean_us(new_key, n_new, repeats),
        "open, cached data key": best_mean_us(open_cached, n_cached, repeats),
        "unwrap a data key (HPKE open)": best_mean_us(unwrap, n_new, repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--payload", type=int, default=150, help="plaintext bytes")
    parser.add_argument("--cached", type=int, default=20_000, help="seals per cached run")
    parser.add_argument("--new", type=int, default=300, help="seals per new-key run")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    payload = b"x" * args.payload
    print(f"payload {args.payload} B, best of {args.repeats} runs, µs per operation")
    for suite in (KeySuite.MLKEM768_X25519, KeySuite.X25519):
        print(f"\n{suite.value}")
        for name, us in bench_suite(suite, payload, args.cached, args.new, args.repeats).items():
            print(f"  {name:<34} {us:8.2f} µs")


if __name__ == "__main__":
    main()
