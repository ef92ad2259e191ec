"""The guard: every factor check counted and limited, per account, IIN,
credential, operator and client address, in storage all processes share
(service.py); and the service's limits (policy.py)."""

from cloudsign.guard.policy import Limits
from cloudsign.guard.service import Attempt, Guard, Limit, subject_key

__all__ = ["Attempt", "Guard", "Limit", "Limits", "subject_key"]
