"""The validation service: signed PDFs, CMS/CAdES signatures and XML
documents with an enveloped XMLDSig/XAdES signature from anyone, validated
with pyHanko (and signxml for the XML maths) in worker processes with a
time limit, against this CA's root only, and reported in the shape of
ETSI EN 319 102-1
(`POST /api/v1/validate`, see `api`)."""

from cloudsign.validation.service import (
    VALIDATION,
    ValidationPool,
    ValidationService,
    ValidationTimeoutError,
)

__all__ = ["VALIDATION", "ValidationPool", "ValidationService", "ValidationTimeoutError"]
