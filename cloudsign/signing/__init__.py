"""Signing: the factors of every authorisation and their lockout, the SAD,
the signature algorithms, CAdES/PAdES through pyHanko, XAdES through
signxml, the personal cabinet, the extension of its long-term PAdES
signatures (`cloudsign extend`),
and the citizen API and CSC API over them."""

from cloudsign.signing.cabinet import Cabinet, SignedDocument, StoredSignature
from cloudsign.signing.cms import DocumentWorker, LevelServices
from cloudsign.signing.extend import DEFAULT_BEFORE, ExtendReport, SignatureExtender
from cloudsign.signing.factors import FactorCheck
from cloudsign.signing.sad import SAD_TOKEN_PREFIX, Authorization, Grant, SadError, SadStore
from cloudsign.signing.service import (
    AUTH_EXPRESSION,
    AuthorizeRequest,
    DocumentRequest,
    SigningService,
)

__all__ = [
    "AUTH_EXPRESSION",
    "DEFAULT_BEFORE",
    "SAD_TOKEN_PREFIX",
    "Authorization",
    "AuthorizeRequest",
    "Cabinet",
    "DocumentRequest",
    "DocumentWorker",
    "ExtendReport",
    "FactorCheck",
    "Grant",
    "LevelServices",
    "SadError",
    "SadStore",
    "SignatureExtender",
    "SignedDocument",
    "SigningService",
    "StoredSignature",
]
