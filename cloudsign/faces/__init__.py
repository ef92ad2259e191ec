"""The biometric factor: face enrolment (the template sealed by the HSM),
liveness challenges, burst verification and the one-time use of a passed
check by an authorisation. See service.py and docs/biometrics.md."""

from cloudsign.faces.service import (
    BurstVerdict,
    FaceEnrolment,
    FaceService,
    IssuedChallenge,
    policy_from,
)

__all__ = ["BurstVerdict", "FaceEnrolment", "FaceService", "IssuedChallenge", "policy_from"]
