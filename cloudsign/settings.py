"""Service settings: typed, validated at start-up, unknown keys rejected.

Sources, later ones winning: built-in defaults, a TOML file (`--config`, or
`CLOUDSIGN_CONFIG`), then environment variables `CLOUDSIGN_<KEY>` (upper-case
key names). Secrets (the HSM PIN) are `Secret` values whose repr is masked;
`describe()` prints the effective settings for operators without them.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from cloudsign.errors import ConfigurationError
from hsm_bridge import KeyAlgorithm, Secret

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


@dataclass(frozen=True)
class Settings:
    # where the embedded parts keep their state
    data_dir: Path = Path("data")
    # HTTP
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""  # default http://host:port; goes into certificates
    max_body_bytes: int = 1 << 20
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

    def __post_init__(self) -> None:
        _check(1 <= self.port <= 65535, "port must be 1..65535")
        _check(self.max_body_bytes >= 1024, "max_body_bytes must be at least 1024")
        _check(self.argon2_time_cost >= 1, "argon2_time_cost must be at least 1")
        _check(self.argon2_memory_kib >= 8 * self.argon2_parallelism, "argon2_memory_kib too small")
        _check(1 <= self.argon2_parallelism <= 16, "argon2_parallelism must be 1..16")
        _check(30 <= self.transport_key_ttl_seconds <= 3600, "transport_key_ttl_seconds 30..3600")
        _check(60 <= self.access_token_ttl_seconds <= 86400, "access_token_ttl_seconds 60..86400")
        _check(0 <= self.totp_valid_window <= 2, "totp_valid_window must be 0..2")
        _check(1 <= self.totp_period_seconds <= 120, "totp_period_seconds must be 1..120")
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

    # derived values -------------------------------------------------------

    @property
    def effective_public_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'cloudsign.db').resolve()}"

    @property
    def hsm_dir(self) -> Path:
        return self.data_dir / "hsm"

    @property
    def pki_dir(self) -> Path:
        return self.data_dir / "pki"

    @property
    def uses_embedded_hsm(self) -> bool:
        return not self.hsm_module

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
    if name == "hsm_pin":
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
