"""Certificate status and time: revocation, CRLs and delta CRLs, the OCSP
responder, the RFC 3161 time-stamping service and compromise notices.

Public surface for the rest of the service:
- `RevocationService.revoke(serial, reason, actor)` and `revoke_in(conn, …)`
  (app key `REVOCATION`), `RevocationReason`, `parse_reason`, `GROUNDS`;
- `StatusServices.build(...)`, started by the app's cleanup context, and
  `routes` (see `api`);
- `StatusUrls` for the TSA/OCSP/CRL URLs pyHanko needs;
- `ensure_service_keys`, for the data dir's first start.
"""

from cloudsign.status.certs import ensure_service_keys
from cloudsign.status.notices import NoticeService
from cloudsign.status.operations import StatusOperations
from cloudsign.status.reasons import GROUNDS, RevocationReason, parse_reason
from cloudsign.status.revocation import Revocation, RevocationService
from cloudsign.status.services import StatusServices, StatusUrls, crl_policy

__all__ = [
    "GROUNDS",
    "NoticeService",
    "Revocation",
    "RevocationReason",
    "RevocationService",
    "StatusOperations",
    "StatusServices",
    "StatusUrls",
    "crl_policy",
    "ensure_service_keys",
    "parse_reason",
]
