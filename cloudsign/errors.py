"""The service's domain errors. Each has a stable `code` and the HTTP status
the error middleware answers with (RFC 9457 problem+json)."""

from __future__ import annotations

from typing import ClassVar


class CloudsignError(Exception):
    code: ClassVar[str] = "error"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ConfigurationError(CloudsignError):
    code = "configuration_error"
    title = "Invalid configuration"


class BadRequestError(CloudsignError):
    code = "bad_request"
    status = 400
    title = "Bad request"


class ValidationError(BadRequestError):
    code = "invalid_field"
    title = "Invalid field"

    def __init__(self, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.field = field


class UnauthorizedError(CloudsignError):
    code = "unauthorized"
    status = 401
    title = "Authentication required"


class ForbiddenError(CloudsignError):
    code = "forbidden"
    status = 403
    title = "Forbidden"


class NotFoundError(CloudsignError):
    code = "not_found"
    status = 404
    title = "Not found"


class ConflictError(CloudsignError):
    code = "conflict"
    status = 409
    title = "Conflict"


class PreconditionError(CloudsignError):
    """A step of enrolment is missing (consent, TOTP, face)."""

    code = "precondition_failed"
    status = 409
    title = "Enrolment step missing"


class FactorError(CloudsignError):
    """An authentication factor was wrong (OTP, password, transport message)."""

    code = "factor_failed"
    status = 403
    title = "Authentication factor rejected"


class ServiceUnavailableError(CloudsignError):
    code = "unavailable"
    status = 503
    title = "Service unavailable"


class LockedError(CloudsignError):
    """Too many failed attempts: this subject is locked for a while."""

    code = "locked"
    status = 423
    title = "Locked"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class RateLimitedError(CloudsignError):
    code = "rate_limited"
    status = 429
    title = "Too many requests"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
