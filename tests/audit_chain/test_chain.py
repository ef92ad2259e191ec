"""The anchor contract and client against a real anvil node."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import date

import pytest
from ac_support import fund
from eth_account import Account
from eth_utils.crypto import keccak
from web3 import AsyncHTTPProvider, AsyncWeb3

from audit_chain.anvil import AnvilProcess, free_port, rpc_call
from audit_chain.contract import compile_artifact, load_artifact
from audit_chain.errors import ChainError, SignerError
from audit_chain.ethereum import (
    SECP256K1_N,
    AnchorClient,
    EthereumAccount,
    SoftwareSecp256k1Signer,
)

DAY = date(2025, 3, 1)
ROOT = hashlib.sha256(b"root of day one").digest()


def test_committed_artifact_matches_source() -> None:
    committed = load_artifact()
    rebuilt = compile_artifact()
    assert rebuilt == committed, "run `python -m audit_chain.contract` and commit the artefact"
    names = {item.get("name") for item in committed.abi}
    assert {"anchor", "get_anchor", "owner", "Anchored"} <= names


class HighSSigner:
    """Returns the high-s twin of every signature, as some HSMs do."""

    def __init__(self) -> None:
        self.inner = SoftwareSecp256k1Signer.generate()

    @property
    def public_key(self) -> bytes:
        return self.inner.public_key

    def sign_digest(self, digest: bytes) -> tuple[int, int]:
        r, s = self.inner.sign_digest(digest)
        return r, s if s > SECP256K1_N // 2 else SECP256K1_N - s


class AsyncSigner:
    def __init__(self) -> None:
        self.inner = SoftwareSecp256k1Signer.generate()

    @property
    def public_key(self) -> bytes:
        return self.inner.public_key

    async def sign_digest(self, digest: bytes) -> tuple[int, int]:
        await asyncio.sleep(0)
        return self.inner.sign_digest(digest)


@pytest.mark.parametrize(
    "signer_type", [SoftwareSecp256k1Signer.generate, HighSSigner, AsyncSigner]
)
async def test_signed_transactions_recover_to_signer(signer_type: type) -> None:
    account = EthereumAccount(signer_type())
    for nonce in range(4):
        fields = [31337, nonce, 10**9, 3 * 10**9, 100_000, b"\x11" * 20, 5, b"\xab\xcd", []]
        raw = await account.sign_transaction(fields)
        assert Account.recover_transaction(raw) == account.address
        v, _r, s = await account.sign_digest(keccak(raw))
        assert v in (0, 1)
        assert s <= SECP256K1_N // 2


async def test_signer_with_wrong_key_refused() -> None:
    class Liar:
        public_key = SoftwareSecp256k1Signer.generate().public_key

        def sign_digest(self, digest: bytes) -> tuple[int, int]:
            return SoftwareSecp256k1Signer.generate().sign_digest(digest)

    with pytest.raises(SignerError):
        await EthereumAccount(Liar()).sign_digest(bytes(32))


async def test_anchor_lands_and_is_found(
    anvil: AnvilProcess, owner_signer: SoftwareSecp256k1Signer
) -> None:
    client = await AnchorClient.deploy(anvil.rpc_url, owner_signer)
    async with client:
        assert await client.owner() == client.account_address
        assert await client.find_anchor(DAY) is None
        receipt = await client.anchor(DAY, ROOT, 1234)
        found = await client.find_anchor(DAY)
        assert found is not None
        assert (found.root, found.size) == (ROOT, 1234)
        assert found.block_number == receipt.block_number
        assert found.tx_hash == receipt.tx_hash
        assert found.confirmations == 1
        rpc_call(anvil.rpc_url, "anvil_mine", [hex(5)])
        again = await client.find_anchor(DAY)
        assert again is not None
        assert again.confirmations == 6
        assert await client.transaction_confirmations(receipt.tx_hash) == 6
        # The Anchored event is there for anyone scanning logs.
        logs = rpc_call(
            anvil.rpc_url,
            "eth_getLogs",
            [{"address": client.address, "fromBlock": "0x0", "toBlock": "latest"}],
        )
        assert len(logs) == 1
        assert int(logs[0]["topics"][1], 16) == 20250301


async def test_double_anchor_is_impossible(
    anvil: AnvilProcess, owner_signer: SoftwareSecp256k1Signer
) -> None:
    async with await AnchorClient.deploy(anvil.rpc_url, owner_signer) as client:
        await client.anchor(DAY, ROOT, 10)
        with pytest.raises(ChainError) as e:
            await client.anchor(DAY, hashlib.sha256(b"other").digest(), 11)
        assert e.value.code == "chain.already_anchored"

        # Bypass the client's pre-flight simulation: the contract itself refuses.
        account = EthereumAccount(owner_signer)
        w3 = AsyncWeb3(AsyncHTTPProvider(anvil.rpc_url))
        contract = w3.eth.contract(address=client.address, abi=load_artifact().abi)
        data = contract.encode_abi("anchor", args=[20250301, b"\x22" * 32, 99])
        nonce = await w3.eth.get_transaction_count(account.address)
        fields = [
            31337,
            nonce,
            10**9,
            10**11,
            200_000,
            bytes.fromhex(client.address[2:]),
            0,
            bytes.fromhex(data[2:]),
            [],
        ]
        tx_hash = await w3.eth.send_raw_transaction(await account.sign_transaction(fields))
        receipt = await w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
        assert receipt["status"] == 0
        await w3.provider.disconnect()

        found = await client.find_anchor(DAY)
        assert found is not None
        assert (found.root, found.size) == (ROOT, 10)


async def test_only_owner_may_anchor(
    anvil: AnvilProcess, owner_signer: SoftwareSecp256k1Signer
) -> None:
    async with await AnchorClient.deploy(anvil.rpc_url, owner_signer) as client:
        intruder = SoftwareSecp256k1Signer.generate()
        fund(anvil, intruder)
        async with AnchorClient(anvil.rpc_url, client.address, signer=intruder) as other:
            with pytest.raises(ChainError) as e:
                await other.anchor(DAY, ROOT, 1)
            assert e.value.code == "chain.not_owner"
        with pytest.raises(ChainError) as e:
            await client.anchor(DAY, bytes(32), 1)
        assert e.value.code == "chain.invalid_input"
        assert await client.find_anchor(DAY) is None


async def test_anchor_survives_sigkill_and_restart(
    anvil: AnvilProcess, owner_signer: SoftwareSecp256k1Signer
) -> None:
    client = await AnchorClient.deploy(anvil.rpc_url, owner_signer)
    receipt = await client.anchor(DAY, ROOT, 77)
    # --state-interval 1: wait until a dump holds the anchor, then kill
    # without a final dump.
    await asyncio.to_thread(anvil.wait_for_dump, receipt.block_number)
    anvil.kill()
    assert not anvil.running()
    with pytest.raises(ChainError) as e:
        await client.find_anchor(DAY)
    assert e.value.code == "chain.unreachable"

    anvil.start()
    found = await client.find_anchor(DAY)
    assert found is not None
    assert (found.root, found.size, found.tx_hash) == (ROOT, 77, receipt.tx_hash)
    assert await client.transaction_confirmations(receipt.tx_hash) is not None
    # Still write-once after the restart, and the chain goes on.
    with pytest.raises(ChainError) as e:
        await client.anchor(DAY, ROOT, 78)
    assert e.value.code == "chain.already_anchored"
    await client.anchor(date(2025, 3, 2), ROOT, 80)
    await client.aclose()


async def test_reorg_removing_the_anchor_is_detected(
    anvil: AnvilProcess, owner_signer: SoftwareSecp256k1Signer
) -> None:
    async with await AnchorClient.deploy(anvil.rpc_url, owner_signer) as client:
        receipt = await client.anchor(DAY, ROOT, 5)
        assert await client.transaction_confirmations(receipt.tx_hash) == 1
        # Replace the anchor's block with an empty one.
        rpc_call(anvil.rpc_url, "anvil_reorg", [1, []])
        assert await client.find_anchor(DAY) is None
        assert await client.transaction_confirmations(receipt.tx_hash) is None
        # The service re-anchors; the day is anchored again, in a new transaction.
        again = await client.anchor(DAY, ROOT, 5)
        found = await client.find_anchor(DAY)
        assert found is not None
        assert found.tx_hash == again.tx_hash


async def test_unreachable_chain_has_its_code() -> None:
    client = AnchorClient(f"http://127.0.0.1:{free_port()}", "0x" + "11" * 20, rpc_timeout=2)
    with pytest.raises(ChainError) as e:
        await client.find_anchor(DAY)
    assert e.value.code == "chain.unreachable"
    await client.aclose()


async def test_no_contract_at_address(anvil: AnvilProcess) -> None:
    async with AnchorClient(anvil.rpc_url, "0x" + "11" * 20) as client:
        with pytest.raises(ChainError) as e:
            await client.find_anchor(DAY)
        assert e.value.code == "chain.no_contract"


def test_anvil_state_file_written(anvil: AnvilProcess) -> None:
    rpc_call(anvil.rpc_url, "anvil_mine", [hex(3)])
    head = int(rpc_call(anvil.rpc_url, "eth_blockNumber"), 16)
    anvil.wait_for_dump(head)
    assert anvil.state_path is not None
    state = json.loads(anvil.state_path.read_text())
    assert "block" in state or "blocks" in state
