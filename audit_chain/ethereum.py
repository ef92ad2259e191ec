"""Ethereum anchoring client: deploy AuditAnchor, anchor a day, find a day's anchor.

This module owns the chain side. Transactions are signed through
:class:`TransactionSigner`, whose only primitive is "sign this 32-byte digest
with secp256k1 → (r, s)" — all an HSM offers. Everything Ethereum-specific is
done here: low-s normalisation, the recovery id (found by recovering the public
key), the address, and EIP-1559 (type 2) transaction encoding.
:class:`SoftwareSecp256k1Signer` is a ``cryptography`` implementation for tests.

Errors are :class:`~audit_chain.errors.ChainError` with a stable ``code``:
``chain.unreachable``, ``chain.reverted``, ``chain.already_anchored``,
``chain.not_owner``, ``chain.timeout``, ``chain.rejected`` (the node refused the
transaction, e.g. no funds), ``chain.no_contract``, ``chain.bad_response``,
``chain.invalid_input``.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from datetime import date
from typing import Any, Final, Protocol

import aiohttp
import rlp  # type: ignore[import-untyped]
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eth_keys.datatypes import Signature
from eth_keys.exceptions import BadSignature
from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from audit_chain._web3 import (
    AsyncHTTPProvider,
    AsyncWeb3,
    ContractLogicError,
    ProviderConnectionError,
    TimeExhausted,
    TransactionNotFound,
    Web3Exception,
    Web3RPCError,
)
from audit_chain.anchors import AnchorRecord
from audit_chain.contract import load_artifact
from audit_chain.days import day_number
from audit_chain.errors import ChainError, SignerError

__all__ = [
    "SECP256K1_N",
    "AnchorClient",
    "AnchorReceipt",
    "AsyncTransactionSigner",
    "EthereumAccount",
    "SoftwareSecp256k1Signer",
    "TransactionSigner",
    "address_from_public_key",
]

SECP256K1_N: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
#: Gas estimates are padded: the estimate is exact for the state it ran on.
GAS_MARGIN_PERCENT: Final = 25
DEFAULT_RPC_TIMEOUT: Final = 10.0
DEFAULT_RECEIPT_TIMEOUT: Final = 120.0
ANCHORED_EVENT: Final = "Anchored(uint32,bytes32,uint64)"
ANCHORED_TOPIC: Final = keccak(text=ANCHORED_EVENT)
_ZERO_ROOT: Final = bytes(32)


# --------------------------------------------------------------------- signers


class TransactionSigner(Protocol):
    """secp256k1 signer over a pre-computed 32-byte digest (what an HSM provides)."""

    @property
    def public_key(self) -> bytes:
        """Uncompressed SEC1 point: 0x04 || X || Y (65 bytes)."""
        ...

    def sign_digest(self, digest: bytes) -> tuple[int, int]:
        """ECDSA (r, s) over ``digest`` as-is (no further hashing); any s is fine."""
        ...


class AsyncTransactionSigner(Protocol):
    @property
    def public_key(self) -> bytes: ...

    def sign_digest(self, digest: bytes) -> Awaitable[tuple[int, int]]: ...


class SoftwareSecp256k1Signer:
    """:class:`TransactionSigner` with a ``cryptography`` secp256k1 key."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(private_key.curve, ec.SECP256K1):
            raise SignerError("an Ethereum key is on secp256k1")
        self._key = private_key
        self._public = private_key.public_key().public_bytes(
            Encoding.X962, PublicFormat.UncompressedPoint
        )

    @classmethod
    def generate(cls) -> SoftwareSecp256k1Signer:
        return cls(ec.generate_private_key(ec.SECP256K1()))

    @classmethod
    def from_secret(cls, secret: bytes) -> SoftwareSecp256k1Signer:
        return cls(ec.derive_private_key(int.from_bytes(secret, "big"), ec.SECP256K1()))

    @property
    def public_key(self) -> bytes:
        return self._public

    def sign_digest(self, digest: bytes) -> tuple[int, int]:
        # Prehashed: the digest is Keccak-256 already; ECDSA only needs 32 bytes.
        der = self._key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        r, s = decode_dss_signature(der)
        return r, s


def address_from_public_key(public_key: bytes) -> str:
    """Checksummed address: last 20 bytes of Keccak-256 of the 64-byte X || Y."""
    if len(public_key) == 65 and public_key[0] == 4:
        public_key = public_key[1:]
    if len(public_key) != 64:
        raise SignerError("expected an uncompressed secp256k1 public key")
    return str(to_checksum_address(keccak(public_key)[-20:]))


class EthereumAccount:
    """An address backed by a :class:`TransactionSigner`; produces signed transactions."""

    def __init__(self, signer: TransactionSigner | AsyncTransactionSigner) -> None:
        self._signer = signer
        public = signer.public_key
        if len(public) == 65 and public[0] == 4:
            public = public[1:]
        if len(public) != 64:
            raise SignerError("signer public key must be an uncompressed secp256k1 point")
        self._public64 = public
        self.address = address_from_public_key(public)

    async def sign_digest(self, digest: bytes) -> tuple[int, int, int]:
        """(y_parity, r, s) with low s and the recovery id checked against our key."""
        if len(digest) != 32:
            raise SignerError("digest must be 32 bytes")
        try:
            result: object = self._signer.sign_digest(digest)
            if inspect.isawaitable(result):
                result = await result
        except Exception as e:  # any HSM / driver failure becomes one error type
            raise SignerError(f"transaction signer failed: {e}") from e
        if (
            not isinstance(result, tuple)
            or len(result) != 2
            or not all(isinstance(x, int) for x in result)
        ):
            raise SignerError("sign_digest must return (r, s) integers")
        r, s = result
        if not (0 < r < SECP256K1_N and 0 < s < SECP256K1_N):
            raise SignerError("signature values out of range")
        # Ethereum (EIP-2) refuses high-s signatures; (r, n - s) is the same signature.
        if s > SECP256K1_N // 2:
            s = SECP256K1_N - s
        for v in (0, 1):
            try:
                recovered = Signature(vrs=(v, r, s)).recover_public_key_from_msg_hash(digest)
            except (BadSignature, ValueError):
                continue
            if recovered.to_bytes() == self._public64:
                return v, r, s
        raise SignerError("signature does not verify under the signer's public key")

    async def sign_transaction(self, fields: list[Any]) -> bytes:
        """Sign EIP-1559 fields; return the raw ``0x02 || rlp([...fields, v, r, s])``."""
        digest = keccak(b"\x02" + bytes(rlp.encode(fields)))
        v, r, s = await self.sign_digest(digest)
        return b"\x02" + bytes(rlp.encode([*fields, v, r, s]))


# ---------------------------------------------------------------------- client


@dataclass(frozen=True)
class AnchorReceipt:
    """A mined anchoring transaction."""

    day: date
    root: bytes
    size: int
    tx_hash: bytes
    block_number: int
    contract: str


_REVERT_CODES: Final = {
    "already anchored": "chain.already_anchored",
    "not owner": "chain.not_owner",
    "empty root": "chain.invalid_input",
}


def _revert_error(e: ContractLogicError, what: str) -> ChainError:
    text = str(e.message or e)
    for reason, code in _REVERT_CODES.items():
        if reason in text:
            return ChainError(f"{what}: {reason}", code=code)
    return ChainError(f"{what}: reverted ({text})", code="chain.reverted")


@contextlib.asynccontextmanager
async def _translate(what: str) -> AsyncIterator[None]:
    """Map web3 / network exceptions to ChainError codes."""
    try:
        yield
    except ChainError:
        raise
    except ContractLogicError as e:
        raise _revert_error(e, what) from e
    except TimeExhausted as e:
        raise ChainError(f"{what}: not mined in time", code="chain.timeout") from e
    except (ProviderConnectionError, aiohttp.ClientError, OSError, TimeoutError) as e:
        raise ChainError(f"{what}: chain unreachable ({e})", code="chain.unreachable") from e
    except Web3RPCError as e:
        raise ChainError(f"{what}: node refused ({e.message})", code="chain.rejected") from e
    except (Web3Exception, ValueError, KeyError, TypeError) as e:
        raise ChainError(f"{what}: unexpected answer ({e})", code="chain.bad_response") from e


def _to_bytes(value: Any) -> bytes:
    return bytes(value) if not isinstance(value, str) else bytes.fromhex(value.removeprefix("0x"))


class AnchorClient:
    """Async client of one deployed AuditAnchor contract.

    ``signer`` is needed only to write (:meth:`anchor`); auditors read without it.
    Use as ``async with AnchorClient(...) as client:`` or call :meth:`aclose`.
    """

    def __init__(
        self,
        rpc_url: str,
        contract_address: str,
        *,
        signer: TransactionSigner | AsyncTransactionSigner | None = None,
        rpc_timeout: float = DEFAULT_RPC_TIMEOUT,
        receipt_timeout: float = DEFAULT_RECEIPT_TIMEOUT,
        poll_interval: float = 0.2,
    ) -> None:
        self._w3 = _make_web3(rpc_url, rpc_timeout)
        try:
            self.address: ChecksumAddress = to_checksum_address(contract_address)
        except ValueError as e:
            raise ChainError(
                f"{contract_address!r} is not an address", code="chain.invalid_input"
            ) from e
        artifact = load_artifact()
        self._contract = self._w3.eth.contract(address=self.address, abi=artifact.abi)
        self._account = EthereumAccount(signer) if signer is not None else None
        self._receipt_timeout = receipt_timeout
        self._poll_interval = poll_interval
        self._checked_code = False

    async def __aenter__(self) -> AnchorClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        with contextlib.suppress(Web3Exception, aiohttp.ClientError, OSError):
            await self._w3.provider.disconnect()

    @property
    def account_address(self) -> str | None:
        return None if self._account is None else self._account.address

    # ------------------------------------------------------------------ deploy

    @classmethod
    async def deploy(
        cls,
        rpc_url: str,
        signer: TransactionSigner | AsyncTransactionSigner,
        *,
        rpc_timeout: float = DEFAULT_RPC_TIMEOUT,
        receipt_timeout: float = DEFAULT_RECEIPT_TIMEOUT,
        poll_interval: float = 0.2,
    ) -> AnchorClient:
        """Deploy a new AuditAnchor owned by ``signer``'s address; return its client."""
        w3 = _make_web3(rpc_url, rpc_timeout)
        account = EthereumAccount(signer)
        bytecode = bytes.fromhex(load_artifact().bytecode.removeprefix("0x"))
        try:
            async with _translate("deploying AuditAnchor"):
                tx = {"from": account.address, "data": "0x" + bytecode.hex()}
                gas = await w3.eth.estimate_gas(tx)  # type: ignore[arg-type]
                receipt = await _send(
                    w3, account, None, bytecode, gas, receipt_timeout, poll_interval
                )
                if receipt["status"] != 1 or not receipt.get("contractAddress"):
                    raise ChainError("deployment transaction failed", code="chain.reverted")
                address = str(receipt["contractAddress"])
        finally:
            with contextlib.suppress(Web3Exception, aiohttp.ClientError, OSError):
                await w3.provider.disconnect()
        return cls(
            rpc_url,
            address,
            signer=signer,
            rpc_timeout=rpc_timeout,
            receipt_timeout=receipt_timeout,
            poll_interval=poll_interval,
        )

    # ------------------------------------------------------------------- reads

    async def _ensure_contract(self) -> None:
        if self._checked_code:
            return
        async with _translate("reading contract code"):
            code = await self._w3.eth.get_code(self.address)
        if not code:
            raise ChainError(f"no contract at {self.address}", code="chain.no_contract")
        self._checked_code = True

    async def owner(self) -> str:
        await self._ensure_contract()
        async with _translate("reading owner"):
            return str(await self._contract.functions.owner().call())

    async def head(self) -> int:
        async with _translate("reading block number"):
            return int(await self._w3.eth.block_number)

    async def find_anchor(self, day: date) -> AnchorRecord | None:
        """The anchor of ``day`` in the current canonical chain, or ``None``.

        Read from contract storage at the head, so a reorg that dropped the
        anchoring transaction makes this ``None`` (the service then re-anchors).
        """
        await self._ensure_contract()
        number = day_number(day)
        async with _translate(f"reading the anchor of {day.isoformat()}"):
            head = int(await self._w3.eth.block_number)
            root, size, block = await self._contract.functions.get_anchor(number).call(
                block_identifier=head
            )
            root = _to_bytes(root)
            if root == _ZERO_ROOT:
                return None
            logs = await self._w3.eth.get_logs(
                {
                    "address": self.address,
                    "fromBlock": int(block),
                    "toBlock": int(block),
                    "topics": [ANCHORED_TOPIC, number.to_bytes(32, "big")],  # type: ignore[list-item]
                }
            )
            tx_hash = _to_bytes(logs[0]["transactionHash"]) if logs else None
            return AnchorRecord(
                day=day,
                root=root,
                size=int(size),
                block_number=int(block),
                confirmations=max(0, head - int(block) + 1),
                tx_hash=tx_hash,
                contract=self.address,
            )

    async def transaction_confirmations(self, tx_hash: bytes) -> int | None:
        """Confirmations of a transaction, or ``None`` if it is not in the canonical chain."""
        async with _translate("reading a transaction receipt"):
            try:
                receipt = await self._w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
            except TransactionNotFound:
                return None
            if receipt is None:
                return None
            number = int(receipt["blockNumber"])
            block = await self._w3.eth.get_block(number)
            # A node may keep serving a receipt from a block that a reorg replaced.
            if _to_bytes(block["hash"]) != _to_bytes(receipt["blockHash"]):
                return None
            head = int(await self._w3.eth.block_number)
            return max(0, head - number + 1)

    # ------------------------------------------------------------------ writes

    async def anchor(self, day: date, root: bytes, size: int) -> AnchorReceipt:
        """Anchor ``day`` → (``root``, ``size``). Write-once: a second call raises
        ``chain.already_anchored``; only the owner may write (``chain.not_owner``)."""
        if self._account is None:
            raise ChainError("anchoring needs a signer", code="chain.invalid_input")
        if not isinstance(root, bytes) or len(root) != 32 or root == _ZERO_ROOT:
            raise ChainError("root must be 32 non-zero bytes", code="chain.invalid_input")
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size < 2**64:
            raise ChainError("size must fit in uint64", code="chain.invalid_input")
        await self._ensure_contract()
        number = day_number(day)
        what = f"anchoring {day.isoformat()}"
        fn = self._contract.functions.anchor(number, root, size)
        async with _translate(what):
            # Simulate first: a revert reason (already anchored, not owner) comes
            # back from eth_call before any transaction is signed or paid for.
            await fn.call({"from": self._account.address})
            gas = await fn.estimate_gas({"from": self._account.address})
            data = bytes.fromhex(
                self._contract.encode_abi("anchor", args=[number, root, size]).removeprefix("0x")
            )
            receipt = await _send(
                self._w3,
                self._account,
                bytes.fromhex(self.address[2:]),
                data,
                gas,
                self._receipt_timeout,
                self._poll_interval,
            )
            if receipt["status"] != 1:
                # Lost a race with another writer, or reverted for another reason.
                existing = await self.find_anchor(day)
                if existing is not None:
                    raise ChainError(f"{what}: already anchored", code="chain.already_anchored")
                raise ChainError(f"{what}: transaction reverted", code="chain.reverted")
            return AnchorReceipt(
                day=day,
                root=root,
                size=size,
                tx_hash=_to_bytes(receipt["transactionHash"]),
                block_number=int(receipt["blockNumber"]),
                contract=self.address,
            )


def _make_web3(rpc_url: str, timeout: float) -> AsyncWeb3[AsyncHTTPProvider]:
    provider = AsyncHTTPProvider(
        rpc_url,
        request_kwargs={"timeout": aiohttp.ClientTimeout(total=timeout)},
        # No silent retries: an unreachable chain should be reported promptly.
        exception_retry_configuration=None,
    )
    return AsyncWeb3(provider)


async def _send(
    w3: AsyncWeb3[AsyncHTTPProvider],
    account: EthereumAccount,
    to: bytes | None,
    data: bytes,
    gas: int,
    receipt_timeout: float,
    poll_interval: float,
) -> Any:
    chain_id = int(await w3.eth.chain_id)
    nonce = int(await w3.eth.get_transaction_count(account.address, "pending"))  # type: ignore[arg-type]
    latest = await w3.eth.get_block("latest")
    base_fee = int(latest.get("baseFeePerGas", 0))
    priority = int(await w3.eth.max_priority_fee)
    fields: list[Any] = [
        chain_id,
        nonce,
        priority,
        2 * base_fee + priority,
        gas + gas * GAS_MARGIN_PERCENT // 100,
        to or b"",
        0,
        data,
        [],
    ]
    raw = await account.sign_transaction(fields)
    tx_hash = await w3.eth.send_raw_transaction(raw)
    return await w3.eth.wait_for_transaction_receipt(
        tx_hash, timeout=receipt_timeout, poll_latency=poll_interval
    )
