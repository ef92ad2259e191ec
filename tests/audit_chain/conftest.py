"""Fixtures for audit_chain: a real anvil node per test, funded software signers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ac_support import fund

from audit_chain.anvil import AnvilProcess, find_anvil
from audit_chain.errors import AnvilError
from audit_chain.ethereum import SoftwareSecp256k1Signer


@pytest.fixture(scope="session")
def anvil_binary() -> Path:
    # Never skip: a missing anvil is a broken environment, and the chain tests
    # are the ones that show anchoring works at all.
    try:
        return find_anvil()
    except AnvilError as e:
        pytest.fail(f"anvil is required for the audit_chain chain tests: {e}", pytrace=False)


@pytest.fixture
def anvil(tmp_path: Path, anvil_binary: Path) -> Iterator[AnvilProcess]:
    node = AnvilProcess(
        tmp_path / "anvil-state.json",
        binary=anvil_binary,
        log_path=tmp_path / "anvil.log",
        state_interval=1,
    )
    node.start()
    try:
        yield node
    finally:
        node.kill()


@pytest.fixture
def owner_signer(anvil: AnvilProcess) -> SoftwareSecp256k1Signer:
    signer = SoftwareSecp256k1Signer.generate()
    fund(anvil, signer)
    return signer
