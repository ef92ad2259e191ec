"""Benchmark of the request-body reader every JSON route goes through. Prints
figures; not a test.

    .venv/bin/python bench/bench_body.py [--rounds N]

For typical bodies (a login, an authorisation with its wrapped key password,
a batch signHash of 1,000 hashes, a 10 MiB document) it measures parse +
depth check + the typed field reads of the handler, p50/p99 per body and
MB/s, against plain `json.loads` of the same bytes; then how fast hostile
bodies (70,000-deep nesting, a 5,000-digit integer, a lone surrogate) are
refused; then the peak RSS.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

from cloudsign.errors import ValidationError
from cloudsign.web.body import parse_json
from cloudsign.web.inputs import Fields


def _b64(n: int) -> str:
    return base64.b64encode(os.urandom(n)).decode()


BODIES: dict[str, tuple[bytes, Callable[[Fields], Any]]] = {
    "login": (
        json.dumps({"iin": "900101300017", "otp": "123456"}).encode(),
        lambda b: (b.digits("iin", min_len=12), b.digits("otp", min_len=6)),
    ),
    "authorize": (
        json.dumps(
            {
                "hashes": [_b64(32)],
                "hash_algorithm": "sha256",
                "otp": "123456",
                "face_challenge_id": "00000000-0000-4000-8000-000000000000",
                "password_key": {
                    "transport_key_id": "00000000-0000-4000-8000-000000000000",
                    "device_public_key": _b64(65),
                    "wrapped_key": _b64(40),
                },
            }
        ).encode(),
        lambda b: (
            b.b64_list("hashes", max_items=1000, max_bytes=64),
            b.obj("password_key").b64("wrapped_key", max_bytes=128),
            b.digits("otp", min_len=6),
        ),
    ),
    "signHash x1000": (
        json.dumps(
            {
                "credentialID": "x",
                "SAD": "y" * 43,
                "signAlgo": "1.2.840.10045.4.3.2",
                "hashes": [_b64(32) for _ in range(1000)],
            }
        ).encode(),
        lambda b: b.b64_list("hashes", max_items=1000, max_bytes=64),
    ),
    "document 10 MiB": (
        json.dumps({"SAD": "y" * 43, "format": "pades", "document": _b64(10 << 20)}).encode(),
        lambda b: b.b64("document", max_bytes=16 << 20),
    ),
}

HOSTILE: dict[str, bytes] = {
    "nested 70,000 deep": b"[" * 70_000 + b"]" * 70_000,
    "integer of 5,000 digits": b'{"x": ' + b"7" * 5000 + b"}",
    "lone surrogate": b'{"iin": "\\ud800"}',
    "nested 20 deep": b"[" * 20 + b"]" * 20,
}


def _times(fn: Callable[[], object], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _p(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=2000)
    args = ap.parse_args()
    print(
        f"{'body':<16} {'bytes':>9} {'read p50':>9} {'read p99':>9} {'MB/s':>6} "
        f"{'parse p50':>10} {'json.loads':>11}   (ms; read = parse + check + typed fields)"
    )
    for name, (raw, read) in BODIES.items():
        rounds = max(20, args.rounds // max(1, len(raw) // 20_000))
        ours = _times(lambda raw=raw, read=read: read(Fields.of(parse_json(raw))), rounds)
        parse = _times(lambda raw=raw: parse_json(raw), rounds)
        stdlib = _times(lambda raw=raw: json.loads(raw), rounds)
        p50 = statistics.median(ours)
        print(
            f"{name:<16} {len(raw):>9} {p50 * 1e3:>9.3f} {_p(ours, 0.99) * 1e3:>9.3f} "
            f"{len(raw) / p50 / 1e6:>6.0f} {statistics.median(parse) * 1e3:>10.3f} "
            f"{statistics.median(stdlib) * 1e3:>11.3f}"
        )
    print()
    print(f"{'hostile body':<26} {'refused in p50 ms':>18}")
    for name, raw in HOSTILE.items():

        def refuse(raw: bytes = raw, name: str = name) -> None:
            try:
                parse_json(raw)
            except ValidationError:
                return
            raise AssertionError(f"{name} was accepted")

        print(f"{name:<26} {statistics.median(_times(refuse, 200)) * 1e3:>18.3f}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()
