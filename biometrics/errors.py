"""Exception hierarchy of the biometrics library.

Owns the single root exception, :class:`BiometricsError`, and its stable ``code``
strings. The server maps codes to HTTP statuses; builtin exceptions never escape a
public entry point (they are wrapped with ``raise ... from e``).
"""

from __future__ import annotations

from typing import Any


def _restore(cls: type[BiometricsError], message: str, state: dict[str, Any]) -> BiometricsError:
    # Rebuild without calling __init__ so subclasses with extra attributes survive
    # pickling across the worker-process boundary.
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class BiometricsError(Exception):
    """Root of every error raised by :mod:`biometrics`; ``code`` is stable API."""

    code: str = "biometrics_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (type(self), str(self), dict(self.__dict__)))


class InvalidInputError(BiometricsError):
    """Wrong number of images/frames or wrong argument types (HTTP 400)."""

    code = "invalid_input"


class UnsupportedImageFormatError(BiometricsError):
    """Bytes that are not JPEG or PNG (HTTP 415)."""

    code = "unsupported_format"


class ImageTooLargeError(BiometricsError):
    """Too many bytes or too many pixels announced by the header (HTTP 413)."""

    code = "image_too_large"


class MalformedImageError(BiometricsError):
    """A JPEG/PNG signature whose content cannot be decoded (HTTP 400)."""

    code = "malformed_image"


class EnrolmentRefusedError(BiometricsError):
    """An enrolment image failed the quality gate; ``code`` is a :class:`Reason` value.

    ``image_index`` says which input image (0-based) was refused, or ``None`` when the
    refusal concerns the set (e.g. images of different people).
    """

    code = "enrolment_refused"

    def __init__(self, message: str, *, code: str, image_index: int | None) -> None:
        super().__init__(message, code=code)
        self.image_index = image_index


class TemplateError(BiometricsError):
    """Template bytes that are corrupt or not a template (HTTP 400/500 for the server)."""

    code = "invalid_template"


class TemplateVersionError(TemplateError):
    """A template serialised by an unknown format version."""

    code = "template_version"


class ChallengeError(BiometricsError):
    """A challenge dict that cannot be parsed or validated."""

    code = "invalid_challenge"


class ChallengeExpiredError(ChallengeError):
    """The challenge is past its expiry (or not yet valid) at ``now``."""

    code = "challenge_expired"


class PolicyError(BiometricsError):
    """A :class:`BiometricsPolicy` constructed with inconsistent values."""

    code = "invalid_policy"


class WorkerError(BiometricsError):
    """The process pool is not running, is saturated, or a worker died."""

    code = "worker_failure"


class WorkerBusyError(WorkerError):
    """Too many requests already queued in the pool (HTTP 503)."""

    code = "worker_busy"
