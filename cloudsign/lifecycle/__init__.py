"""Every path that changes who can sign, held to what signing requires:
login (two factors), deleting the key or the account, replacing the face,
the password, the key or the TOTP factor (all factors)."""

from cloudsign.lifecycle.api import challenge_json, login_fields
from cloudsign.lifecycle.service import Factors, LifecycleService, LoginChallenge

__all__ = ["Factors", "LifecycleService", "LoginChallenge", "challenge_json", "login_fields"]
