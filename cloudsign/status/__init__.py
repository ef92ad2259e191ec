"""Certificate status and time: revocation, CRLs and delta CRLs, the OCSP
responder, the RFC 3161 time-stamping service and compromise notices.

Public surface for the rest of the service:
- `RevocationService.revoke(serial, reason, actor)` (app key `REVOCATION`),
  `RevocationReason`, `parse_reason`, `GROUNDS`;
- `status_context` (cleanup context) and `routes` (see `api`), wired in
  `cloudsign.app`;
- `StatusUrls` for the TSA/OCSP/CRL URLs pyHanko needs.
"""

from cloudsign.status.reasons import GROUNDS, RevocationReason, parse_reason
from cloudsign.status.revocation import Revocation, RevocationService
from cloudsign.status.runtime import REVOCATION, STATUS, StatusServices, StatusUrls, status_context

__all__ = [
    "GROUNDS",
    "REVOCATION",
    "STATUS",
    "Revocation",
    "RevocationReason",
    "RevocationService",
    "StatusServices",
    "StatusUrls",
    "parse_reason",
    "status_context",
]
