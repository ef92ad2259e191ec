"""IIN/BIN check digits and the national subject profile."""

from __future__ import annotations

import pytest

from cloudsign.ca.identity import Identity, check_digit, validate_bin, validate_iin
from cloudsign.errors import ValidationError


def test_check_digit_known_values() -> None:
    # Worked by hand: weights 1..11 give 10, weights 3..11,1,2 give 3.
    assert check_digit("00000000001") == 0  # 1*11 % 11 == 0
    assert check_digit("90010130000") == (9 * 1 + 1 * 4 + 1 * 6 + 3 * 7) % 11
    # A number whose first round is 10 uses the second weights.
    first = "10000000000"
    assert check_digit(first) == 1


def test_second_round_weights_are_used() -> None:
    # Digits chosen so the first weighted sum is 10 mod 11.
    body = "00000000010"  # 1*10 == 10 -> second round: 1*1 == 1
    assert check_digit(body) == 1


def test_valid_iin_round_trip() -> None:
    body = "8512254" + "0012"
    digit = check_digit(body)
    assert digit is not None
    assert validate_iin(body + str(digit)) == body + str(digit)
    with pytest.raises(ValidationError):
        validate_iin(body + str((digit + 1) % 10))


@pytest.mark.parametrize(
    "iin",
    ["85122540012", "8512254001a5", "851225000000", "851325300001", "８５１２２５３００００１"],
)
def test_invalid_iins(iin: str) -> None:
    with pytest.raises(ValidationError):
        validate_iin(iin)


def test_bin() -> None:
    body = "05044" + "000123"
    digit = check_digit(body)
    assert digit is not None
    assert validate_bin(body + str(digit))
    with pytest.raises(ValidationError):
        validate_bin("05" + "13" + "4000123" + str(digit))  # month 13


def test_subject_profile() -> None:
    body = "9001013" + "0001"
    iin = body + str(check_digit(body))
    ident = Identity.from_json(
        {"iin": iin, "surname": " Abenov ", "given_name": "Dauren", "email": "d@example.kz"}
    )
    assert ident.subject() == {
        "common_name": "Abenov Dauren",
        "surname": "Abenov",
        "serial_number": "IIN" + iin,
        "country_name": "KZ",
        "given_name": "Dauren",
        "email_address": "d@example.kz",
    }
    with pytest.raises(ValidationError, match="unknown field"):
        Identity.from_json(
            {"iin": iin, "surname": "A", "given_name": "B", "email": "a@b.kz", "x": 1}
        )
    with pytest.raises(ValidationError, match="organisations only"):
        Identity.from_json(
            {"iin": iin, "surname": "A", "given_name": "B", "email": "a@b.kz", "bin": "1"}
        )
