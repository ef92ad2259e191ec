"""Who a certificate is for: the national subject profile and its checks.

A citizen's subject: `CN` full name, `SURNAME`, `SERIALNUMBER` = "IIN" + 12
digits, `G` given name, `C=KZ`, `E` e-mail; an organisation's adds `O` and
`OU` = "BIN" + 12 digits. IIN and BIN carry a mod-11 check digit (two weight
rounds; a number whose check comes out 10 twice is never issued).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Final

from cloudsign.errors import ValidationError
from cloudsign.web.inputs import Fields, check_text

_W1: Final = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)
_W2: Final = (3, 4, 5, 6, 7, 8, 9, 10, 11, 1, 2)
_EMAIL: Final = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]+")
MAX_NAME: Final = 200
IDENTITY_FIELDS: Final = frozenset(
    {"kind", "iin", "surname", "given_name", "email", "bin", "organisation"}
)


def check_digit(first11: str) -> int | None:
    """The 12th digit of an IIN/BIN, or None when no valid number exists."""
    digits = [int(c) for c in first11]
    s = sum(d * w for d, w in zip(digits, _W1, strict=True)) % 11
    if s == 10:
        s = sum(d * w for d, w in zip(digits, _W2, strict=True)) % 11
        if s == 10:
            return None
    return s


def _valid_number(value: str) -> bool:
    if len(value) != 12 or not value.isascii() or not value.isdigit():
        return False
    return check_digit(value[:11]) == int(value[11])


def validate_iin(iin: str) -> str:
    """An individual identification number: birth date YYMMDD, century and
    sex digit 1-6, serial, check digit."""
    if not _valid_number(iin):
        raise ValidationError("IIN must be 12 digits with a valid check digit", field="iin")
    century_digit = int(iin[6])
    if not 1 <= century_digit <= 6:
        raise ValidationError("IIN century/sex digit must be 1-6", field="iin")
    century = 1800 + 100 * ((century_digit - 1) // 2)
    try:
        date(century + int(iin[0:2]), int(iin[2:4]), int(iin[4:6]))
    except ValueError as e:
        raise ValidationError("IIN does not start with a valid birth date", field="iin") from e
    return iin


def validate_bin(bin_: str) -> str:
    """A business identification number: YYMM, entity type 4-6, check digit."""
    if not _valid_number(bin_):
        raise ValidationError("BIN must be 12 digits with a valid check digit", field="bin")
    if bin_[4] not in "456" or not 1 <= int(bin_[2:4]) <= 12:
        raise ValidationError("BIN registration month or entity type is invalid", field="bin")
    return bin_


def _name(value: object, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{field} is required", field=field)
    return " ".join(check_text(value, field, max_len=MAX_NAME).split())


@dataclass(frozen=True)
class Identity:
    kind: str  # person | organisation
    iin: str
    surname: str
    given_name: str
    email: str
    bin: str = ""
    organisation: str = ""

    @property
    def full_name(self) -> str:
        return f"{self.surname} {self.given_name}"

    @staticmethod
    def checked_email(email: str) -> str:
        if not _EMAIL.fullmatch(email):
            raise ValidationError("email is invalid", field="email")
        return email

    @classmethod
    def from_json(cls, data: object) -> Identity:
        """An applicant's identity from a JSON object (or its `Fields`)."""
        body = data if isinstance(data, Fields) else Fields.of(data)
        body.only(IDENTITY_FIELDS)
        kind = body.choice(
            "kind", {"person": "person", "organisation": "organisation"}, default="person"
        )
        iin = validate_iin(body.text("iin", max_len=12))
        email = cls.checked_email(body.text("email", max_len=320))
        bin_ = ""
        organisation = ""
        if kind == "organisation":
            if "bin" not in body:
                raise ValidationError("bin is required for an organisation", field="bin")
            bin_ = validate_bin(body.text("bin", max_len=12))
            organisation = _name(body.raw("organisation"), "organisation")
        elif body.raw("bin") or body.raw("organisation"):
            raise ValidationError("bin and organisation are for organisations only", field="bin")
        return cls(
            kind=kind,
            iin=iin,
            surname=_name(body.raw("surname"), "surname"),
            given_name=_name(body.raw("given_name"), "given_name"),
            email=email,
            bin=bin_,
            organisation=organisation,
        )

    def subject(self) -> dict[str, str]:
        """asn1crypto `Name.build` input, in the national profile's order."""
        name = {
            "common_name": self.full_name,
            "surname": self.surname,
            "serial_number": "IIN" + self.iin,
            "country_name": "KZ",
            "given_name": self.given_name,
            "email_address": self.email,
        }
        if self.kind == "organisation":
            name["organization_name"] = self.organisation
            name["organizational_unit_name"] = "BIN" + self.bin
        return name
