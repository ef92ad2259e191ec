"""The service's limits, from the settings (README, "Rate limits").

Failure limits count attempts and start again after a success: a subject
that fails `max_failed_attempts` times in a row is locked for
`lockout_seconds` (423). Address limits count failures of any factor from
one client address (429 until the window ends). Rate limits count costly
steps whatever their outcome (429).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from cloudsign.guard.service import Limit
from cloudsign.settings import GuardSettings

HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Limits:
    otp: Limit  # per account: every place a TOTP code is checked
    device: Limit  # per account: assertions of bound devices (the app's possession factor)
    login: Limit  # per IIN: logins, whatever factor fails
    password: Limit  # per credential: the key password (authorisations, factor changes)
    face: Limit  # per account: refused face bursts
    activation: Limit  # per address: wrong activation and setup codes
    operator: Limit  # per operator account: sign-in
    address: Limit  # per client address: failures of any factor
    challenges: Limit  # per account: face challenges issued
    transport_keys: Limit  # per account: one-time HSM keys issued
    anonymous_keys: Limit  # per address: HSM keys for logins (no account yet)
    enrolments: Limit  # per address: activations and remote proofings started
    requests: Limit  # per account: signing requests for the citizen's phone (push, inbox)

    @classmethod
    def from_settings(cls, s: GuardSettings) -> Limits:
        def failures(name: str) -> Limit:
            return Limit(name, s.max_failed_attempts, s.lockout, lock=s.lockout)

        def rate(name: str, count: int, window: timedelta = HOUR) -> Limit:
            return Limit(name, count, window, resets_on_success=False)

        return cls(
            otp=failures("otp.account"),
            device=failures("device.account"),
            login=failures("login.iin"),
            password=failures("password.credential"),
            face=failures("face.account"),
            activation=failures("activation.code"),
            operator=failures("signin.operator"),
            address=Limit(
                "failures.address", s.max_failed_per_address, s.lockout, resets_on_success=False
            ),
            challenges=rate("challenges.account", s.max_face_challenges_per_hour),
            transport_keys=rate("transport.account", s.max_transport_keys_per_hour),
            anonymous_keys=rate("transport.address", s.max_transport_keys_per_hour),
            enrolments=rate("enrolment.address", s.max_enrolments_per_address_per_hour),
            requests=rate("requests.account", s.max_signing_requests_per_hour),
        )
