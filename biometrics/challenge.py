"""Liveness challenges: what the user must do in front of the camera, and until when.

Owns :class:`Challenge` and :class:`Action`. The library issues and checks challenges;
the *server* stores them and enforces "live and unused" (single use needs state that a
pure library does not have).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from biometrics.errors import ChallengeError, ChallengeExpiredError
from biometrics.policy import CHALLENGE_LIFETIME_S, CLOCK_SKEW_S, MAX_CHALLENGE_LIFETIME_S


class Action(StrEnum):
    """Actions the liveness detector can recognise."""

    BLINK = "blink"
    TURN_LEFT = "turn_left"  # the subject turns to *their* left
    TURN_RIGHT = "turn_right"


DEFAULT_VOCABULARY: Final = (Action.BLINK, Action.TURN_LEFT, Action.TURN_RIGHT)
BLINK_ONLY: Final = (Action.BLINK,)
_SCHEMA_VERSION: Final = 1
_NONCE_BYTES: Final = 24
_MAX_ACTIONS: Final = 6


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ChallengeError("timestamps must be timezone-aware")
    return moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Challenge:
    """A random nonce, a short validity window and an ordered action sequence."""

    nonce: str
    issued_at: datetime
    expires_at: datetime
    actions: tuple[Action, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.nonce, str) or not 16 <= len(self.nonce) <= 128:
            raise ChallengeError("nonce must be a string of 16..128 characters")
        issued, expires = _utc(self.issued_at), _utc(self.expires_at)
        if not issued < expires <= issued + timedelta(seconds=MAX_CHALLENGE_LIFETIME_S):
            raise ChallengeError(f"lifetime must be in (0, {MAX_CHALLENGE_LIFETIME_S}] s")
        if not 1 <= len(self.actions) <= _MAX_ACTIONS:
            raise ChallengeError(f"a challenge has 1..{_MAX_ACTIONS} actions")
        try:
            actions = tuple(Action(a) for a in self.actions)
        except ValueError as e:
            raise ChallengeError("unknown action in challenge") from e
        object.__setattr__(self, "issued_at", issued)
        object.__setattr__(self, "expires_at", expires)
        object.__setattr__(self, "actions", actions)

    @classmethod
    def new(
        cls,
        *,
        vocabulary: Sequence[Action | str] = DEFAULT_VOCABULARY,
        length: int = 2,
        lifetime: timedelta = timedelta(seconds=CHALLENGE_LIFETIME_S),
        now: datetime | None = None,
    ) -> Challenge:
        """Issue a challenge of ``length`` actions drawn with a CSPRNG from ``vocabulary``.

        Consecutive repeats are avoided when the vocabulary allows it: "turn left, turn
        left" would need an unprompted return to centre in between.
        """
        try:
            vocab = tuple(dict.fromkeys(Action(a) for a in vocabulary))
        except ValueError as e:
            raise ChallengeError("unknown action in vocabulary") from e
        if not vocab:
            raise ChallengeError("empty vocabulary")
        if not 1 <= length <= _MAX_ACTIONS:
            raise ChallengeError(f"length must be in 1..{_MAX_ACTIONS}")
        issued = _utc(now) if now is not None else datetime.now(UTC)
        drawn: list[Action] = []
        for _ in range(length):
            choices = [a for a in vocab if not drawn or a != drawn[-1]] or list(vocab)
            drawn.append(secrets.choice(choices))
        return cls(
            nonce=secrets.token_urlsafe(_NONCE_BYTES),
            issued_at=issued,
            expires_at=issued + lifetime,
            actions=tuple(drawn),
        )

    def is_live(self, now: datetime, *, skew_s: float = CLOCK_SKEW_S) -> bool:
        """True if ``now`` is inside [issued_at - skew, expires_at)."""
        moment = _utc(now)
        return self.issued_at - timedelta(seconds=skew_s) <= moment < self.expires_at

    def ensure_live(self, now: datetime, *, skew_s: float = CLOCK_SKEW_S) -> None:
        """Raise :class:`ChallengeExpiredError` unless the challenge is live at ``now``."""
        if not self.is_live(now, skew_s=skew_s):
            raise ChallengeExpiredError("challenge expired or not yet valid")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (ISO-8601 UTC timestamps)."""
        return {
            "v": _SCHEMA_VERSION,
            "nonce": self.nonce,
            "issued_at": self.issued_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "actions": [a.value for a in self.actions],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Challenge:
        try:
            if data["v"] != _SCHEMA_VERSION:
                raise ChallengeError(f"unsupported challenge schema {data['v']!r}")
            actions = data["actions"]
            if not isinstance(actions, list | tuple):
                raise ChallengeError("actions must be a list")
            return cls(
                nonce=data["nonce"],
                issued_at=datetime.fromisoformat(data["issued_at"]),
                expires_at=datetime.fromisoformat(data["expires_at"]),
                actions=tuple(Action(a) for a in actions),
            )
        except ChallengeError:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise ChallengeError("malformed challenge") from e
