"""HsmBridge plays every role in hsm_bridge.roles, with the exact signatures,
so features can depend on a role and still be handed the real bridge."""

from __future__ import annotations

import inspect

import pytest

from hsm_bridge import HsmBridge, KeyCustody, KeyedHasher, Sealer, Secret, ServiceKeys

ROLES: list[type] = [KeyCustody, ServiceKeys, Sealer, KeyedHasher]
#: Owned by whoever creates the bridge, not by any feature (`ping`: /readyz).
LIFECYCLE = {"start", "close", "run_with_session", "ping"}


def _bridge() -> HsmBridge:
    # Construction touches no HSM; `start()` would.
    return HsmBridge("/nonexistent/libpkcs11.so", "no-token", Secret("0000"))


def test_bridge_satisfies_every_role_statically() -> None:
    bridge = _bridge()
    # mypy checks these assignments (structural subtyping, full signatures).
    custody: KeyCustody = bridge
    service_keys: ServiceKeys = bridge
    sealer: Sealer = bridge
    hasher: KeyedHasher = bridge
    as_roles: tuple[object, ...] = (custody, service_keys, sealer, hasher)
    assert all(r is bridge for r in as_roles)


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.__name__)
def test_bridge_is_an_instance_of_every_role(role: type) -> None:
    assert isinstance(_bridge(), role)


def _members(role: type) -> list[str]:
    return [
        name
        for name, value in vars(role).items()
        if not name.startswith("_") and inspect.isfunction(value)
    ]


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.__name__)
def test_role_methods_have_the_bridge_signatures(role: type) -> None:
    """`isinstance` only sees names; this also holds without running mypy."""
    assert _members(role)
    for name in _members(role):
        declared = getattr(role, name)
        implemented = getattr(HsmBridge, name)
        assert inspect.iscoroutinefunction(declared), name
        assert inspect.iscoroutinefunction(implemented), name
        assert inspect.signature(declared, eval_str=True) == inspect.signature(
            implemented, eval_str=True
        ), name


def test_every_public_operation_of_the_bridge_has_a_role() -> None:
    public = {
        name
        for name, value in inspect.getmembers(HsmBridge, inspect.iscoroutinefunction)
        if not name.startswith("_")
    }
    in_roles = {name for role in ROLES for name in _members(role)}
    assert public - LIFECYCLE == in_roles
