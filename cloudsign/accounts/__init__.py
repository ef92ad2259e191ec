"""Accounts: owners, access tokens and login, consent to the texts of rule 6,
the TOTP factor, and deleting an account (with what other features erase)."""

from cloudsign.accounts.access import current_owner
from cloudsign.accounts.consents import ConsentText, current_texts
from cloudsign.accounts.possession import (
    B64URL,
    DeviceProof,
    DeviceVerifier,
    Possession,
    device_proof,
    possession_from,
    webauthn_credential,
)
from cloudsign.accounts.service import (
    ENROLMENT,
    FULL,
    AcceptedConsent,
    AccountEraser,
    AccountService,
    AfterCommit,
    KeyParams,
    Owner,
    Session,
)

__all__ = [
    "B64URL",
    "ENROLMENT",
    "FULL",
    "AcceptedConsent",
    "AccountEraser",
    "AccountService",
    "AfterCommit",
    "ConsentText",
    "DeviceProof",
    "DeviceVerifier",
    "KeyParams",
    "Owner",
    "Possession",
    "Session",
    "current_owner",
    "current_texts",
    "device_proof",
    "possession_from",
    "webauthn_credential",
]
