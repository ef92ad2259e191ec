"""The certification centre's two-level hierarchy: a root CA and the issuing
CA that signs citizens' certificates. Both private keys live in the HSM; the
certificates are public and kept as PEM files in `<data_dir>/pki`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from asn1crypto import keys, pem, x509

from cloudsign.ca.identity import Identity
from cloudsign.ca.x509 import HsmKeySigner, build_certificate, new_serial, to_pem
from cloudsign.clock import utc_now
from cloudsign.errors import ConfigurationError
from hsm_bridge import KeyAlgorithm, ServiceKeys

ROOT_LABEL: Final = "ca-root"
ISSUING_LABEL: Final = "ca-issuing"
ROOT_VALIDITY: Final = timedelta(days=20 * 365)
ISSUING_VALIDITY: Final = timedelta(days=10 * 365)
#: Clock-skew allowance for relying parties.
BACKDATE: Final = timedelta(minutes=5)


@dataclass(frozen=True)
class PkiUrls:
    """Where the CA publishes: written into certificates and served by the
    status services (cloudsign/status)."""

    base: str

    @property
    def crl(self) -> str:
        return f"{self.base}/pki/crl/issuing.crl"

    @property
    def delta_crl(self) -> str:
        return f"{self.base}/pki/crl/issuing-delta.crl"

    @property
    def root_crl(self) -> str:
        return f"{self.base}/pki/crl/root.crl"

    @property
    def ocsp(self) -> str:
        return f"{self.base}/pki/ocsp"

    @property
    def tsa(self) -> str:
        return f"{self.base}/tsa"

    @property
    def issuing_cert(self) -> str:
        return f"{self.base}/pki/ca/issuing.cer"

    @property
    def root_cert(self) -> str:
        return f"{self.base}/pki/ca/root.cer"


@dataclass(frozen=True)
class CaProfile:
    name: str
    organisation: str
    algorithm: KeyAlgorithm
    policy_oid: str
    validity_days: int
    urls: PkiUrls


class CertificateAuthority:
    def __init__(
        self,
        bridge: ServiceKeys,
        profile: CaProfile,
        root: x509.Certificate,
        issuing: x509.Certificate,
    ) -> None:
        self.bridge = bridge
        self.profile = profile
        self.root = root
        self.issuing = issuing
        self.issuing_signer = HsmKeySigner(bridge, ISSUING_LABEL, profile.algorithm)

    @property
    def chain(self) -> list[x509.Certificate]:
        return [self.issuing, self.root]

    @staticmethod
    def files(pki_dir: Path) -> tuple[Path, Path]:
        return pki_dir / "root.pem", pki_dir / "issuing.pem"

    @classmethod
    async def initialise(cls, bridge: ServiceKeys, pki_dir: Path, profile: CaProfile) -> bool:
        """Create the CA keys and certificates if absent. True if created."""
        if cls.exists(pki_dir):
            return False
        now = utc_now().replace(microsecond=0) - BACKDATE
        root_spki = keys.PublicKeyInfo.load(
            await bridge.generate_signing_key(ROOT_LABEL, profile.algorithm)
        )
        root_name = x509.Name.build(
            {
                "country_name": "KZ",
                "organization_name": profile.organisation,
                "common_name": f"{profile.name} Root CA",
            }
        )
        root_signer = HsmKeySigner(bridge, ROOT_LABEL, profile.algorithm)
        root = await build_certificate(
            signer=root_signer,
            issuer=root_name,
            issuer_spki=root_spki,
            subject=root_name,
            subject_spki=root_spki,
            serial=new_serial(),
            not_before=now,
            not_after=now + ROOT_VALIDITY,
            extensions=_ca_extensions(path_len=None),
        )
        issuing_spki = keys.PublicKeyInfo.load(
            await bridge.generate_signing_key(ISSUING_LABEL, profile.algorithm)
        )
        issuing = await build_certificate(
            signer=root_signer,
            issuer=root_name,
            issuer_spki=root_spki,
            subject=x509.Name.build(
                {
                    "country_name": "KZ",
                    "organization_name": profile.organisation,
                    "common_name": f"{profile.name} Issuing CA",
                }
            ),
            subject_spki=issuing_spki,
            serial=new_serial(),
            not_before=now,
            not_after=now + ISSUING_VALIDITY,
            extensions=[
                *_ca_extensions(path_len=0),
                # Relying parties check the intermediate too (long-term validation).
                {
                    "extn_id": "crl_distribution_points",
                    "critical": False,
                    "extn_value": [
                        {"distribution_point": {"full_name": [_uri(profile.urls.root_crl)]}}
                    ],
                },
                {
                    "extn_id": "authority_information_access",
                    "critical": False,
                    "extn_value": [
                        {
                            "access_method": "ca_issuers",
                            "access_location": _uri(profile.urls.root_cert),
                        }
                    ],
                },
            ],
        )
        await asyncio.to_thread(cls._save, pki_dir, root, issuing)
        return True

    @classmethod
    def exists(cls, pki_dir: Path) -> bool:
        return all(f.exists() for f in cls.files(pki_dir))

    @classmethod
    def _save(cls, pki_dir: Path, root: x509.Certificate, issuing: x509.Certificate) -> None:
        pki_dir.mkdir(parents=True, exist_ok=True)
        root_file, issuing_file = cls.files(pki_dir)
        root_file.write_text(to_pem(root))
        issuing_file.write_text(to_pem(issuing))

    @classmethod
    def load(cls, bridge: ServiceKeys, pki_dir: Path, profile: CaProfile) -> CertificateAuthority:
        root_file, issuing_file = cls.files(pki_dir)
        try:
            root = _read_pem(root_file)
            issuing = _read_pem(issuing_file)
        except OSError as e:
            raise ConfigurationError(
                f"CA certificates missing in {pki_dir}; run `cloudsign init`"
            ) from e
        return cls(bridge, profile, root, issuing)

    async def issue(
        self, identity: Identity, spki_der: bytes, *, now: datetime | None = None
    ) -> x509.Certificate:
        """A citizen's (or organisation's) signing certificate, 1-year validity."""
        now = (now or utc_now()).replace(microsecond=0)
        spki = keys.PublicKeyInfo.load(spki_der)
        not_after = min(
            now + timedelta(days=self.profile.validity_days),
            self.issuing.not_valid_after,
        )
        return await build_certificate(
            signer=self.issuing_signer,
            issuer=self.issuing.subject,
            issuer_spki=self.issuing.public_key,
            subject=x509.Name.build(identity.subject()),
            subject_spki=spki,
            serial=new_serial(),
            not_before=now - BACKDATE,
            not_after=not_after,
            extensions=self._owner_extensions(identity),
        )

    def _owner_extensions(self, identity: Identity) -> list[dict[str, Any]]:
        urls = self.profile.urls
        return [
            {"extn_id": "basic_constraints", "critical": True, "extn_value": {"ca": False}},
            {
                "extn_id": "key_usage",
                "critical": True,
                "extn_value": {"digital_signature", "non_repudiation"},
            },
            {
                "extn_id": "certificate_policies",
                "critical": False,
                "extn_value": [{"policy_identifier": self.profile.policy_oid}],
            },
            {
                "extn_id": "crl_distribution_points",
                "critical": False,
                "extn_value": [{"distribution_point": {"full_name": [_uri(urls.crl)]}}],
            },
            {
                # RFC 5280 §4.2.1.15: where the delta CRLs are. Validators
                # (pyhanko-certvalidator among them) find deltas only here.
                "extn_id": "freshest_crl",
                "critical": False,
                "extn_value": [{"distribution_point": {"full_name": [_uri(urls.delta_crl)]}}],
            },
            {
                "extn_id": "authority_information_access",
                "critical": False,
                "extn_value": [
                    {"access_method": "ocsp", "access_location": _uri(urls.ocsp)},
                    {
                        "access_method": "ca_issuers",
                        "access_location": _uri(urls.issuing_cert),
                    },
                ],
            },
            {
                "extn_id": "subject_alt_name",
                "critical": False,
                "extn_value": [x509.GeneralName(name="rfc822_name", value=identity.email)],
            },
        ]


def _uri(url: str) -> x509.GeneralName:
    return x509.GeneralName(name="uniform_resource_identifier", value=url)


def _ca_extensions(path_len: int | None) -> list[dict[str, Any]]:
    constraints: dict[str, Any] = {"ca": True}
    if path_len is not None:
        constraints["path_len_constraint"] = path_len
    return [
        {"extn_id": "basic_constraints", "critical": True, "extn_value": constraints},
        {"extn_id": "key_usage", "critical": True, "extn_value": {"key_cert_sign", "crl_sign"}},
    ]


def _read_pem(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    if pem.detect(data):
        _, _, data = pem.unarmor(data)
    return x509.Certificate.load(data)
