"""Signing: the factors of every authorisation and their lockout, the SAD,
the signature algorithms, CAdES/PAdES through pyHanko, XAdES through
signxml, the personal cabinet,
and the citizen API and CSC API over them."""

from cloudsign.signing.cabinet import Cabinet, SignedDocument, StoredSignature
from cloudsign.signing.cms import DocumentWorker
from cloudsign.signing.factors import FactorCheck
from cloudsign.signing.sad import Authorization, Grant, SadError, SadStore
from cloudsign.signing.service import (
    AUTH_EXPRESSION,
    AuthorizeRequest,
    DocumentRequest,
    SigningService,
)

__all__ = [
    "AUTH_EXPRESSION",
    "Authorization",
    "AuthorizeRequest",
    "Cabinet",
    "DocumentRequest",
    "DocumentWorker",
    "FactorCheck",
    "Grant",
    "SadError",
    "SadStore",
    "SignedDocument",
    "SigningService",
    "StoredSignature",
]
