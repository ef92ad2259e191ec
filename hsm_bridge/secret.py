"""A value that never shows itself in logs, reprs or tracebacks."""

from __future__ import annotations

from typing import Final


class Secret:
    """Wraps a secret string or bytes; `repr`/`str` print a fixed mask.

    The value is reachable only through `reveal()`, so every place that
    touches it is greppable.
    """

    __slots__ = ("_value",)
    MASK: Final = "Secret('***')"

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return self.MASK

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> tuple[object, ...]:
        # Refuse pickling: a Secret must not travel to worker processes or caches.
        raise TypeError("Secret values cannot be pickled")
