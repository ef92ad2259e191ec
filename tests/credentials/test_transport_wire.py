"""The two wire forms of a wrapped key password, parsed on their own: what
the device client writes, the server reads, and nothing else."""

from __future__ import annotations

import base64
import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cloudsign.credentials import parse_transport_message, parse_transport_pin
from cloudsign.errors import ValidationError
from cloudsign.web.inputs import Fields
from device_client.device import WrappedPasswordKey, wrap_for_transport


def _wrapped() -> WrappedPasswordKey:
    server = ec.generate_private_key(ec.SECP256R1()).public_key()
    spki = server.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return wrap_for_transport(os.urandom(32), "5b5c9f0e-0000-4000-8000-000000000001", spki)


def test_both_forms_carry_the_same_message() -> None:
    w = _wrapped()
    from_pin = parse_transport_pin(w.to_pin())
    from_json = parse_transport_message(Fields.of(w.to_json(), "password_key"))
    assert from_pin == from_json
    assert (from_pin.transport_key_id, from_pin.device_point, from_pin.wrapped_key) == (
        w.transport_key_id,
        w.device_point,
        w.wrapped_key,
    )


@pytest.mark.parametrize(
    "pin",
    [
        "correct horse battery",  # a password: never accepted
        "CSPW2.id.AAAA.AAAA",
        "CSPW1.id.AAAA",
        "CSPW1.id.@@@@.AAAA",
        "CSPW1.id.AAAA.AAAA",  # decodes, but not a point nor a 40-byte wrap
        "CSPW1.\u0000.AAAA.AAAA",
        "CSPW1." + "x" * 65 + ".AAAA.AAAA",
        "CSPW1.id." + "A" * 400 + ".AAAA",
        "",
    ],
)
def test_bad_pins_are_refused_with_the_field(pin: str) -> None:
    with pytest.raises(ValidationError) as e:
        parse_transport_pin(pin)
    assert e.value.field == "PIN"
    assert "horse" not in e.value.detail


def test_a_point_off_the_curve_is_refused() -> None:
    w = _wrapped()
    bad = bytearray(w.device_point)
    bad[-1] ^= 1
    body = {**w.to_json(), "device_public_key": base64.b64encode(bytes(bad)).decode()}
    with pytest.raises(ValidationError, match="P-256"):
        parse_transport_message(Fields.of(body, "password_key"))


@pytest.mark.parametrize(
    "change",
    [
        {"transport_key_id": ""},
        {"wrapped_key": "not base64!"},
        {"wrapped_key": base64.b64encode(os.urandom(39)).decode()},
        {"extra": "field"},
        {"device_public_key": None},
    ],
)
def test_bad_json_forms_are_refused(change: dict[str, object]) -> None:
    body = {**_wrapped().to_json(), **change}
    with pytest.raises(ValidationError):
        parse_transport_message(Fields.of(body, "password_key"))
