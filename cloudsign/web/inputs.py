"""Strict typed reading of untrusted values: JSON fields, query and path
parameters, headers.

Every request value goes through one of these readers before the service
sees it, so a hostile value is a 400 problem+json naming the field, never a
builtin exception somewhere deeper (`TypeError` from an unhashable list,
`UnicodeEncodeError` from a lone surrogate, `ValueError` from `int()` over
superscript digits...). The rules, for every source:

- types are exact (a bool is not an int, a list is not a string);
- strings are bounded in length and free of control characters and lone
  surrogates (PostgreSQL refuses NUL, the HSM and the ASN.1 encoders refuse
  surrogates), unless a field allows newlines;
- digit fields (OTP, IIN, BIN, indexes) are ASCII `0-9` only: `str.isdigit()`
  also accepts `²` and `١`, which `int()` or `hmac.compare_digest` then refuse;
- base64 is strict (no stray characters) and bounded before decoding;
- an error message quotes at most `PREVIEW_CHARS` of the offending value.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Collection, Iterator, Mapping
from typing import Any, Final, TypeVar

from cloudsign.errors import ValidationError

T = TypeVar("T")

#: How much of an offending value an error message may quote.
PREVIEW_CHARS: Final = 32
DEFAULT_MAX_TEXT: Final = 256
OTP_MIN_DIGITS: Final = 6
OTP_MAX_DIGITS: Final = 8
#: Control characters (C0, DEL, C1) and lone surrogates.
_FORBIDDEN: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_FORBIDDEN_MULTILINE: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_ASCII_DIGITS: Final = re.compile(r"[0-9]+")
_B64URL: Final = re.compile(r"[A-Za-z0-9_-]*={0,2}")


def preview(value: object) -> str:
    """A short, printable quotation of a client-supplied value for messages."""
    text = ascii(value) if isinstance(value, str) else type(value).__name__
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def check_text(
    value: object,
    name: str,
    *,
    max_len: int = DEFAULT_MAX_TEXT,
    min_len: int = 1,
    multiline: bool = False,
    pattern: re.Pattern[str] | None = None,
) -> str:
    """A string of `min_len..max_len` characters with no control character
    (newlines and tabs allowed with `multiline`) and no lone surrogate."""
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be a string", field=name)
    if not min_len <= len(value) <= max_len:
        raise ValidationError(f"{name} must be {min_len}..{max_len} characters", field=name)
    if (_FORBIDDEN_MULTILINE if multiline else _FORBIDDEN).search(value):
        raise ValidationError(f"{name} contains control characters", field=name)
    if pattern is not None and not pattern.fullmatch(value):
        raise ValidationError(f"{name} is not well-formed: {preview(value)}", field=name)
    return value


def check_digits(value: object, name: str, *, min_len: int, max_len: int | None = None) -> str:
    """ASCII digits only, `min_len..max_len` of them."""
    high = min_len if max_len is None else max_len
    if not isinstance(value, str) or not min_len <= len(value) <= high:
        size = str(min_len) if high == min_len else f"{min_len}..{high}"
        raise ValidationError(f"{name} must be {size} digits", field=name)
    if not _ASCII_DIGITS.fullmatch(value):
        raise ValidationError(f"{name} must be ASCII digits 0-9", field=name)
    return value


def check_int(value: object, name: str, *, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValidationError(f"{name} must be an integer in {low}..{high}", field=name)
    return value


def parse_int(text: object, name: str, *, low: int = 0, high: int = 2**63 - 1) -> int:
    """An integer written in ASCII digits (query and path parameters)."""
    digits = check_digits(text, name, min_len=1, max_len=len(str(high)))
    return check_int(int(digits), name, low=low, high=high)


def decode_b64(
    value: object, name: str, *, max_bytes: int, urlsafe: bool = False, min_bytes: int = 0
) -> bytes:
    """Strict base64 (or base64url, padding optional) of at most `max_bytes`."""
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be a base64 string", field=name)
    if len(value) > 4 * ((max_bytes + 2) // 3) + 2:
        raise ValidationError(f"{name} is longer than {max_bytes} bytes", field=name)
    try:
        if urlsafe:
            # urlsafe_b64decode silently drops characters outside the alphabet.
            if not _B64URL.fullmatch(value):
                raise ValidationError(f"{name} is not valid base64url", field=name)
            bare = value.rstrip("=")
            raw = base64.urlsafe_b64decode(bare + "=" * (-len(bare) % 4))
        else:
            # validate=True: binascii's strict mode refuses any stray character.
            raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValidationError(f"{name} is not valid base64", field=name) from e
    if not min_bytes <= len(raw) <= max_bytes:
        raise ValidationError(f"{name} must be {min_bytes}..{max_bytes} bytes", field=name)
    return raw


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


class Fields:
    """Typed getters over one JSON object; each failure names the field.

    `Fields(data)["x"]` is never used: every read says what it expects.
    Nested objects are read with `obj()`, whose errors name the path
    (`password_key.wrapped_key`).
    """

    __slots__ = ("_data", "_prefix")

    def __init__(self, data: Mapping[str, Any], prefix: str = "") -> None:
        self._data = data
        self._prefix = prefix

    @classmethod
    def of(cls, value: object, name: str = "body") -> Fields:
        if not isinstance(value, dict):
            raise ValidationError(f"{name} must be a JSON object", field=name)
        return cls(value, "" if name == "body" else f"{name}.")

    def __repr__(self) -> str:  # the values may be secrets
        return f"Fields({len(self._data)} fields)"

    def __contains__(self, name: str) -> bool:
        return self._data.get(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def name(self, key: str) -> str:
        return self._prefix + key

    def raw(self, key: str) -> object:
        return self._data.get(key)

    def only(self, allowed: Collection[str]) -> None:
        """Refuse fields this request does not know (a typo is not ignored)."""
        unknown = sorted(k for k in self._data if k not in allowed)
        if unknown:
            listed = ", ".join(preview(k) for k in unknown[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise ValidationError(f"unknown field(s): {listed}{more}", field=self.name(unknown[0]))

    def _get(self, key: str, default: object) -> object:
        value = self._data.get(key)
        if value is None:
            if default is MISSING:
                raise ValidationError(f"{self.name(key)} is required", field=self.name(key))
            return default
        return value

    # -- scalars ----------------------------------------------------------------

    def text(
        self,
        key: str,
        *,
        max_len: int = DEFAULT_MAX_TEXT,
        multiline: bool = False,
        pattern: re.Pattern[str] | None = None,
    ) -> str:
        return check_text(
            self._get(key, MISSING),
            self.name(key),
            max_len=max_len,
            multiline=multiline,
            pattern=pattern,
        )

    def optional_text(
        self,
        key: str,
        *,
        max_len: int = DEFAULT_MAX_TEXT,
        multiline: bool = False,
        pattern: re.Pattern[str] | None = None,
    ) -> str | None:
        if key not in self:
            return None
        return self.text(key, max_len=max_len, multiline=multiline, pattern=pattern)

    def digits(self, key: str, *, min_len: int, max_len: int | None = None) -> str:
        return check_digits(
            self._get(key, MISSING), self.name(key), min_len=min_len, max_len=max_len
        )

    def optional_digits(self, key: str, *, min_len: int, max_len: int | None = None) -> str | None:
        if key not in self:
            return None
        return self.digits(key, min_len=min_len, max_len=max_len)

    def otp(self, key: str = "otp") -> str | None:
        """A one-time code: 6 to 8 ASCII digits, or absent (a missing code is
        then refused by the service as a failed factor)."""
        return self.optional_digits(key, min_len=OTP_MIN_DIGITS, max_len=OTP_MAX_DIGITS)

    def integer(self, key: str, *, low: int, high: int, default: int | None = None) -> int:
        value = self._get(key, MISSING if default is None else default)
        return check_int(value, self.name(key), low=low, high=high)

    def boolean(self, key: str, *, default: bool = False) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise ValidationError(f"{self.name(key)} must be true or false", field=self.name(key))
        return value

    def choice(self, key: str, options: Mapping[str, T], *, default: str | None = None) -> T:
        """One of `options`' keys, mapped to its value."""
        value = self._get(key, MISSING if default is None else default)
        if not isinstance(value, str) or value not in options:
            names = ", ".join(options)
            raise ValidationError(f"{self.name(key)} must be one of {names}", field=self.name(key))
        return options[value]

    def b64(self, key: str, *, max_bytes: int, urlsafe: bool = False, min_bytes: int = 0) -> bytes:
        return decode_b64(
            self._get(key, MISSING),
            self.name(key),
            max_bytes=max_bytes,
            urlsafe=urlsafe,
            min_bytes=min_bytes,
        )

    def optional_b64(self, key: str, *, max_bytes: int, min_bytes: int = 0) -> bytes | None:
        if key not in self:
            return None
        return self.b64(key, max_bytes=max_bytes, min_bytes=min_bytes)

    # -- containers -------------------------------------------------------------

    def _list(self, key: str, max_items: int, min_items: int) -> list[Any]:
        value = self._get(key, MISSING)
        name = self.name(key)
        if not isinstance(value, list):
            raise ValidationError(f"{name} must be an array", field=name)
        if not min_items <= len(value) <= max_items:
            raise ValidationError(f"{name} must have {min_items}..{max_items} items", field=name)
        return value

    def b64_list(
        self, key: str, *, max_items: int, max_bytes: int, min_items: int = 1
    ) -> list[bytes]:
        """A non-empty array of base64 strings, each at most `max_bytes`."""
        name = self.name(key)
        return [
            decode_b64(item, name, max_bytes=max_bytes)
            for item in self._list(key, max_items, min_items)
        ]

    def texts(
        self, key: str, *, max_items: int, max_len: int = DEFAULT_MAX_TEXT, min_items: int = 0
    ) -> list[str]:
        if key not in self and min_items == 0:
            return []
        name = self.name(key)
        return [
            check_text(item, name, max_len=max_len)
            for item in self._list(key, max_items, min_items)
        ]

    def obj(self, key: str) -> Fields:
        return Fields.of(self._get(key, MISSING), self.name(key))

    def objects(self, key: str, *, max_items: int, min_items: int = 1) -> list[Fields]:
        name = self.name(key)
        return [
            Fields.of(item, f"{name}[{i}]")
            for i, item in enumerate(self._list(key, max_items, min_items))
        ]
