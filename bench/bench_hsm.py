"""HSM hot paths on a fresh SoftHSM2 token in a temporary data dir.

Prints:
- credential creation per second (one-time transport key + device Argon2-free
  wrap + HSM key generation and double encryption + certificate issuance),
  sequential and with 4 concurrent callers;
- p50/p99 of one unwrap-and-sign of a 32-byte hash with the owner key,
  beside the raw python-pkcs11 sign time of a plain session key of the same
  type in the same run (the overhead ratio is the figure);
- p50/p99 of the full unlock (transport unwrap of K_pw, two GCM layers);
- peak RSS.

Run: .venv/bin/python bench/bench_hsm.py [--n 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from pkcs11 import Attribute, KeyType, Mechanism
from pkcs11.util.ec import encode_named_curve_parameters

from cloudsign.ca.authority import CertificateAuthority
from cloudsign.ca.identity import Identity, check_digit
from cloudsign.instance import ca_profile, initialise, prepare_hsm
from cloudsign.settings import load_settings
from device_client.device import Argon2Params, derive_password_key, wrap_for_transport
from hsm_bridge import HsmBridge, KeyAlgorithm, SignatureScheme, TransportMessage, hash_algorithm

SHA256 = hash_algorithm("sha256")
KPW = derive_password_key("bench", Argon2Params(b"s" * 16, 1, 8192, 1))


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def fmt(samples: list[float]) -> str:
    p50, p99 = pct(samples, 50) * 1e3, pct(samples, 99) * 1e3
    return f"p50 {p50:.3f} ms  p99 {p99:.3f} ms  (n={len(samples)})"


async def message(bridge: HsmBridge) -> TransportMessage:
    key_id = str(uuid.uuid4())
    w = wrap_for_transport(KPW, key_id, await bridge.create_transport_key(key_id))
    return TransportMessage(w.transport_key_id, w.device_point, w.wrapped_key)


def identity() -> Identity:
    body = "9001013" + f"{os.getpid() % 10000:04d}"
    digit = check_digit(body) or 0
    return Identity("person", body + str(digit), "Bench", "User", "bench@example.kz")


async def create_credential(bridge: HsmBridge, ca: CertificateAuthority, alg: KeyAlgorithm) -> None:
    created = await bridge.create_owner_key(await message(bridge), alg, str(uuid.uuid4()))
    await ca.issue(identity(), created.public_key_info)


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(env={}, data_dir=Path(tmp))
        await initialise(settings)
        access = prepare_hsm(settings)
        bridge = HsmBridge(access.module, access.token_label, access.pin)
        await bridge.start()
        ca = CertificateAuthority.load(bridge, settings.pki_dir, ca_profile(settings.ca))
        print(f"SoftHSM2 token in {tmp}; {os.cpu_count()} CPUs")

        for alg, count in ((KeyAlgorithm.EC_P256, n), (KeyAlgorithm.RSA_2048, max(10, n // 20))):
            t0 = time.perf_counter()
            for _ in range(count):
                await create_credential(bridge, ca, alg)
            seq = count / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            await asyncio.gather(*[create_credential(bridge, ca, alg) for _ in range(count)])
            conc = count / (time.perf_counter() - t0)
            print(
                f"credential creation {alg.value:9s}: {seq:7.1f}/s sequential, "
                f"{conc:7.1f}/s with {count} concurrent"
            )

        cred = str(uuid.uuid4())
        created = await bridge.create_owner_key(await message(bridge), KeyAlgorithm.EC_P256, cred)
        unlock_times: list[float] = []
        unlocked = None
        for _ in range(n):
            m = await message(bridge)
            t0 = time.perf_counter()
            unlocked = await bridge.unlock_owner_key(m, cred, KeyAlgorithm.EC_P256, created.blob)
            unlock_times.append(time.perf_counter() - t0)
        assert unlocked is not None
        digest = os.urandom(32)
        sign_times: list[float] = []
        for _ in range(n):
            t0 = time.perf_counter()
            await bridge.sign_with_unlocked(unlocked, [digest], SHA256, SignatureScheme.ECDSA)
            sign_times.append(time.perf_counter() - t0)

        # The floor: python-pkcs11 signing with a plain session key, timed
        # inside the PKCS#11 thread (no asyncio hop), same token, same run.
        def raw_sign(session: Any) -> list[float]:
            params = session.create_domain_parameters(
                KeyType.EC,
                {Attribute.EC_PARAMS: encode_named_curve_parameters("1.2.840.10045.3.1.7")},
                local=True,
            )
            _pub, priv = params.generate_keypair(store=False)
            times: list[float] = []
            for _ in range(n):
                t0 = time.perf_counter()
                priv.sign(digest, mechanism=Mechanism.ECDSA)
                times.append(time.perf_counter() - t0)
            priv.destroy()
            return times

        raw = await bridge.run_with_session(raw_sign)
        print(f"unlock (transport unwrap of K_pw + 2 GCM layers): {fmt(unlock_times)}")
        print(f"unwrap-and-sign one 32-byte hash (EC P-256):      {fmt(sign_times)}")
        print(f"raw python-pkcs11 ECDSA sign, plain session key:  {fmt(raw)}")
        print(
            "overhead ratio (unwrap-and-sign p50 / raw sign p50): "
            f"{pct(sign_times, 50) / pct(raw, 50):.1f}x"
        )
        await bridge.close()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {rss:.0f} MiB")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    asyncio.run(main(ap.parse_args().n))
