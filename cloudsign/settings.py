"""Service settings: typed, validated at start-up, unknown keys rejected.

Sources, later ones winning: built-in defaults, a TOML file (`--config`, or
`CLOUDSIGN_CONFIG`), then environment variables `CLOUDSIGN_<KEY>` (upper-case
key names). Secrets (the HSM PIN) are `Secret` values whose repr is masked;
`describe()` prints the effective settings for operators without them.

The file and the environment stay flat (one key each, as the README lists
them); the code reads them by section: `settings.accounts`,
`settings.signing`, `settings.audit`... are frozen dataclasses holding only
what that feature needs, already converted (durations as `timedelta`), so no
service is handed the whole configuration.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from cloudsign.errors import ConfigurationError
from hsm_bridge import KeyAlgorithm, Secret

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """`10.0.0.1, 192.168.0.0/16, ::1` -> networks; ValueError on a bad entry."""
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()
    )


ENV_PREFIX: Final = "CLOUDSIGN_"
CA_KEY_ALGORITHMS: Final = tuple(
    a.value
    for a in (
        KeyAlgorithm.EC_P256,
        KeyAlgorithm.EC_P384,
        KeyAlgorithm.RSA_2048,
        KeyAlgorithm.RSA_3072,
    )
)
#: Environment variables with the prefix that are not settings keys.
ENV_NON_KEYS: Final = frozenset({"CLOUDSIGN_CONFIG"})


# -- sections: what each feature reads --------------------------------------------


@dataclass(frozen=True)
class HttpSettings:
    public_url: str
    max_body_bytes: int
    max_upload_bytes: int


@dataclass(frozen=True)
class AccountSettings:
    access_token_ttl: timedelta
    totp_issuer: str
    totp_period_seconds: int
    totp_valid_window: int
    argon2_time_cost: int
    argon2_memory_kib: int
    argon2_parallelism: int


@dataclass(frozen=True)
class CredentialSettings:
    transport_key_ttl: timedelta
    require_face: bool


@dataclass(frozen=True)
class FaceSettings:
    workers: int
    match_threshold: float
    liveness_vocabulary: tuple[str, ...]
    liveness_action_count: int
    challenge_ttl: timedelta
    pass_ttl: timedelta


@dataclass(frozen=True)
class SigningSettings:
    sad_ttl: timedelta
    max_signatures_per_sad: int


@dataclass(frozen=True)
class OperatorSettings:
    host: str
    port: int
    public_url: str
    session_ttl: timedelta
    approval_ttl: timedelta
    setup_ttl: timedelta
    bulk_revocation_threshold: int
    totp_issuer: str
    totp_period: int
    totp_window: int
    argon2_time_cost: int
    argon2_memory_kib: int
    argon2_parallelism: int


@dataclass(frozen=True)
class ProofingSettings:
    activation_ttl: timedelta
    registry_url: str
    registry_public_key: str
    registry_max_age: timedelta


@dataclass(frozen=True)
class GuardSettings:
    max_failed_attempts: int
    lockout: timedelta
    max_failed_per_address: int
    max_face_challenges_per_hour: int
    max_transport_keys_per_hour: int
    max_enrolments_per_address_per_hour: int
    max_signing_requests_per_hour: int


@dataclass(frozen=True)
class CaSettings:
    name: str
    organisation: str
    key_algorithm: KeyAlgorithm
    policy_oid: str
    validity_days: int
    public_url: str
    pki_dir: Path


@dataclass(frozen=True)
class ChainSettings:
    rpc_url: str  # empty: the embedded anvil
    contract_address: str
    anvil_port: int
    confirmations: int
    poll_interval: timedelta
    chain_dir: Path
    #: A configured chain with a development chain id (anvil, hardhat) is
    #: accepted, funded and mined only in development mode.
    allow_dev_chain: bool = False


@dataclass(frozen=True)
class AuditSettings:
    origin: str
    utc_offset: str
    sequence_interval: timedelta
    sequence_batch: int
    background_tasks: bool
    chain: ChainSettings


@dataclass(frozen=True)
class StatusSettings:
    public_url: str
    pki_dir: Path
    crl_interval: timedelta
    crl_validity: timedelta
    delta_crl_interval: timedelta
    ocsp_validity: timedelta
    tsa_policy_oid: str
    tsa_accuracy_ms: int
    poll_interval: timedelta
    background_tasks: bool
    ca_policy_oid: str
    ca_organisation: str


@dataclass(frozen=True)
class ValidationSettings:
    public_url: str
    max_bytes: int
    timeout: timedelta
    workers: int
    max_per_address_per_hour: int
    prestart: bool = True


@dataclass(frozen=True)
class Settings:
    # where the embedded parts keep their state
    data_dir: Path = Path("data")
    # development mode: `cloudsign serve` accepts the embedded anvil, a SoftHSM2
    # token, the PIN it generated itself and a plain-http public URL (`make run`
    # and the tests turn it on); off, it refuses each (`production_refusals`),
    # and the anchorer refuses a local development chain (chain id 31337) at
    # any chain_rpc_url
    development: bool = False
    # HTTP
    host: str = "127.0.0.1"
    port: int = 8080
    # `cloudsign serve` processes on this machine (more than one needs PostgreSQL)
    workers: int = 1
    # listen with SO_REUSEPORT, so several processes share the ports (the
    # workers of `serve --workers` do)
    reuse_port: bool = False
    public_url: str = ""  # default http://host:port; goes into certificates
    max_body_bytes: int = 1 << 20
    log_format: str = "json"  # `cloudsign serve`'s log lines: json or text
    # load balancers whose X-Forwarded-For/-Proto/-Host are believed (comma list of
    # addresses or networks); empty: the headers are ignored
    trusted_proxies: str = ""
    # database: sqlite:///path or postgresql://user@host:port/db
    database_url: str = ""  # default sqlite in data_dir
    # HSM
    hsm_module: str = ""  # default: SoftHSM2 from Debian, token in data_dir
    hsm_token_label: str = "cloudsign"  # noqa: S105 - a label, not a secret
    hsm_pin_file: str = ""  # default data_dir/hsm/user.pin
    hsm_pin: Secret | None = field(default=None, repr=False)  # env only
    # CA
    ca_name: str = "cloudsign"
    ca_organisation: str = "Cloudsign Certification Centre"
    ca_key_algorithm: str = "ec-p256"
    ca_policy_oid: str = "2.999.1.1"  # replace with the CA's registered policy OID
    certificate_validity_days: int = 365
    # enrolment and authentication
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 1
    transport_key_ttl_seconds: int = 300
    access_token_ttl_seconds: int = 3600
    totp_issuer: str = "cloudsign"
    totp_valid_window: int = 1
    totp_period_seconds: int = 30  # RFC 6238 step; authenticator apps use 30
    # audit log (cloudsign/audit): checkpoints and on-chain anchors
    audit_origin: str = ""  # default: <public_url host>/audit-log
    audit_utc_offset: str = "+05:00"  # days close at midnight in this fixed offset
    audit_sequence_interval_ms: int = 500
    audit_sequence_batch: int = 5000
    audit_background_tasks: bool = True  # sequencer, day close, anchoring in this process
    chain_rpc_url: str = ""  # default: an embedded anvil in data_dir/chain
    chain_contract_address: str = ""  # default: deployed once, remembered in the database
    chain_anvil_port: int = 8545  # embedded anvil; 0 picks a free port
    # The chain's JSON-RPC endpoint the auditor page reads anchors from in the
    # browser (CORS-enabled; a public node). Default: none, since the anchoring
    # endpoint may be private or carry an API key in its URL; in development
    # chain_rpc_url, or the embedded anvil on its fixed port.
    auditor_chain_rpc_url: str = ""
    chain_confirmations: int = 2  # blocks on top of the anchor (counting it)
    chain_poll_interval_ms: int = 5000
    # biometric factor
    face_workers: int = 2
    face_match_threshold: float = 0.53  # biometrics.DEFAULT_MATCH_THRESHOLD, measured
    liveness_actions: str = "blink,turn_left,turn_right"
    liveness_action_count: int = 2
    face_challenge_ttl_seconds: int = 60
    face_pass_ttl_seconds: int = 120  # a passed face check may back one authorisation this long
    require_face: bool = True
    max_upload_bytes: int = 16 << 20  # face bursts and documents
    # signing
    sad_ttl_seconds: int = 300
    max_signatures_per_sad: int = 1000
    max_failed_attempts: int = 5
    lockout_seconds: int = 900
    # rate limits (cloudsign/guard): per client address and per account
    max_failed_per_address: int = 30  # failures of any factor per lockout window
    max_face_challenges_per_hour: int = 30
    max_transport_keys_per_hour: int = 60
    max_enrolments_per_address_per_hour: int = 20
    # signing requests (and CSC phone approvals) for one citizen's phone: no push-bombing
    max_signing_requests_per_hour: int = 30
    # certificate status services (cloudsign/status): CRL, OCSP, TSA, notices
    crl_interval_hours: int = 24  # a complete CRL is published this often
    crl_validity_hours: int = 25  # nextUpdate - thisUpdate of a complete CRL
    delta_crl_interval_minutes: int = 60  # a delta CRL at least this often, and after revocations
    ocsp_validity_seconds: int = 600  # nextUpdate - thisUpdate of an OCSP response
    tsa_policy_oid: str = "2.999.1.2"  # replace with the TSA's registered policy OID
    tsa_accuracy_ms: int = 1000
    status_poll_ms: int = 500  # how often revocations made by other processes are picked up
    status_background_tasks: bool = True  # CRL publication and revocation watcher here
    # operators (cloudsign/operators): their own listener, sessions, two-person rule
    operator_host: str = "127.0.0.1"  # the operator API and console, never the public address
    operator_port: int = 8081  # 0: any free port
    operator_session_ttl_seconds: int = 8 * 3600
    operator_approval_ttl_seconds: int = 24 * 3600
    operator_setup_ttl_seconds: int = 24 * 3600
    bulk_revocation_threshold: int = 10  # revoking more at once needs a second operator
    # identity proofing (cloudsign/proofing)
    activation_ttl_seconds: int = 4 * 3600  # desk activation codes, and unfinished enrolments
    registry_url: str = ""  # the national identity registry; unset: no remote proofing
    registry_public_key: str = ""  # its Ed25519 key (PEM file path or base64 raw key)
    registry_max_age_seconds: int = 120  # how old a signed registry answer may be
    # the mobile channel (mobile_api): bound devices and signing requests
    webauthn_rp_id: str = ""  # default: the public URL's host
    device_challenge_ttl_seconds: int = 120
    max_devices: int = 5
    signing_request_ttl_seconds: int = 300  # a request not approved by then expires
    max_request_documents: int = 20
    # Web Push: the push services subscriptions may point at (comma list of hosts)
    push_services: str = (
        "fcm.googleapis.com,updates.push.services.mozilla.com,push.apple.com,notify.windows.com"
    )
    push_allow_loopback: bool = False  # tests: their own push endpoint on loopback
    push_contact: str = ""  # VAPID "sub": mailto: or https:; default mailto:pki@<public host>
    # eGov QR signing (mobile_api/egov.py): the services' API No. 1/2 over https only
    egov_allow_loopback: bool = False  # tests: their own e-government service on loopback
    egov_max_response_bytes: int = 8 << 20  # the largest API No. 2 answer read
    # the validation service (cloudsign/validation): untrusted signatures, in worker processes
    validation_max_bytes: int = 20 << 20  # a signed file or signature (413 beyond)
    validation_timeout_seconds: int = 20  # one validation's time limit in its worker
    validation_workers: int = 1  # worker processes validating at once
    validation_prestart: bool = True  # start the workers with the service (else at first use)
    max_validations_per_address_per_hour: int = 600

    def __post_init__(self) -> None:
        _check(1 <= self.port <= 65535, "port must be 1..65535")
        _check(1 <= self.workers <= 64, "workers must be 1..64")
        _check(self.max_body_bytes >= 1024, "max_body_bytes must be at least 1024")
        _check(self.log_format in ("json", "text"), "log_format must be json or text")
        _check(self.argon2_time_cost >= 1, "argon2_time_cost must be at least 1")
        _check(self.argon2_memory_kib >= 8 * self.argon2_parallelism, "argon2_memory_kib too small")
        _check(1 <= self.argon2_parallelism <= 16, "argon2_parallelism must be 1..16")
        _check(30 <= self.transport_key_ttl_seconds <= 3600, "transport_key_ttl_seconds 30..3600")
        _check(60 <= self.access_token_ttl_seconds <= 86400, "access_token_ttl_seconds 60..86400")
        _check(0 <= self.totp_valid_window <= 2, "totp_valid_window must be 0..2")
        _check(1 <= self.totp_period_seconds <= 120, "totp_period_seconds must be 1..120")
        _check(1 <= self.face_workers <= 32, "face_workers must be 1..32")
        _check(0.2 <= self.face_match_threshold <= 0.8, "face_match_threshold must be 0.2..0.8")
        actions = [a.strip() for a in self.liveness_actions.split(",") if a.strip()]
        _check(
            bool(actions) and set(actions) <= {"blink", "turn_left", "turn_right"},
            "liveness_actions is a comma list of blink, turn_left, turn_right",
        )
        _check(1 <= self.liveness_action_count <= 4, "liveness_action_count must be 1..4")
        _check(10 <= self.face_challenge_ttl_seconds <= 300, "face_challenge_ttl_seconds 10..300")
        _check(10 <= self.face_pass_ttl_seconds <= 600, "face_pass_ttl_seconds 10..600")
        _check(self.max_upload_bytes >= self.max_body_bytes, "max_upload_bytes < max_body_bytes")
        _check(10 <= self.sad_ttl_seconds <= 3600, "sad_ttl_seconds must be 10..3600")
        _check(1 <= self.max_signatures_per_sad <= 10000, "max_signatures_per_sad 1..10000")
        _check(1 <= self.max_failed_attempts <= 20, "max_failed_attempts must be 1..20")
        _check(10 <= self.lockout_seconds <= 86400 * 7, "lockout_seconds must be 10..604800")
        _check(1 <= self.max_failed_per_address <= 100_000, "max_failed_per_address 1..100000")
        _check(1 <= self.max_face_challenges_per_hour <= 10_000, "max_face_challenges_per_hour 1..")
        _check(1 <= self.max_transport_keys_per_hour <= 100_000, "max_transport_keys_per_hour 1..")
        _check(
            1 <= self.max_enrolments_per_address_per_hour <= 100_000,
            "max_enrolments_per_address_per_hour 1..100000",
        )
        _check(
            1 <= self.max_signing_requests_per_hour <= 100_000,
            "max_signing_requests_per_hour 1..100000",
        )
        _check(
            10 <= self.device_challenge_ttl_seconds <= 600, "device_challenge_ttl_seconds 10..600"
        )
        _check(1 <= self.max_devices <= 20, "max_devices must be 1..20")
        _check(30 <= self.signing_request_ttl_seconds <= 86400, "signing_request_ttl_seconds 30..")
        _check(1 <= self.max_request_documents <= 100, "max_request_documents must be 1..100")
        _check(
            64 << 10 <= self.egov_max_response_bytes <= 64 << 20,
            "egov_max_response_bytes must be 64 KiB..64 MiB",
        )
        _check(
            64 << 10 <= self.validation_max_bytes <= 256 << 20,
            "validation_max_bytes must be 64 KiB..256 MiB",
        )
        _check(1 <= self.validation_timeout_seconds <= 600, "validation_timeout_seconds 1..600")
        _check(1 <= self.validation_workers <= 32, "validation_workers must be 1..32")
        _check(
            1 <= self.max_validations_per_address_per_hour <= 100_000,
            "max_validations_per_address_per_hour 1..100000",
        )
        _check(1 <= self.certificate_validity_days <= 3650, "certificate_validity_days 1..3650")
        _check(bool(self.hsm_token_label), "hsm_token_label must not be empty")
        if self.ca_key_algorithm not in CA_KEY_ALGORITHMS:
            raise ConfigurationError(
                f"ca_key_algorithm must be one of {', '.join(CA_KEY_ALGORITHMS)}"
            )
        _check(
            all(p.isdigit() for p in self.ca_policy_oid.split(".")),
            "ca_policy_oid must be a dotted OID",
        )
        if self.database_url:
            scheme = urlsplit(self.database_url).scheme
            _check(
                scheme in ("sqlite", "postgresql", "postgres"),
                "database_url must start with sqlite:// or postgresql://",
            )
        if self.public_url:
            _check(
                urlsplit(self.public_url).scheme in ("http", "https"),
                "public_url must be http(s)",
            )
        try:
            parse_networks(self.trusted_proxies)
        except ValueError:
            raise ConfigurationError(
                "trusted_proxies is a comma list of IP addresses or networks"
            ) from None
        _check_audit(self)
        _check_status(self)

    # sections ---------------------------------------------------------------

    @cached_property
    def trusted_proxy_networks(self) -> tuple[Network, ...]:
        return parse_networks(self.trusted_proxies)

    @cached_property
    def http(self) -> HttpSettings:
        return HttpSettings(self.effective_public_url, self.max_body_bytes, self.max_upload_bytes)

    @cached_property
    def accounts(self) -> AccountSettings:
        return AccountSettings(
            access_token_ttl=timedelta(seconds=self.access_token_ttl_seconds),
            totp_issuer=self.totp_issuer,
            totp_period_seconds=self.totp_period_seconds,
            totp_valid_window=self.totp_valid_window,
            argon2_time_cost=self.argon2_time_cost,
            argon2_memory_kib=self.argon2_memory_kib,
            argon2_parallelism=self.argon2_parallelism,
        )

    @cached_property
    def credentials(self) -> CredentialSettings:
        return CredentialSettings(
            transport_key_ttl=timedelta(seconds=self.transport_key_ttl_seconds),
            require_face=self.require_face,
        )

    @cached_property
    def faces(self) -> FaceSettings:
        return FaceSettings(
            workers=self.face_workers,
            match_threshold=self.face_match_threshold,
            liveness_vocabulary=self.liveness_vocabulary,
            liveness_action_count=self.liveness_action_count,
            challenge_ttl=timedelta(seconds=self.face_challenge_ttl_seconds),
            pass_ttl=timedelta(seconds=self.face_pass_ttl_seconds),
        )

    @cached_property
    def signing(self) -> SigningSettings:
        return SigningSettings(
            sad_ttl=timedelta(seconds=self.sad_ttl_seconds),
            max_signatures_per_sad=self.max_signatures_per_sad,
        )

    @cached_property
    def operators(self) -> OperatorSettings:
        return OperatorSettings(
            host=self.operator_host,
            port=self.operator_port,
            public_url=self.effective_public_url,
            session_ttl=timedelta(seconds=self.operator_session_ttl_seconds),
            approval_ttl=timedelta(seconds=self.operator_approval_ttl_seconds),
            setup_ttl=timedelta(seconds=self.operator_setup_ttl_seconds),
            bulk_revocation_threshold=self.bulk_revocation_threshold,
            totp_issuer=f"{self.totp_issuer} operators",
            totp_period=self.totp_period_seconds,
            totp_window=self.totp_valid_window,
            argon2_time_cost=self.argon2_time_cost,
            argon2_memory_kib=self.argon2_memory_kib,
            argon2_parallelism=self.argon2_parallelism,
        )

    @cached_property
    def proofing(self) -> ProofingSettings:
        return ProofingSettings(
            activation_ttl=timedelta(seconds=self.activation_ttl_seconds),
            registry_url=self.registry_url,
            registry_public_key=self.registry_public_key,
            registry_max_age=timedelta(seconds=self.registry_max_age_seconds),
        )

    @cached_property
    def guard(self) -> GuardSettings:
        return GuardSettings(
            max_failed_attempts=self.max_failed_attempts,
            lockout=timedelta(seconds=self.lockout_seconds),
            max_failed_per_address=self.max_failed_per_address,
            max_face_challenges_per_hour=self.max_face_challenges_per_hour,
            max_transport_keys_per_hour=self.max_transport_keys_per_hour,
            max_enrolments_per_address_per_hour=self.max_enrolments_per_address_per_hour,
            max_signing_requests_per_hour=self.max_signing_requests_per_hour,
        )

    @cached_property
    def ca(self) -> CaSettings:
        return CaSettings(
            name=self.ca_name,
            organisation=self.ca_organisation,
            key_algorithm=KeyAlgorithm(self.ca_key_algorithm),
            policy_oid=self.ca_policy_oid,
            validity_days=self.certificate_validity_days,
            public_url=self.effective_public_url,
            pki_dir=self.pki_dir,
        )

    @cached_property
    def audit(self) -> AuditSettings:
        return AuditSettings(
            origin=self.effective_audit_origin,
            utc_offset=self.audit_utc_offset,
            sequence_interval=timedelta(milliseconds=self.audit_sequence_interval_ms),
            sequence_batch=self.audit_sequence_batch,
            background_tasks=self.audit_background_tasks,
            chain=ChainSettings(
                rpc_url=self.chain_rpc_url,
                contract_address=self.chain_contract_address,
                anvil_port=self.chain_anvil_port,
                confirmations=self.chain_confirmations,
                poll_interval=timedelta(milliseconds=self.chain_poll_interval_ms),
                chain_dir=self.chain_dir,
                allow_dev_chain=self.development,
            ),
        )

    @cached_property
    def status(self) -> StatusSettings:
        return StatusSettings(
            public_url=self.effective_public_url,
            pki_dir=self.pki_dir,
            crl_interval=timedelta(hours=self.crl_interval_hours),
            crl_validity=timedelta(hours=self.crl_validity_hours),
            delta_crl_interval=timedelta(minutes=self.delta_crl_interval_minutes),
            ocsp_validity=timedelta(seconds=self.ocsp_validity_seconds),
            tsa_policy_oid=self.tsa_policy_oid,
            tsa_accuracy_ms=self.tsa_accuracy_ms,
            poll_interval=timedelta(milliseconds=self.status_poll_ms),
            background_tasks=self.status_background_tasks,
            ca_policy_oid=self.ca_policy_oid,
            ca_organisation=self.ca_organisation,
        )

    @cached_property
    def validation(self) -> ValidationSettings:
        return ValidationSettings(
            public_url=self.effective_public_url,
            max_bytes=self.validation_max_bytes,
            timeout=timedelta(seconds=self.validation_timeout_seconds),
            workers=self.validation_workers,
            max_per_address_per_hour=self.max_validations_per_address_per_hour,
            prestart=self.validation_prestart,
        )

    # derived values -------------------------------------------------------

    @property
    def effective_public_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'cloudsign.db').resolve()}"

    @property
    def liveness_vocabulary(self) -> tuple[str, ...]:
        return tuple(a.strip() for a in self.liveness_actions.split(",") if a.strip())

    @property
    def effective_audit_origin(self) -> str:
        if self.audit_origin:
            return self.audit_origin
        return urlsplit(self.effective_public_url).netloc + "/audit-log"

    @property
    def chain_dir(self) -> Path:
        return self.data_dir / "chain"

    @property
    def public_chain_rpc_url(self) -> str:
        """Where the auditor page reads the chain (`auditor_chain_rpc_url`);
        empty when there is no fixed endpoint (an embedded anvil on port 0)."""
        if self.auditor_chain_rpc_url or not self.development:
            return self.auditor_chain_rpc_url
        if self.chain_rpc_url:
            return self.chain_rpc_url
        return f"http://127.0.0.1:{self.chain_anvil_port}" if self.chain_anvil_port else ""

    @property
    def hsm_dir(self) -> Path:
        return self.data_dir / "hsm"

    @property
    def pki_dir(self) -> Path:
        return self.data_dir / "pki"

    @property
    def uses_embedded_hsm(self) -> bool:
        return not self.hsm_module

    def production_refusals(self) -> list[str]:
        """Why this configuration is a development instance; empty when it is
        fit for production. `cloudsign serve` refuses to start on any of
        these unless `development` is on."""
        reasons = []
        if not self.chain_rpc_url:
            reasons.append("chain_rpc_url is empty: the embedded anvil is a development chain")
        if self.uses_embedded_hsm or "softhsm" in Path(self.hsm_module).name.lower():
            reasons.append("the HSM is SoftHSM2 (hsm_module): a development token in files")
        if self.hsm_pin is None and not self.hsm_pin_file:
            reasons.append(
                "the HSM PIN is the one the service generated into its data dir "
                "(set hsm_pin_file or CLOUDSIGN_HSM_PIN to the token's own PIN)"
            )
        if not self.effective_public_url.startswith("https://"):
            reasons.append("public_url is not https")
        return reasons

    @property
    def effective_pin_file(self) -> Path:
        return Path(self.hsm_pin_file) if self.hsm_pin_file else self.hsm_dir / "user.pin"

    def describe(self) -> dict[str, Any]:
        """Effective settings for display; secrets shown only as set/unset."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Secret):
                value = "(set)"
            elif value is None:
                value = "(unset)"
            elif isinstance(value, Path):
                value = str(value)
            out[f.name] = value
        out["database_url"] = _redact_url(self.effective_database_url)
        out["public_url"] = self.effective_public_url
        return out


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigurationError(message)


def _check_audit(s: Settings) -> None:
    origin = s.audit_origin
    _check(
        not origin or (origin.isprintable() and not any(c.isspace() or c == "+" for c in origin)),
        "audit_origin must be printable, without spaces or '+'",
    )
    offset = s.audit_utc_offset
    _check(
        len(offset) == 6
        and offset[0] in "+-"
        and offset[3] == ":"
        and offset[1:3].isdigit()
        and offset[4:].isdigit()
        and int(offset[1:3]) * 60 + int(offset[4:]) <= 14 * 60
        and int(offset[4:]) < 60,
        "audit_utc_offset must be ±HH:MM within ±14:00",
    )
    _check(10 <= s.audit_sequence_interval_ms <= 60_000, "audit_sequence_interval_ms 10..60000")
    _check(1 <= s.audit_sequence_batch <= 100_000, "audit_sequence_batch must be 1..100000")
    if s.chain_rpc_url:
        _check(
            urlsplit(s.chain_rpc_url).scheme in ("http", "https"),
            "chain_rpc_url must be http(s)",
        )
    if s.auditor_chain_rpc_url:
        _check(
            urlsplit(s.auditor_chain_rpc_url).scheme in ("http", "https")
            and bool(urlsplit(s.auditor_chain_rpc_url).netloc),
            "auditor_chain_rpc_url must be an http(s) URL",
        )
    if s.chain_contract_address:
        addr = s.chain_contract_address
        _check(
            len(addr) == 42
            and addr.startswith("0x")
            and all(c in "0123456789abcdefABCDEF" for c in addr[2:]),
            "chain_contract_address must be a 0x-prefixed 20-byte address",
        )
        _check(bool(s.chain_rpc_url), "chain_contract_address needs chain_rpc_url")
    _check(0 <= s.chain_anvil_port <= 65535, "chain_anvil_port must be 0..65535")
    _check(1 <= s.chain_confirmations <= 1000, "chain_confirmations must be 1..1000")
    _check(50 <= s.chain_poll_interval_ms <= 600_000, "chain_poll_interval_ms 50..600000")


def _check_status(s: Settings) -> None:
    _check(1 <= s.crl_interval_hours <= 168, "crl_interval_hours must be 1..168")
    _check(
        s.crl_interval_hours < s.crl_validity_hours <= 24 * 8,
        "crl_validity_hours must exceed crl_interval_hours (and be at most 192)",
    )
    _check(
        1 <= s.delta_crl_interval_minutes <= 60 * s.crl_interval_hours,
        "delta_crl_interval_minutes must be 1..crl_interval_hours*60",
    )
    _check(60 <= s.ocsp_validity_seconds <= 7 * 86400, "ocsp_validity_seconds must be 60..604800")
    _check(
        all(p.isdigit() for p in s.tsa_policy_oid.split(".")), "tsa_policy_oid must be a dotted OID"
    )
    _check(1 <= s.tsa_accuracy_ms <= 60_000, "tsa_accuracy_ms must be 1..60000")
    _check(50 <= s.status_poll_ms <= 60_000, "status_poll_ms must be 50..60000")
    _check(0 <= s.operator_port <= 65535, "operator_port must be 0..65535")
    _check(
        300 <= s.operator_session_ttl_seconds <= 86400, "operator_session_ttl_seconds 300..86400"
    )
    _check(60 <= s.operator_approval_ttl_seconds <= 7 * 86400, "operator_approval_ttl_seconds")
    _check(60 <= s.operator_setup_ttl_seconds <= 7 * 86400, "operator_setup_ttl_seconds")
    _check(1 <= s.bulk_revocation_threshold <= 100_000, "bulk_revocation_threshold 1..100000")
    _check(300 <= s.activation_ttl_seconds <= 7 * 86400, "activation_ttl_seconds 300..604800")
    _check(10 <= s.registry_max_age_seconds <= 3600, "registry_max_age_seconds 10..3600")
    if s.registry_url:
        _check(urlsplit(s.registry_url).scheme in ("http", "https"), "registry_url must be http(s)")
        _check(bool(s.registry_public_key), "registry_url needs registry_public_key")


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


_FIELDS: Final = {f.name: f for f in dataclasses.fields(Settings)}
_ENV_ONLY: Final = frozenset({"hsm_pin"})


def _coerce(name: str, raw: Any) -> Any:
    default = _FIELDS[name].default
    if name in _ENV_ONLY:
        return Secret(str(raw))
    if isinstance(default, bool):
        if isinstance(raw, bool):
            return raw
        if str(raw).lower() in ("1", "true", "yes", "on"):
            return True
        if str(raw).lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigurationError(f"{name} must be a boolean")
    if isinstance(default, int):
        try:
            return int(raw)
        except (TypeError, ValueError) as e:
            raise ConfigurationError(f"{name} must be an integer") from e
    if isinstance(default, float):
        try:
            return float(raw)
        except (TypeError, ValueError) as e:
            raise ConfigurationError(f"{name} must be a number") from e
    if isinstance(default, Path):
        return Path(str(raw))
    if not isinstance(raw, str):
        raise ConfigurationError(f"{name} must be a string")
    return raw


def load_settings(
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build settings from defaults, a TOML file, the environment and overrides."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    path = config_file or (Path(env["CLOUDSIGN_CONFIG"]) if env.get("CLOUDSIGN_CONFIG") else None)
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigurationError(f"cannot read config file {path}: {e}") from e
        for key, raw in data.items():
            if key not in _FIELDS:
                raise ConfigurationError(f"unknown setting {key!r} in {path}")
            if key in _ENV_ONLY:
                raise ConfigurationError(
                    f"{key} may not be written in a file; "
                    f"use {ENV_PREFIX}{key.upper()} or hsm_pin_file"
                )
            values[key] = _coerce(key, raw)
    for var, raw in env.items():
        if not var.startswith(ENV_PREFIX) or var in ENV_NON_KEYS:
            continue
        key = var[len(ENV_PREFIX) :].lower()
        if key not in _FIELDS:
            raise ConfigurationError(f"unknown setting in environment variable {var}")
        values[key] = _coerce(key, raw)
    for key, raw in overrides.items():
        if key not in _FIELDS:
            raise ConfigurationError(f"unknown setting {key!r}")
        values[key] = raw if isinstance(raw, Secret) else _coerce(key, raw)
    return Settings(**values)
