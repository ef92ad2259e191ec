"""The certification centre: the root and issuing CA (keys in the HSM), the
national subject profile, the certificate registry and the PKI publication
routes (`/pki/ca/*`)."""

from cloudsign.ca.authority import BACKDATE, ROOT_LABEL, CaProfile, CertificateAuthority, PkiUrls
from cloudsign.ca.identity import Identity, check_digit, validate_bin, validate_iin
from cloudsign.ca.registry import is_registered, issue_and_register, register
from cloudsign.ca.tables import certificates
from cloudsign.ca.x509 import (
    HsmKeySigner,
    build_certificate,
    key_identifier,
    new_serial,
    serial_hex,
    to_pem,
)

__all__ = [
    "BACKDATE",
    "ROOT_LABEL",
    "CaProfile",
    "CertificateAuthority",
    "HsmKeySigner",
    "Identity",
    "PkiUrls",
    "build_certificate",
    "certificates",
    "check_digit",
    "is_registered",
    "issue_and_register",
    "key_identifier",
    "new_serial",
    "register",
    "serial_hex",
    "to_pem",
    "validate_bin",
    "validate_iin",
]
