"""A realistic mix of citizens against real service processes behind nginx.

Two runs in one invocation, each on a fresh PostgreSQL database
(127.0.0.1:5432, dropped after) and a fresh data dir in a tempdir: `cloudsign
serve` (1 process), then `cloudsign serve --workers 2` (2 processes on one
port), each behind Debian's nginx with the shipped `deploy/nginx/proxy.conf`
(as tests/test_load_balancer.py runs it). Per run, before the clock starts
(not counted): two operators (a security officer made with the CLI, a
registration officer set up over the operator API), then `--citizens`
citizens proofed at the desk and enrolled through nginx (consents, TOTP, a
face check, a key and certificate) plus `--decoys` citizens who only ever
mistype their password, and a short warm-up of the read-only routes.

Then `--clients` concurrent clients (default 200, at most 1000) loop for
`--duration` seconds (default 60, at most 600), each drawing an action by
weight (`--mix`, default below) and acting as one citizen of the pool:

| action | requests | weight |
|---|---|---|
| `ocsp` | POST /pki/ocsp for a citizen's certificate, fresh 16-byte nonce (HSM-signed) | 30 |
| `tsa` | POST /tsa, RFC 3161 query for a fresh SHA-256 hash with a nonce | 15 |
| `cabinet` | GET /api/v1/me/documents (the citizen's signed documents) | 30 |
| `login` | POST /sessions/challenge, then POST /sessions (TOTP + wrapped K_pw) | 15 |
| `wrong_login` | the same with a wrong key password (a decoy): 401 expected | 2 |
| `sign` | face challenge + burst, transport key, authorise (SAD), signHash of `--hashes` | 8 |

One-time factors never race: a citizen's login or signature is done by one
client at a time (a busy flag per citizen; the other clients keep using that
citizen's read-only routes, cabinet and OCSP). TOTP is the service's default
30-s step, and the service accepts each step once per account
(cloudsign/accounts/service.py `verify_otp`: the matched step must be newer
than the last accepted one; `totp_valid_window` 1 accepts a code until the
end of the next step). So each citizen logs in at most once per step, at a
random moment of it of their own (logins spread over the step instead of all
arriving as it starts), and a signature only starts for a citizen whose
current step is unused, so it never waits for a code (a wait would be
reported, and not counted as service time). The pool thus bounds the
TOTP-bearing requests (logins, wrong passwords, authorisations) to about
`--citizens` / 30 per second: 40 allow 1.3/s. A draw of `login`,
`wrong_login` or `sign` that finds no such citizen, or `sign` when
`--signing-slots` signatures are already under way (face checks cost about 1
s of CPU each on this machine's 2 cores, so they stay a minority), is
re-drawn and counted as deferred: the table shows the mix that was really
made. Decoys stop at 3 wrong passwords in a row and then log in correctly
once (counted as `login`), below the 5-in-a-row lock.

Service settings that differ from the defaults, each with its reason (the
defaults are not changed; the environment of the bench's servers sets them):
- `liveness_actions = blink`, `liveness_action_count = 1`: a still photo can
  be made to blink, not to turn its head (tests/face_images.py).
- `max_failed_per_address`, `max_transport_keys_per_hour` (per address for
  logins, per account otherwise: one setting) and
  `max_enrolments_per_address_per_hour` raised to 100,000: every request of
  the bench comes from the one loopback address (nginx's, with
  `trusted_proxies = 127.0.0.1` as a real balancer is configured, and the
  client behind it is 127.0.0.1 too) while it stands for many citizens, each
  on an address of their own. There is no setting that exempts loopback. The
  per-account limits stay at their defaults (`max_face_challenges_per_hour`
  30: the bench keeps each citizen below it; 5 failures in a row).
Everything else is the service's default: Argon2id 64 MiB / 3 passes, 2
face workers per process, JSON access log (to a file). The device derives
K_pw once per citizen at enrolment, as device_client does (after its
one-time key); afterwards each login and authorisation sends K_pw wrapped
for a fresh one-time HSM key after a pause as long as that Argon2id took
here (`--device-delay`), so the phone's work is in the timing without being
recomputed on the shared cores.

Each run first starts one `cloudsign serve` on its fresh data dir until it
is ready, then stops it, and only then starts the measured servers: what a
first start makes lazily, check-then-create in every process (the OCSP and
TSA keys and certificates, the audit log's keys), two workers starting
together on a fresh data dir can both make (seen here: two `ocsp-responder`
keys, then every worker exits at start-up with MultipleObjectsReturned and
the supervisor restarts them in a loop). Set-up is retried where the service
refuses it (a credential creation, from a new face check): each retry is
printed and none is counted in the run. In the timed part nothing is
retried: every refusal other than the wrong passwords is an error. Seen here
with 2 processes: a one-time HSM key made by one process is now and then
unknown to the other (`factor_failed`), because SoftHSM2 2.6.1's token
generation counter lets a process's own write hide another process's new
object until that one writes again.

Reported per run: requests answered within the window and requests/s; per
route count, share, p50/p99 and errors (any unexpected status, timeout or
exception, or a 2xx whose content is wrong: every response's status and
media type are checked and every JSON answer parsed, one in 16 OCSP and TSA
answers is parsed in full, every signature verified; the first distinct
messages are printed with their request id and the service's log lines for
that id), expected refusals (the wrong passwords); the face check, the
signature flow and login as whole steps; TOTP waits and deferred draws; peak
RSS of the service processes (from /proc); CPU seconds of the service,
PostgreSQL, nginx, the load generator and everything else on the machine;
the service's own view from each process's /metrics (mean handler time per
route, HSM calls and queue wait, face pool time, rate-limit refusals), the
run database's connections (pg_stat_activity, each second) and every refused
factor it recorded (`auth.failure` and `lock` audit events, with their
reason: the wrong passwords are the decoys'). At the end, the 2-process /
1-process ratios of throughput and per route.

The load generator, nginx and PostgreSQL run on the same 2 cores as the
service (and other benchmarks may run on this machine at the same time: the
"other" CPU line says how much), so the figures are a lower bound and the
ratio is what a second process adds on the same cores, not a second machine.

Bounded and loopback only: every listener is on 127.0.0.1, PostgreSQL must be
on loopback, duration and clients are capped; every process started (nginx,
the servers, their face workers and anvil) is stopped and the database
dropped in `finally` blocks, on Ctrl-C too.

Run: .venv/bin/python bench/bench_citizens.py [--duration 60] [--clients 200]
     [--citizens 40] [--decoys 2] [--mix ocsp=30,tsa=15,...] [--keep-logs DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import math
import os
import random
import re
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pyotp
from asn1crypto import ocsp, pem, tsp, x509
from cryptography import x509 as cx509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_status import free_port, ocsp_request

from cloudsign.settings import Settings, load_settings
from device_client.client import ApiError, CloudsignClient, TotpDevice, frames_form
from device_client.device import derive_password_key, wrap_for_transport
from tests.face_images import live_burst
from tests.helpers import person
from tests.staff import OperatorClient

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("CLOUDSIGN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SETPRIV = shutil.which("setpriv")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}

MAX_DURATION = 600.0
MAX_CLIENTS = 1000
MAX_CITIZENS = 200
MAX_DECOYS = 20
MAX_SIGNING_SLOTS = 16
ENROL_ATTEMPTS = 4
DEFAULT_TOTP_PERIOD = Settings.totp_period_seconds

PASSWORD = "correct horse battery"
WRONG_PASSWORD = "correct horse battery staple"
ENROL_FACE, CHECK_FACE = "obama_1.jpg", "obama_2.jpg"
DEFAULT_MIX = "ocsp=30,tsa=15,cabinet=30,login=15,wrong_login=2,sign=8"
ACTIONS = ("ocsp", "tsa", "cabinet", "login", "wrong_login", "sign")
#: Wrong passwords in a row a decoy makes before logging in correctly once
#: (the service locks at `max_failed_attempts`, 5, in a row).
WRONG_IN_A_ROW = 3
#: One response in this many is parsed and checked in full (OCSP: good, our
#: nonce; TSA: granted); every response's status and media type are checked.
CHECK_EVERY = 16
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

#: The bench's service settings beyond the per-run ports and database; why
#: each one: the module docstring.
BENCH_SETTINGS = {
    "CLOUDSIGN_LIVENESS_ACTIONS": "blink",
    "CLOUDSIGN_LIVENESS_ACTION_COUNT": "1",
    # One loopback address stands for every citizen (no setting exempts
    # trusted loopback): the per-address limits would refuse this load.
    "CLOUDSIGN_MAX_FAILED_PER_ADDRESS": "100000",
    "CLOUDSIGN_MAX_TRANSPORT_KEYS_PER_HOUR": "100000",
    "CLOUDSIGN_MAX_ENROLMENTS_PER_ADDRESS_PER_HOUR": "100000",
    # nginx in front, as deployed (deploy/nginx/proxy.conf asks for it).
    "CLOUDSIGN_TRUSTED_PROXIES": "127.0.0.1",
}


# -- measurements ---------------------------------------------------------------------


@dataclass
class Route:
    latencies: list[float] = field(default_factory=list)
    in_window: int = 0
    errors: int = 0
    refused: int = 0


@dataclass
class ErrorSample:
    route: str
    message: str
    request_id: str | None


class Recorder:
    """Every request's latency, outcome and whether it ended in the window."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.steps: dict[str, list[float]] = {}
        self.messages: Counter[str] = Counter()
        self.samples: list[ErrorSample] = []
        self.window_end = math.inf
        self.deferred: Counter[str] = Counter()
        self.totp_waits: list[float] = []
        self.decoy_resets = 0
        self.unfinished = 0

    def route(self, name: str) -> Route:
        r = self.routes.get(name)
        if r is None:
            r = self.routes[name] = Route()
        return r

    def done(self, name: str, took: float, *, refused: bool = False) -> None:
        r = self.route(name)
        r.latencies.append(took)
        if time.monotonic() <= self.window_end:
            r.in_window += 1
            r.refused += refused

    def error(self, name: str, took: float, message: str, request_id: str | None) -> None:
        r = self.route(name)
        r.latencies.append(took)
        r.errors += 1
        if time.monotonic() <= self.window_end:
            r.in_window += 1
        key = f"{name}: {message}"
        if key not in self.messages and len(self.samples) < 8:
            self.samples.append(ErrorSample(name, message, request_id))
        self.messages[key] += 1

    def bad(self, name: str, message: str) -> None:
        """A request answered 2xx whose content was wrong (already counted)."""
        self.route(name).errors += 1
        key = f"{name}: {message}"
        if key not in self.messages and len(self.samples) < 8:
            self.samples.append(ErrorSample(name, message, None))
        self.messages[key] += 1

    def step(self, name: str, took: float) -> None:
        self.steps.setdefault(name, []).append(took)


class Failed(Exception):
    """A request of a flow failed (already recorded): the flow stops."""


def pct(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p))] * 1000


async def call(
    rec: Recorder,
    http: aiohttp.ClientSession,
    route: str,
    method: str,
    url: str,
    expect: int,
    *,
    token: str | None = None,
    json_body: Any = None,
    data: Any = None,
    content_type: str | None = None,
    refusal: bool = False,
    want: str = "application/json",
) -> Any:
    """One request, timed and recorded. `expect` is the one status that is
    right (with `refusal`, a refusal the service must give: counted apart).
    Returns the parsed JSON (or the raw body); raises Failed on anything else."""
    headers: dict[str, str] = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if content_type is not None:
        headers["Content-Type"] = content_type
    began = time.perf_counter()
    request_id: str | None = None
    try:
        async with http.request(method, url, json=json_body, data=data, headers=headers) as r:
            raw = await r.read()
            status, media = r.status, r.content_type
            request_id = r.headers.get("X-Request-Id")
    except TimeoutError:
        rec.error(route, time.perf_counter() - began, "timeout (client)", None)
        raise Failed from None
    except aiohttp.ClientError as e:
        rec.error(route, time.perf_counter() - began, f"{type(e).__name__}: {e}", None)
        raise Failed from None
    took = time.perf_counter() - began
    if status == expect:
        if media != want and not (refusal and media == "application/problem+json"):
            rec.error(route, took, f"HTTP {status} as {media}, not {want}", request_id)
            raise Failed
        if want != "application/json":
            rec.done(route, took)
            return raw
        try:
            body = json.loads(raw)
        except ValueError:
            rec.error(route, took, f"HTTP {status}, not JSON: {raw[:80]!r}", request_id)
            raise Failed from None
        rec.done(route, took, refused=refusal)
        return body
    detail = raw[:160].decode(errors="replace")
    if media in ("application/problem+json", "application/json"):
        with contextlib.suppress(ValueError, AttributeError):
            problem = json.loads(raw)
            detail = f"{problem.get('code') or problem.get('title')}: {problem.get('detail')}"
    rec.error(route, took, f"HTTP {status} {detail}", request_id)
    raise Failed


# -- request bodies made without asn1crypto in the loop -------------------------------


def template(make: Callable[[bytes], bytes], size: int) -> tuple[bytes, int]:
    """DER made once around a random marker of `size` bytes, and where the
    marker sits: a fresh value is spliced in per request (checked once
    against a fresh encoding)."""
    marker = secrets.token_bytes(size)
    der = make(marker)
    at = der.find(marker)
    assert at >= 0 and der.find(marker, at + 1) < 0
    fresh = secrets.token_bytes(size)
    assert splice(der, at, fresh) == make(fresh)
    return der, at


def splice(der: bytes, at: int, value: bytes) -> bytes:
    return der[:at] + value + der[at + len(value) :]


def tsa_query(marker: bytes) -> bytes:
    """An RFC 3161 query: the first 32 bytes are the SHA-256 imprint, the
    last 8 the nonce (kept in [2^56, 2^63) so its DER is always 8 bytes)."""
    digest, nonce = marker[:32], marker[32:]
    return bytes(
        tsp.TimeStampReq(
            {
                "version": "v1",
                "message_imprint": {
                    "hash_algorithm": {"algorithm": "sha256"},
                    "hashed_message": digest,
                },
                "nonce": int.from_bytes(nonce, "big"),
                "cert_req": True,
            }
        ).dump()
    )


def tsa_values() -> bytes:
    nonce = (1 << 56) + secrets.randbelow((1 << 63) - (1 << 56))
    return secrets.token_bytes(32) + nonce.to_bytes(8, "big")


def tsa_template() -> tuple[bytes, int, int]:
    """The query made once; where the imprint and the nonce sit."""
    first, second = tsa_values(), tsa_values()
    der = tsa_query(first)
    at_hash, at_nonce = der.find(first[:32]), der.find(first[32:])
    assert at_hash >= 0 and at_nonce >= 0
    made = splice(splice(der, at_hash, second[:32]), at_nonce, second[32:])
    assert made == tsa_query(second)
    return der, at_hash, at_nonce


# -- citizens -------------------------------------------------------------------------


@dataclass
class Citizen:
    iin: str
    owner_id: str
    totp: pyotp.TOTP = field(repr=False)
    token: str = field(repr=False)
    credential_id: str
    public_key: ec.EllipticCurvePublicKey = field(repr=False)
    kpw: bytes = field(repr=False)
    wrong_kpw: bytes = field(repr=False)
    ocsp_der: bytes = field(repr=False)
    ocsp_at: int
    #: When in each TOTP step this citizen logs in (seconds after its start).
    phase: float = 0.0
    last_step: int = -1
    busy: bool = False
    face_challenges: int = 0
    wrong_in_a_row: int = 0

    def step(self) -> int:
        return int(time.time() // self.totp.interval)

    def login_due(self) -> bool:
        """This step is unused and its moment for a login has come."""
        now = time.time()
        step = int(now // self.totp.interval)
        return step > self.last_step and now - step * self.totp.interval >= self.phase

    def take_code(self) -> str | None:
        """This step's code if the step is still unused by this citizen."""
        now = time.time()
        step = int(now // self.totp.interval)
        if step <= self.last_step:
            return None
        self.last_step = step
        return str(self.totp.at(now))

    async def next_code(self) -> tuple[str, float]:
        """A code of an unused step, polling for the next step if need be;
        returns it and how long it waited."""
        began = time.perf_counter()
        while True:
            code = self.take_code()
            if code is not None:
                return code, time.perf_counter() - began
            await asyncio.sleep((self.last_step + 1) * self.totp.interval - time.time() + 0.02)


def wrapped(kpw: bytes, key: dict[str, Any]) -> dict[str, str]:
    return wrap_for_transport(
        kpw, key["transport_key_id"], base64.b64decode(key["public_key"])
    ).to_json()


class Bursts:
    """Live-looking bursts made ahead (each has fresh sensor noise: the
    service refuses a frame it has seen before); more are made on a thread
    if the run needs them."""

    def __init__(self) -> None:
        self.ready: list[list[bytes]] = []
        self.made_late = 0

    def make(self, n: int) -> None:
        self.ready.extend(live_burst(CHECK_FACE, ["blink"]) for _ in range(n))

    async def take(self, actions: list[str]) -> list[bytes]:
        if actions == ["blink"] and self.ready:
            return self.ready.pop()
        self.made_late += 1
        return await asyncio.to_thread(live_burst, CHECK_FACE, actions)


async def face_check(
    rec: Recorder, http: aiohttp.ClientSession, base: str, c: Citizen, bursts: Bursts
) -> str:
    began = time.perf_counter()
    ch = await call(
        rec,
        http,
        "POST /me/face-challenges",
        "POST",
        f"{base}/api/v1/me/face-challenges",
        201,
        token=c.token,
    )
    c.face_challenges += 1
    frames = await bursts.take(list(ch["actions"]))
    verdict = await call(
        rec,
        http,
        "POST /me/face-challenges/{id}/burst",
        "POST",
        f"{base}/api/v1/me/face-challenges/{ch['challenge_id']}/burst",
        200,
        token=c.token,
        data=frames_form(frames),
    )
    if not verdict.get("passed"):
        rec.bad("POST /me/face-challenges/{id}/burst", f"not passed: {verdict.get('reason')}")
        raise Failed
    rec.step("face check (challenge + burst)", time.perf_counter() - began)
    return str(ch["challenge_id"])


async def sign_in_officer(
    http: aiohttp.ClientSession, url: str, env: dict[str, str], data_dir: Path
) -> OperatorClient:
    """A security officer as `cloudsign operator create-security-officer`
    makes one on the server, signed in over the operator listener."""
    password = "officer " + secrets.token_urlsafe(12)
    out = await run_cli(
        data_dir,
        env,
        "operator",
        "create-security-officer",
        "--username",
        "security.bench",
        "--display-name",
        "Bench Security",
        "--password-stdin",
        stdin=password + "\n",
    )
    uri = next(line for line in out.splitlines() if line.startswith("otpauth://"))
    totp = pyotp.parse_uri(uri)
    assert isinstance(totp, pyotp.TOTP)
    return await OperatorClient(url, http, "security.bench", password, TotpDevice(totp)).sign_in()


async def run_cli(data_dir: Path, env: dict[str, str], *args: str, stdin: str = "") -> str:
    """A `cloudsign` command on the run's data dir and database; its output."""
    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "cloudsign.cli", "--data-dir", str(data_dir), *args],
        cwd=REPO,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(stdin.encode()), timeout=300)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise SystemExit(f"cloudsign {' '.join(args)} failed:\n{out.decode(errors='replace')}")
    return out.decode()


async def registration_officer(security: OperatorClient) -> OperatorClient:
    """Created by the security officer, set up with the setup code (on the
    real clock, unlike tests/staff.py's stepping one)."""
    name = f"registration.{secrets.token_hex(3)}"
    created = await security.request(
        "POST",
        "/operator/api/v1/operators",
        {"username": name, "display_name": "Bench Desk", "roles": ["registration_officer"]},
    )
    password = "operator " + secrets.token_urlsafe(12)
    code = created["setup_code"]
    new = OperatorClient(security.url, security.http, name, password, security.totp)
    body = await new.request(
        "POST", "/operator/api/v1/setup", {"setup_code": code, "password": password}
    )
    totp = pyotp.parse_uri(body["provisioning_uri"])
    assert isinstance(totp, pyotp.TOTP)
    new.totp = TotpDevice(totp)
    await new.request(
        "POST",
        "/operator/api/v1/setup/confirm",
        {"setup_code": code, "otp": await new.totp.fresh_code()},
    )
    desk = new
    return await desk.sign_in()  # the device waits for the next step


async def enrol(
    http: aiohttp.ClientSession,
    base: str,
    desk: OperatorClient,
    issuer: x509.Certificate,
    bursts: Bursts,
    retries: Counter[str],
    *,
    decoy: bool,
) -> tuple[Citizen, float]:
    """Proofed at the desk, then on the device through nginx: activation,
    consents, TOTP, a face check, the key and certificate. Returns the
    citizen and how long the device's Argon2id took here."""
    identity = person()
    proofing = await desk.proof(identity, ENROL_FACE)
    client = CloudsignClient(base, http)
    await client.activate(proofing["activation_code"])
    await client.accept_consents()
    uri = (await client.request("POST", "/api/v1/me/totp"))["provisioning_uri"]
    totp = pyotp.parse_uri(uri)
    assert isinstance(totp, pyotp.TOTP)
    rec = Recorder()  # enrolment is not measured
    assert client.access_token is not None
    assert client.owner_id is not None
    c = Citizen(
        iin=identity["iin"],
        owner_id=client.owner_id,
        totp=totp,
        token=client.access_token,
        credential_id="",
        public_key=ec.generate_private_key(ec.SECP256R1()).public_key(),
        kpw=b"",
        wrong_kpw=b"",
        ocsp_der=b"",
        ocsp_at=0,
        # Late enough in the step is fine: the code stays valid to the end of the next.
        phase=random.uniform(0, 0.8 * totp.interval),
    )
    code, _ = await c.next_code()
    await client.request("POST", "/api/v1/me/totp/confirm", {"otp": code})
    # As the device does it (device_client.wrap_password): the parameters,
    # a one-time HSM key, then Argon2id (measured: the pause modelled later).
    params = await client.key_params()
    for attempt in range(1, ENROL_ATTEMPTS + 1):
        try:
            face = await face_check(rec, http, base, c, bursts)
        except Failed:
            raise SystemExit(f"enrolment face check failed: {list(rec.messages)}") from None
        key = await client.request(
            "POST", "/api/v1/me/transport-keys", {"purpose": "credential.create"}
        )
        began = time.perf_counter()
        c.kpw = await asyncio.to_thread(derive_password_key, PASSWORD, params)
        kdf_seconds = time.perf_counter() - began
        code, _ = await c.next_code()
        try:
            cred = await client.request(
                "POST",
                "/api/v1/me/credentials",
                {
                    "algorithm": "ec-p256",
                    "password_key": wrapped(c.kpw, key),
                    "face_challenge_id": face,
                    "otp": code,
                },
            )
            break
        except ApiError as e:
            # Setup, not the measurement: a refusal here is retried from the
            # face check (and reported), so the run can start.
            retries[f"POST /me/credentials: {e}"] += 1
            if attempt == ENROL_ATTEMPTS:
                raise SystemExit(f"enrolment failed {attempt} times: {e}") from None
    if decoy:
        c.wrong_kpw = await asyncio.to_thread(derive_password_key, WRONG_PASSWORD, params)
    c.credential_id = cred["credential_id"]
    pem_bytes = cred["certificate"].encode()
    public = cx509.load_pem_x509_certificate(pem_bytes).public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    c.public_key = public
    _, _, der = pem.unarmor(pem_bytes)
    cert = x509.Certificate.load(der)
    c.ocsp_der, c.ocsp_at = template(lambda n: ocsp_request(cert, issuer, n), 16)
    return c, kdf_seconds


# -- the load -------------------------------------------------------------------------


class Load:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        base: str,
        citizens: list[Citizen],
        decoys: list[Citizen],
        bursts: Bursts,
        args: argparse.Namespace,
        face_budget: int,
        device_delay: float,
    ) -> None:
        self.http, self.base, self.args = http, base, args
        self.device_delay = device_delay
        self.citizens, self.decoys, self.bursts = citizens, decoys, bursts
        self.face_budget = face_budget
        self.rec = Recorder()
        self.signing = 0
        self.checks: Counter[str] = Counter()
        self.tsa_der, self.tsa_hash_at, self.tsa_nonce_at = tsa_template()
        self.actions: dict[str, Callable[[], Awaitable[bool]]] = {
            "ocsp": self.ocsp,
            "tsa": self.tsa,
            "cabinet": self.cabinet,
            "login": lambda: self.login(wrong=False),
            "wrong_login": lambda: self.login(wrong=True),
            "sign": self.sign,
        }

    def sampled(self, route: str) -> bool:
        self.checks[route] += 1
        return self.checks[route] % CHECK_EVERY == 1

    async def ocsp(self) -> bool:
        c = random.choice(self.citizens)
        nonce = secrets.token_bytes(16)
        route = "POST /pki/ocsp (nonce)"
        body = await call(
            self.rec,
            self.http,
            route,
            "POST",
            f"{self.base}/pki/ocsp",
            200,
            data=splice(c.ocsp_der, c.ocsp_at, nonce),
            content_type="application/ocsp-request",
            want="application/ocsp-response",
        )
        if self.sampled(route):
            resp = ocsp.OCSPResponse.load(body)
            basic = resp.basic_ocsp_response["tbs_response_data"]
            status = basic["responses"][0]["cert_status"].name
            nonces = [
                e["extn_value"].native
                for e in basic["response_extensions"]
                if e["extn_id"].native == "nonce"
            ]
            if status != "good" or nonces != [nonce]:
                self.rec.bad(route, f"answer {status}, nonce {nonces!r}")
        return True

    async def tsa(self) -> bool:
        values = tsa_values()
        der = splice(self.tsa_der, self.tsa_hash_at, values[:32])
        der = splice(der, self.tsa_nonce_at, values[32:])
        route = "POST /tsa"
        body = await call(
            self.rec,
            self.http,
            route,
            "POST",
            f"{self.base}/tsa",
            200,
            data=der,
            content_type="application/timestamp-query",
            want="application/timestamp-reply",
        )
        if self.sampled(route):
            status = tsp.TimeStampResp.load(body)["status"]["status"].native
            if status != "granted":
                self.rec.bad(route, f"time-stamp {status}")
        return True

    async def cabinet(self) -> bool:
        c = random.choice(self.citizens)
        docs = await call(
            self.rec,
            self.http,
            "GET /me/documents (cabinet)",
            "GET",
            f"{self.base}/api/v1/me/documents",
            200,
            token=c.token,
        )
        assert isinstance(docs, list)
        return True

    async def login(self, *, wrong: bool) -> bool:
        pool = self.decoys if wrong else self.citizens
        free = [c for c in pool if not c.busy and c.login_due()]
        if not free:
            return False
        c = random.choice(free)
        if wrong and c.wrong_in_a_row >= WRONG_IN_A_ROW:
            wrong = False  # a decoy logs in correctly once: its counts start again
            self.rec.decoy_resets += 1
        c.busy = True
        began = time.perf_counter()
        try:
            challenge = await call(
                self.rec,
                self.http,
                "POST /sessions/challenge",
                "POST",
                f"{self.base}/api/v1/sessions/challenge",
                201,
                json_body={"iin": c.iin},
            )
            await asyncio.sleep(self.device_delay)  # the phone's Argon2id, not service time
            code = c.take_code()
            assert code is not None  # the step was unused and the citizen is ours
            body = {
                "iin": c.iin,
                "otp": code,
                "password_key": wrapped(c.wrong_kpw if wrong else c.kpw, challenge),
            }
            url = f"{self.base}/api/v1/sessions"
            if wrong:
                refused = await call(
                    self.rec,
                    self.http,
                    "POST /sessions (wrong password)",
                    "POST",
                    url,
                    401,
                    json_body=body,
                    refusal=True,
                )
                c.wrong_in_a_row += 1
                if refused.get("code") != "unauthorized":
                    self.rec.bad("POST /sessions (wrong password)", f"refused as {refused}")
            else:
                session = await call(
                    self.rec,
                    self.http,
                    "POST /sessions (login)",
                    "POST",
                    url,
                    200,
                    json_body=body,
                )
                c.token = session["access_token"]
                c.wrong_in_a_row = 0
                took = time.perf_counter() - began - self.device_delay
                self.rec.step("login (challenge + session, device pause excluded)", took)
        except Failed:
            pass
        finally:
            c.busy = False
        return True

    async def sign(self) -> bool:
        if self.signing >= self.args.signing_slots:
            return False
        # A citizen whose current step is unused: its code is free by the
        # authorisation (no one else uses this citizen meanwhile, and a new
        # step is unused too), so a slot never waits a step out.
        free = [
            c
            for c in self.citizens
            if not c.busy and c.face_challenges < self.face_budget and c.last_step < c.step()
        ]
        if not free:
            return False
        c = random.choice(free)
        c.busy = True
        self.signing += 1
        began = time.perf_counter()
        try:
            face = await face_check(self.rec, self.http, self.base, c, self.bursts)
            key = await call(
                self.rec,
                self.http,
                "POST /me/transport-keys",
                "POST",
                f"{self.base}/api/v1/me/transport-keys",
                201,
                token=c.token,
                json_body={"purpose": "authorize"},
            )
            await asyncio.sleep(self.device_delay)  # the phone's Argon2id, not service time
            code, waited = await c.next_code()  # the authenticator's wait: not service time
            if waited > 0.001:
                self.rec.totp_waits.append(waited)
            waited += self.device_delay
            digests = [
                hashlib.sha256(secrets.token_bytes(32)).digest() for _ in range(self.args.hashes)
            ]
            hashes_b64 = [base64.b64encode(d).decode() for d in digests]
            cred = f"{self.base}/api/v1/me/credentials/{c.credential_id}"
            auth = await call(
                self.rec,
                self.http,
                "POST /me/credentials/{id}/authorize",
                "POST",
                f"{cred}/authorize",
                200,
                token=c.token,
                json_body={
                    "hashes": hashes_b64,
                    "hash_algorithm": "sha256",
                    "password_key": wrapped(c.kpw, key),
                    "otp": code,
                    "face_challenge_id": face,
                },
            )
            signed = await call(
                self.rec,
                self.http,
                "POST /me/credentials/{id}/sign-hashes",
                "POST",
                f"{cred}/sign-hashes",
                200,
                token=c.token,
                json_body={"SAD": auth["SAD"], "hashes": hashes_b64, "hash_algorithm": "sha256"},
            )
            route = "POST /me/credentials/{id}/sign-hashes"
            signatures = [base64.b64decode(s) for s in signed["signatures"]]
            if len(signatures) != len(digests):
                self.rec.bad(route, f"{len(signatures)} signatures for {len(digests)} hashes")
                raise Failed
            try:
                for digest, signature in zip(digests, signatures, strict=True):
                    c.public_key.verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
            except InvalidSignature:
                self.rec.bad(route, "a signature does not verify with the certificate's key")
                raise Failed from None
            self.rec.step(
                "signature (face check .. signHash, waits excluded)",
                time.perf_counter() - began - waited,
            )
        except Failed:
            pass
        finally:
            c.busy = False
            self.signing -= 1
        return True

    async def client(self, names: list[str], weights: list[float], deadline: float) -> None:
        rng = random.Random(secrets.randbits(64))
        idle = 0
        while time.monotonic() < deadline:
            action = rng.choices(names, weights)[0]
            try:
                made = await self.actions[action]()
            except Failed:
                made = True  # recorded where it failed
            except Exception as e:  # a bug of the bench or an answer it cannot read
                self.rec.bad(f"({action})", f"{type(e).__name__}: {e}")
                made = True
            if made:
                idle = 0
                continue
            self.rec.deferred[action] += 1
            idle += 1
            await asyncio.sleep(0.05 if idle > 20 else 0)

    async def run(
        self, seconds: float, mix: dict[str, float], clients: int, grace: float
    ) -> tuple[float, float]:
        """`clients` loops for `seconds`; returns (start, end) of the window
        (monotonic). Actions under way at the end are waited for `grace`."""
        names = [a for a in ACTIONS if mix.get(a, 0) > 0]
        weights = [mix[a] for a in names]
        start = time.monotonic()
        deadline = start + seconds
        self.rec.window_end = deadline
        tasks = [asyncio.create_task(self.client(names, weights, deadline)) for _ in range(clients)]
        try:
            _done, pending = await asyncio.wait(tasks, timeout=seconds + grace)
        finally:
            for t in tasks:
                t.cancel()
        self.rec.unfinished = len(pending)
        await asyncio.gather(*tasks, return_exceptions=True)
        return start, deadline


# -- processes ------------------------------------------------------------------------


def proc_table() -> dict[int, tuple[int, str, int]]:
    """pid -> (parent, command, start time) of every process."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        rest = stat.rsplit(")", 1)[1].split()
        out[int(entry.name)] = (int(rest[1]), comm, int(rest[19]))
    return out


def descendants(root: int, table: dict[int, tuple[int, str, int]]) -> list[int]:
    kids: dict[int, list[int]] = {}
    for pid, (ppid, _c, _s) in table.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def rss(pid: int) -> int:
    try:
        return int((Path("/proc") / str(pid) / "statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def cpu_seconds(pid: int) -> float:
    try:
        rest = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def machine_busy() -> float:
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(fields[:8])
    return (total - fields[3] - fields[4]) / CLK_TCK


def cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class Watch:
    """Peak RSS of the service's processes, sampled from /proc, and every
    process seen under the server (so none outlives the run)."""

    def __init__(self, server: subprocess.Popen[bytes]) -> None:
        self.server = server
        self.seen: dict[int, tuple[int, str]] = {}  # pid -> (start time, kind)
        self.peak_total = 0
        self.peak_largest = 0
        self.peak_anvil = 0
        self.count = 0

    def kind(self, pid: int) -> str:
        line = cmdline(pid)
        if "anvil" in line:
            return "anvil"
        if pid == self.server.pid or "--worker" in line:
            return "service"
        return "helper"

    def sample(self) -> None:
        table = proc_table()
        total = largest = anvil = 0
        pids = descendants(self.server.pid, table)
        for pid in pids:
            if pid not in self.seen or self.seen[pid][0] != table[pid][2]:
                self.seen[pid] = (table[pid][2], self.kind(pid))
            size, kind = rss(pid), self.seen[pid][1]
            if kind == "anvil":
                anvil += size
                continue
            total += size
            if kind == "service":
                largest = max(largest, size)
        self.peak_total = max(self.peak_total, total)
        self.peak_largest = max(self.peak_largest, largest)
        self.peak_anvil = max(self.peak_anvil, anvil)
        self.count = max(self.count, len(pids))

    async def loop(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(0.5)

    async def reap(self) -> None:
        """After the server stopped: its children get 5 s to follow, then
        each one still there (the same pid and start time) is killed."""
        for _ in range(50):
            if not self.leftovers():
                return
            await asyncio.sleep(0.1)
        for pid in self.leftovers():
            with contextlib.suppress(ProcessLookupError):
                line = cmdline(pid)[:120]
                os.kill(pid, signal.SIGKILL)
                print(f"  (killed leftover process {pid} of the server: {line})")

    def leftovers(self) -> list[int]:
        table = proc_table()
        return [p for p, (start, _k) in self.seen.items() if p in table and table[p][2] == start]


@dataclass
class CpuSnap:
    at: float
    machine: float
    service: dict[int, float]
    postgres: dict[int, float]
    nginx: dict[int, float]
    me: float


def cpu_snap(server: int, nginx: int) -> CpuSnap:
    table = proc_table()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return CpuSnap(
        time.monotonic(),
        machine_busy(),
        {p: cpu_seconds(p) for p in descendants(server, table)},
        {p: cpu_seconds(p) for p, (_pp, comm, _s) in table.items() if comm.startswith("postgres")},
        {p: cpu_seconds(p) for p in descendants(nginx, table)},
        usage.ru_utime + usage.ru_stime,
    )


def cpu_delta(a: dict[int, float], b: dict[int, float]) -> float:
    return sum(v - a.get(p, 0.0) for p, v in b.items())


def stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGINT, wait: float = 60) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


def spawn(cmd: list[str], log: Path | None = None, **kw: Any) -> subprocess.Popen[bytes]:
    """A child that dies with this process even if it is killed (SIGTERM
    from the kernel: `setpriv --pdeathsig`, as cloudsign/workers.py does);
    its output to `log` (or nowhere)."""
    prefix = [SETPRIV, "--pdeathsig", "TERM", "--"] if SETPRIV else []
    with open(log or os.devnull, "ab") as out:
        return subprocess.Popen(
            [*prefix, *cmd], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kw
        )


def nginx_conf(tmp: Path, listen: int, upstream: int) -> Path:
    """The bench's nginx: its own paths, the shipped proxy settings
    (deploy/nginx/proxy.conf, unchanged), one upstream (the service port,
    shared by every process of `serve --workers`)."""
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"""{user}worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format bench '$status $request_method $uri $request_time $upstream_response_time '
                     '$upstream_status $request_id';
    access_log {tmp}/nginx-access.log bench buffer=64k;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream cloudsign {{
        server 127.0.0.1:{upstream} max_fails=0;
        # Idle connections kept per nginx worker (the test keeps 8): with
        # 200 clients most requests then reuse one, and there are enough of
        # them for SO_REUSEPORT to spread over the service processes.
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{listen};
        location / {{
            proxy_pass http://cloudsign;
            include {REPO}/deploy/nginx/proxy.conf;
        }}
    }}
}}
"""
    )
    return conf


async def wait_for(what: str, check: Callable[[], Awaitable[bool]], within: float = 180) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


async def answers(url: str) -> bool:
    # A new connection each time: SO_REUSEPORT hands each to some process.
    try:
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s,
            s.get(url, timeout=aiohttp.ClientTimeout(total=5)) as r,
        ):
            return r.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


def service_processes(server: subprocess.Popen[bytes]) -> int:
    """Service processes up with their face workers: the server itself (one
    process), or the children of `serve --workers` that have children."""
    table = proc_table()
    kids = [p for p, (ppid, _c, _s) in table.items() if ppid == server.pid]
    if not any(ppid in kids for ppid, _c, _s in table.values()):
        return 1 if kids else 0  # the server's own face workers (or none yet)
    return len({ppid for ppid, _c, _s in table.values() if ppid in kids})


# -- the service's own account -------------------------------------------------------

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> Series:
    out: Series = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, labels = head.partition("{")
        out[(name, frozenset(LABEL.findall(labels)))] = float(value)
    return out


async def scrape(port: int, workers: int) -> list[Series]:
    """`/metrics` of every service process (each has its own registry): new
    connections until as many distinct processes answered, told apart by
    `cloudsign_background_leader` (one process leads)."""
    seen: dict[float, Series] = {}
    for _ in range(40 * workers):
        try:
            async with (
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s,
                s.get(
                    f"http://127.0.0.1:{port}/metrics", timeout=aiohttp.ClientTimeout(total=30)
                ) as r,
            ):
                series = parse_metrics(await r.text())
        except (aiohttp.ClientError, TimeoutError):
            continue
        seen.setdefault(series.get(("cloudsign_background_leader", frozenset()), -1.0), series)
        if len(seen) >= workers:
            break
    return list(seen.values())


def delta(before: list[Series], after: list[Series], name: str) -> dict[str, float]:
    """Summed over processes: the growth of `name` by its first label value."""
    out: dict[str, float] = {}
    for series, sign in [(s, -1.0) for s in before] + [(s, 1.0) for s in after]:
        for (n, labels), value in series.items():
            if n == name:
                key = ",".join(v for _k, v in sorted(labels) if _k != "method") or "-"
                out[key] = out.get(key, 0.0) + sign * value
    return out


def service_view(before: list[Series], after: list[Series]) -> list[str]:
    """Mean server-side times in the window, from the service's histograms."""
    lines = []
    total = delta(before, after, "cloudsign_http_request_duration_seconds_sum")
    count = delta(before, after, "cloudsign_http_request_duration_seconds_count")
    routes = sorted(count, key=lambda k: -count[k])
    lines.append(
        "server time per request, mean (aiohttp handler, no queueing before it): "
        + ", ".join(f"{k} {total[k] / count[k] * 1000:.0f} ms" for k in routes[:9] if count[k] >= 1)
    )
    wait = delta(before, after, "cloudsign_hsm_queue_wait_seconds_sum")
    calls = delta(before, after, "cloudsign_hsm_queue_wait_seconds_count")
    ran = delta(before, after, "cloudsign_hsm_operation_duration_seconds_sum")
    ops = delta(before, after, "cloudsign_hsm_operation_duration_seconds_count")
    n = sum(calls.values())
    if n:
        top = sorted((k for k in ran if ops.get(k, 0) >= 1), key=lambda k: -ran[k])[:5]
        lines.append(
            f"HSM: {n:.0f} PKCS#11 calls, queue wait mean {sum(wait.values()) / n * 1000:.0f} "
            f"ms, run {sum(ran.values()):.1f} s in all; most time: "
            + ", ".join(f"{k} {ran[k]:.1f} s / {ops.get(k, 0):.0f}" for k in top)
        )
    face = delta(before, after, "cloudsign_face_check_duration_seconds_sum")
    faces = delta(before, after, "cloudsign_face_check_duration_seconds_count")
    if sum(faces.values()):
        lines.append(
            "face pool (queue included), mean: "
            + ", ".join(
                f"{k} {face[k] / faces[k] * 1000:.0f} ms x {faces[k]:.0f}"
                for k in faces
                if faces[k] >= 1
            )
        )
    refused = delta(before, after, "cloudsign_rate_limit_refusals_total")
    if any(v for v in refused.values()):
        lines.append(
            "rate-limit refusals: " + ", ".join(f"{k} {v:.0f}" for k, v in refused.items())
        )
    return lines


async def failures(
    database_url: str, after_seq: int, decoys: set[str]
) -> Counter[tuple[str, str, str]]:
    """The service's own record of every refused factor since `after_seq`
    (`auth.failure` and `lock` audit events): (who, factor, reason)."""
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT owner_id, event_type, data::text AS data FROM events "
            "WHERE seq > $1 AND event_type IN ('auth.failure', 'lock')",
            after_seq,
        )
    finally:
        await conn.close()
    out: Counter[tuple[str, str, str]] = Counter()
    for row in rows:
        data = json.loads(row["data"])
        owner = row["owner_id"]
        # A login's count is per IIN, before any account is known: no owner.
        who = "decoy" if owner in decoys else "(IIN)" if owner is None else "citizen"
        if row["event_type"] == "lock":
            out[(who, "LOCK", str(data)[:120])] += 1
        else:
            out[(who, str(data.get("factor")), str(data.get("reason")))] += 1
    return out


class PgWatch:
    """The run database's connections, sampled each second in the window:
    how many the service holds and in what state (pg_stat_activity)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.samples: list[Counter[str]] = []

    async def loop(self) -> None:
        conn = await asyncpg.connect(PG_ADMIN, timeout=10)
        try:
            while True:
                rows = await conn.fetch(
                    "SELECT coalesce(state, '?') AS state, count(*) AS n FROM pg_stat_activity "
                    "WHERE datname = $1 AND pid <> pg_backend_pid() GROUP BY 1",
                    self.name,
                )
                self.samples.append(Counter({r["state"]: int(r["n"]) for r in rows}))
                await asyncio.sleep(1.0)
        finally:
            await conn.close()

    def summary(self) -> str:
        if not self.samples:
            return "PostgreSQL: no sample"
        totals = [sum(c.values()) for c in self.samples]
        active = [c.get("active", 0) for c in self.samples]
        waiting = [c.get("idle in transaction", 0) for c in self.samples]
        n = len(self.samples)
        return (
            f"PostgreSQL connections of the service ({n} samples): at most {max(totals)} "
            f"(the pool is 10 + 10 overflow per process), running a statement "
            f"{sum(active) / n:.1f} on average (at most {max(active)}), idle in a transaction "
            f"(waiting for the service's next statement) {sum(waiting) / n:.1f} (at most "
            f"{max(waiting)})"
        )


async def last_seq(database_url: str) -> int:
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        return int(await conn.fetchval("SELECT coalesce(max(seq), 0) FROM events"))
    finally:
        await conn.close()


# -- one run --------------------------------------------------------------------------


@dataclass
class Result:
    workers: int
    seconds: float
    rec: Recorder
    watch: Watch
    cpu: dict[str, float]
    late_bursts: int
    citizens: int
    decoys: int
    log_lines: list[str]
    log_counts: Counter[str]
    nginx_errors: list[str]
    loadavg: tuple[float, float, float]
    service: list[str]
    refusals: Counter[tuple[str, str, str]]

    @property
    def total(self) -> int:
        return sum(r.in_window for r in self.rec.routes.values())

    @property
    def rate(self) -> float:
        return self.total / self.seconds


TRACEBACK_NOISE = ("Traceback", "During handling", "The above exception", "StopIteration")


def read_logs(
    tmp: Path, samples: Iterable[ErrorSample]
) -> tuple[list[str], Counter[str], list[str]]:
    """The service log's level counts; its WARNING and ERROR lines (but the
    development-mode notice) and each traceback's exception, with how often;
    the lines of the sampled errors' requests; nginx's error lines."""
    counts: Counter[str] = Counter()
    notable: Counter[str] = Counter()
    lines: list[str] = []
    ids = {s.request_id for s in samples if s.request_id}
    log = tmp / "service.log"
    if log.exists():
        for line in log.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                counts["(not JSON: tracebacks)"] += 1
                if line and not line[0].isspace() and not line.startswith(TRACEBACK_NOISE):
                    notable[f"exception: {line[:240]}"] += 1
                continue
            level = str(entry.get("level", "?"))
            counts[level] += 1
            message = str(entry.get("message"))
            if level in ("WARNING", "ERROR", "CRITICAL") and "development mode" not in message:
                # Pids and ids vary: the message's shape is what repeats.
                shape = re.sub(r"\d+", "N", message)[:200]
                notable[f"{level} {entry.get('logger')}: {shape}"] += 1
                if entry.get("exception"):
                    notable[f"  exception: {str(entry['exception'])[:200]}"] += 1
            if entry.get("request_id") in ids and len(lines) < 12:
                text = f"{level} {entry.get('logger')} [{entry.get('request_id')}] "
                lines.append((text + message)[:300])
    lines = [f"{n:4d} x {k}" for k, n in notable.most_common(12)] + lines
    nginx = []
    err = tmp / "nginx-error.log"
    if err.exists():
        nginx = [
            line[:300]
            for line in err.read_text(errors="replace").splitlines()
            if "[error]" in line or "[crit]" in line or "[alert]" in line
        ]
    return lines, counts, nginx


async def one_run(workers: int, args: argparse.Namespace, mix: dict[str, float]) -> Result:
    name = f"cloudsign_bench_citizens_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(PG_ADMIN, timeout=10)
    tmp = Path(tempfile.mkdtemp(prefix="cloudsign-bench-citizens-"))
    server: subprocess.Popen[bytes] | None = None
    nginx: subprocess.Popen[bytes] | None = None
    watch: Watch | None = None
    watcher: asyncio.Task[None] | None = None
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        database_url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
        port, operator_port, listen = free_port(), free_port(), free_port()
        base = f"http://127.0.0.1:{listen}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDSIGN_", "SOFTHSM2_"))}
        env.update(BENCH_SETTINGS)
        env.update(
            CLOUDSIGN_DEVELOPMENT="true",
            CLOUDSIGN_HOST="127.0.0.1",
            CLOUDSIGN_PORT=str(port),
            CLOUDSIGN_OPERATOR_HOST="127.0.0.1",
            CLOUDSIGN_OPERATOR_PORT=str(operator_port),
            CLOUDSIGN_PUBLIC_URL=base,
            CLOUDSIGN_DATABASE_URL=database_url,
            CLOUDSIGN_CHAIN_ANVIL_PORT="0",
        )
        if args.totp_period != DEFAULT_TOTP_PERIOD:
            env["CLOUDSIGN_TOTP_PERIOD_SECONDS"] = str(args.totp_period)
        settings = load_settings(env=env, data_dir=tmp / "data")
        # Below the per-account hourly limit, with the enrolment's check and one to spare.
        face_budget = settings.max_face_challenges_per_hour - 2
        bursts = Bursts()
        # The enrolments' face checks, then at most a signature per 1.5 s per slot.
        enrolling = args.citizens + args.decoys
        needed = enrolling + 8 + int(args.signing_slots * args.duration / 1.5)
        making = asyncio.create_task(asyncio.to_thread(bursts.make, needed))

        await run_cli(tmp / "data", env, "init")
        cli = [sys.executable, "-m", "cloudsign.cli", "--data-dir", str(tmp / "data")]
        ready = f"http://127.0.0.1:{port}/readyz"
        # What a first start makes lazily, check-then-create in every process
        # (the OCSP and TSA keys and certificates, the audit log's keys), two
        # workers starting together on a fresh data dir can both make: seen
        # here, two `ocsp-responder` (or `cloudsign-audit-log`) keys, then
        # every worker exits at start-up with MultipleObjectsReturned and the
        # supervisor restarts them in a loop. So one process starts once first.
        first = spawn([*cli, "serve"], log=tmp / "first-start.log", cwd=REPO, env=env)
        first_watch = Watch(first)
        try:
            await wait_for("the first start", lambda: _ready(first, 1, ready))
            first_watch.sample()
        finally:
            stop(first)
            await first_watch.reap()
        extra = ["--workers", str(workers)] if workers > 1 else []
        server = spawn([*cli, "serve", *extra], log=tmp / "service.log", cwd=REPO, env=env)
        watch = Watch(server)
        watcher = asyncio.create_task(watch.loop())
        await wait_for("every service process", lambda: _ready(server, workers, ready))
        conf = nginx_conf(tmp, listen, port)
        nginx = spawn([NGINX, "-c", str(conf), "-p", str(tmp), "-g", "daemon off;"])
        await wait_for("nginx", lambda: answers(f"{base}/healthz"))

        timeout = aiohttp.ClientTimeout(total=args.timeout)
        connector = aiohttp.TCPConnector(limit=args.clients + 16)
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()
        ) as http:
            began = time.monotonic()
            operator_url = f"http://127.0.0.1:{operator_port}"
            security = await sign_in_officer(http, operator_url, env, tmp / "data")
            desk = await registration_officer(security)
            async with http.get(f"{base}/pki/ca/issuing.cer") as r:
                issuer = x509.Certificate.load(await r.read())
            gate = asyncio.Semaphore(8)
            retries: Counter[str] = Counter()

            async def one(decoy: bool) -> tuple[Citizen, float]:
                async with gate:
                    return await enrol(http, base, desk, issuer, bursts, retries, decoy=decoy)

            people = await asyncio.gather(
                *(one(False) for _ in range(args.citizens)),
                *(one(True) for _ in range(args.decoys)),
            )
            citizens = [c for c, _t in people[: args.citizens]]
            decoys = [c for c, _t in people[args.citizens :]]
            kdf = sorted(t for _c, t in people)[len(people) // 2]
            device_delay = kdf if args.device_delay is None else args.device_delay
            await making
            print(
                f"  set-up: {len(citizens)} citizens + {len(decoys)} decoys enrolled through "
                f"nginx in {time.monotonic() - began:.0f} s; {len(bursts.ready)} bursts ready; "
                f"the device's Argon2id took {kdf * 1000:.0f} ms here (median): modelled as a "
                f"{device_delay * 1000:.0f} ms pause before each wrapped K_pw is sent",
                flush=True,
            )
            for message, n in retries.items():
                print(f"  set-up retried {n} x (not counted in the run): {message}", flush=True)
            load = Load(http, base, citizens, decoys, bursts, args, face_budget, device_delay)
            warm = {"ocsp": 1.0, "tsa": 1.0, "cabinet": 1.0}
            await load.run(args.warmup, warm, args.clients, grace=args.timeout)
            load.rec = Recorder()
            load.bursts.made_late = 0
            seq = await last_seq(database_url)
            metrics_before = await scrape(port, workers)
            pg = PgWatch(name)
            pg_task = asyncio.create_task(pg.loop())
            before = cpu_snap(server.pid, nginx.pid)
            try:
                start, end = await load.run(
                    args.duration, mix, args.clients, grace=args.timeout + 30
                )
            finally:
                pg_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pg_task
            after = cpu_snap(server.pid, nginx.pid)
            metrics_after = await scrape(port, workers)
            refusals = await failures(database_url, seq, {d.owner_id for d in decoys})
        span = after.at - before.at
        cpu = {
            "service": cpu_delta(before.service, after.service),
            "postgres": cpu_delta(before.postgres, after.postgres),
            "nginx": cpu_delta(before.nginx, after.nginx),
            "load generator": after.me - before.me,
        }
        cpu["other"] = max(0.0, after.machine - before.machine - sum(cpu.values()))
        cpu["span"] = span
        stop(nginx, signal.SIGQUIT)
        lines, counts, nginx_errors = read_logs(tmp, load.rec.samples)
        return Result(
            workers,
            end - start,
            load.rec,
            watch,
            cpu,
            load.bursts.made_late,
            len(citizens),
            len(decoys),
            lines,
            counts,
            nginx_errors,
            os.getloadavg(),
            [*service_view(metrics_before, metrics_after), pg.summary()],
            refusals,
        )
    finally:
        if watcher is not None:
            watcher.cancel()
        stop(nginx, signal.SIGQUIT, wait=30)
        stop(server)
        if watch is not None:
            await watch.reap()
        if args.keep_logs:
            keep = Path(args.keep_logs) / f"{workers}-process"
            keep.mkdir(parents=True, exist_ok=True)
            for f in ("first-start.log", "service.log", "nginx-error.log", "nginx-access.log"):
                if (tmp / f).exists():
                    shutil.copy(tmp / f, keep / f)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
            shutil.rmtree(tmp, ignore_errors=True)


async def _ready(server: subprocess.Popen[bytes], workers: int, url: str) -> bool:
    """Every service process has its face workers, and the port answered
    `/readyz` 10 times per process in a row on fresh connections."""
    if server.poll() is not None:
        raise SystemExit(f"cloudsign serve exited with {server.returncode}")
    if service_processes(server) < workers:
        return False
    for _ in range(10 * workers):
        if not await answers(url):
            return False
    return True


# -- the report -----------------------------------------------------------------------


def mib(n: float) -> str:
    return f"{n / (1 << 20):.0f} MiB"


def report(r: Result, args: argparse.Namespace) -> None:
    rec = r.rec
    procs = "1 process" if r.workers == 1 else f"{r.workers} processes (serve --workers 2)"
    print(
        f"\n== {procs} behind nginx, PostgreSQL: {args.clients} clients, {r.seconds:.0f} s, "
        f"{r.citizens} citizens + {r.decoys} decoys =="
    )
    head = f"{'route':44} {'count':>7} {'share':>6} {'/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
    print(head + f"{'errors':>6} {'refused':>7}")
    total = r.total
    errors = 0
    for name, route in sorted(rec.routes.items(), key=lambda kv: -kv[1].in_window):
        errors += route.errors
        print(
            f"{name:44} {route.in_window:7d} {route.in_window / max(total, 1):6.1%} "
            f"{route.in_window / r.seconds:8.1f} {pct(route.latencies, 0.5):8.1f} "
            f"{pct(route.latencies, 0.99):8.1f} {route.errors:6d} {route.refused:7d}"
        )
    refused = sum(route.refused for route in rec.routes.values())
    print(f"{'total':44} {total:7d} {'':6} {r.rate:8.1f} {'':8} {'':8} {errors:6d} {refused:7d}")
    tail = sum(len(route.latencies) for route in rec.routes.values()) - total
    print(
        f"  (count, /s, refused: answered within the window; p50/p99 and errors also count "
        f"the {tail} requests of actions under way at its end; actions still unfinished "
        f"{args.timeout + 30:.0f} s later: {rec.unfinished})"
    )
    for name, values in rec.steps.items():
        print(
            f"  step {name:54} n {len(values):5d}  p50 {pct(values, 0.5):7.1f} ms  "
            f"p99 {pct(values, 0.99):7.1f} ms"
        )
    waits = rec.totp_waits
    print(
        f"  TOTP: {len(waits)} signatures waited for their citizen's next step "
        f"({sum(waits):.1f} s in all, excluded from the timings); deferred draws (no citizen "
        f"with an unused step, or all {args.signing_slots} signing slots busy): "
        + (", ".join(f"{k} {v}" for k, v in sorted(rec.deferred.items())) or "none")
        + f"; decoy resets (a correct login after {WRONG_IN_A_ROW} wrong): {rec.decoy_resets}"
    )
    if r.late_bursts:
        print(f"  ({r.late_bursts} bursts made during the run, on a thread)")
    w = r.watch
    print(
        f"  peak RSS: service processes {mib(w.peak_total)} in all (the service "
        f"process{'es' if r.workers > 1 else ''} and their face workers; "
        f"{w.count} processes with anvil), largest service process {mib(w.peak_largest)}, "
        f"anvil {mib(w.peak_anvil)}"
    )
    c = r.cpu
    print(
        f"  CPU from the window's start to its last action's end ({c['span']:.0f} s, "
        f"{os.cpu_count()} cores = "
        f"{c['span'] * (os.cpu_count() or 1):.0f} core-s): service {c['service']:.0f}, "
        f"PostgreSQL {c['postgres']:.0f}, nginx {c['nginx']:.0f}, load generator "
        f"{c['load generator']:.0f}, other work on the machine {c['other']:.0f} core-s; "
        f"load average after {r.loadavg[0]:.1f}"
    )
    if rec.messages:
        print("  errors, first distinct messages (count):")
        for key, n in list(rec.messages.items())[:8]:
            print(f"    {n:5d} x {key}")
        ids = [s for s in rec.samples if s.request_id]
        if ids:
            print("    request ids: " + ", ".join(f"{s.route} {s.request_id}" for s in ids[:5]))
    for line in r.service:
        print(f"  {line}")
    if r.refusals:
        print(
            "  refused factors the service recorded in the window (auth.failure / lock "
            "events; (IIN): a login, counted per IIN before any account is known):"
        )
        for (who, factor, reason), n in sorted(r.refusals.items(), key=lambda kv: -kv[1]):
            print(f"    {n:5d} x {who:7} {factor:9} {reason}")
    levels = ", ".join(f"{k} {v}" for k, v in sorted(r.log_counts.items()))
    print(f"  service log lines by level: {levels or 'none'}")
    for line in r.log_lines:
        print(f"    {line}")
    if r.nginx_errors:
        print(f"  nginx error log: {len(r.nginx_errors)} lines, first:")
        for line in r.nginx_errors[:5]:
            print(f"    {line}")


def parse_mix(text: str) -> dict[str, float]:
    mix: dict[str, float] = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        key = key.strip()
        if key not in ACTIONS:
            raise argparse.ArgumentTypeError(f"unknown action {key!r} (one of {ACTIONS})")
        mix[key] = float(value)
        if mix[key] < 0:
            raise argparse.ArgumentTypeError(f"negative weight for {key}")
    if not any(mix.get(a, 0) > 0 for a in ("ocsp", "tsa", "cabinet")):
        raise argparse.ArgumentTypeError("the mix needs a read-only action (ocsp, tsa, cabinet)")
    return mix


def bounded(low: float, high: float, kind: type = int) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low}..{high}")
        return value

    return parse


async def main(args: argparse.Namespace) -> None:
    task = asyncio.current_task()
    assert task is not None
    # SIGTERM as Ctrl-C: the finally blocks stop every process and drop the database.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    host = urlsplit(PG_ADMIN).hostname
    if host not in LOOPBACK:
        raise SystemExit(f"PostgreSQL must be on loopback, not {host!r} (CLOUDSIGN_TEST_PG)")
    mix = parse_mix(args.mix)
    print(
        f"bench_citizens: {args.clients} clients x {args.duration:.0f} s per run, mix "
        + ", ".join(f"{k}={v:g}" for k, v in mix.items())
        + f"; {args.signing_slots} signing slots, {args.hashes} hashes per signature, "
        f"TOTP step {args.totp_period} s; {os.cpu_count()} CPUs shared by the service, "
        "PostgreSQL, nginx and this load generator (and any other work on the machine)",
        flush=True,
    )
    results = []
    for workers in args.runs:
        print(f"\nrun: {workers} process{'es' if workers > 1 else ''} ...", flush=True)
        results.append(await one_run(workers, args, mix))
        report(results[-1], args)
    if len(results) == 2:
        one, two = results
        print(f"\n== {two.workers} processes / {one.workers} ==")
        ratio = two.rate / one.rate
        print(f"  throughput: {two.rate:.1f} / {one.rate:.1f} requests/s = {ratio:.2f}x")
        for name in sorted(one.rec.routes, key=lambda n: -one.rec.routes[n].in_window):
            a, b = one.rec.routes[name], two.rec.routes.get(name)
            if b is None or not a.in_window:
                continue
            ra, rb = a.in_window / one.seconds, b.in_window / two.seconds
            print(
                f"  {name:44} {rb:8.1f} / {ra:8.1f} /s = {rb / ra:4.2f}x   "
                f"p99 {pct(b.latencies, 0.99):7.1f} / {pct(a.latencies, 0.99):7.1f} ms"
            )
    errors = sum(r.errors for res in results for r in res.rec.routes.values())
    print(f"\nerrors in all runs: {errors}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--duration", type=bounded(1, MAX_DURATION, float), default=60.0)
    ap.add_argument("--clients", type=bounded(1, MAX_CLIENTS), default=200)
    ap.add_argument("--citizens", type=bounded(2, MAX_CITIZENS), default=40)
    ap.add_argument("--decoys", type=bounded(0, MAX_DECOYS), default=2)
    ap.add_argument("--mix", default=DEFAULT_MIX, help=f"action=weight,... (default {DEFAULT_MIX})")
    ap.add_argument(
        "--signing-slots",
        type=bounded(1, MAX_SIGNING_SLOTS),
        default=2,
        help="signatures (with their face check) under way at once",
    )
    ap.add_argument("--hashes", type=bounded(1, 100), default=3, help="hashes per signature")
    ap.add_argument(
        "--totp-period",
        type=bounded(2, 120),
        default=DEFAULT_TOTP_PERIOD,
        help="TOTP step, seconds (the service's default; shorter: more logins per "
        "citizen, and codes that expire sooner in flight)",
    )
    ap.add_argument(
        "--device-delay",
        type=bounded(0, 5, float),
        default=None,
        help="seconds the device spends on Argon2id before sending a wrapped K_pw "
        "(default: as long as it took here at enrolment; 0: an instant device)",
    )
    ap.add_argument("--warmup", type=bounded(0, 30, float), default=3.0)
    ap.add_argument("--timeout", type=bounded(5, 120, float), default=60.0, help="per request")
    ap.add_argument(
        "--runs",
        type=lambda t: [int(v) for v in t.split(",")],
        default=[1, 2],
        help="processes per run (default 1,2)",
    )
    ap.add_argument("--keep-logs", help="copy the service and nginx logs of each run here")
    a = ap.parse_args()
    if not set(a.runs) <= {1, 2}:
        ap.error("--runs takes 1 and/or 2")
    if a.decoys == 0 and parse_mix(a.mix).get("wrong_login", 0) > 0:
        ap.error("wrong_login needs --decoys")
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        asyncio.run(main(a))
