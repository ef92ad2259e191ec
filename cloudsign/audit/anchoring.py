"""Anchoring each day's checkpoint on Ethereum through the HSM's secp256k1 key.

This module owns the chain side of the service: the embedded anvil (started
when no `chain_rpc_url` is set, state in `<data_dir>/chain/`), deploying the
`AuditAnchor` contract once (its address kept in `log_head`), funding the HSM
address on a dev chain, and the per-day anchor state machine stored in
`log_anchors`:

    (none) --anchor tx mined--> submitted --depth reached--> confirmed
    submitted/confirmed --reorg dropped the tx--> anchored again

Exactly once per day: the contract refuses a second write for a day, and a
process claims a day in the database before sending (a lease, so a crashed
claimant does not block it). Every step starts by reading the contract, so
a transaction mined before a crash is recorded, never resent. Failures (chain
down, node refusing) are retried with back-off by :meth:`Anchorer.run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Final

import aiohttp
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from audit_chain import AnchorClient, AnvilProcess, ChainError
from audit_chain.errors import AnvilError, AuditChainError
from audit_chain.ethereum import address_from_public_key
from cloudsign.audit.log import AuditLog, CheckpointRecord
from cloudsign.audit.signers import HsmTransactionSigner
from cloudsign.audit.tables import HEAD_ID, log_anchors, log_head
from cloudsign.clock import Clock, utc_now
from cloudsign.settings import ChainSettings
from cloudsign.storage import Database
from hsm_bridge import HsmError, ServiceKeys

log = logging.getLogger(__name__)

#: Chain ids of local development chains (anvil, hardhat): funding and mining allowed.
DEV_CHAIN_IDS: Final = frozenset({31337})
DEV_BALANCE_WEI: Final = 10**20
#: Anchors of the last days are re-read each round, to catch a reorg after confirmation.
RECHECK_DAYS: Final = 7
#: A claimed day is left to its claimant this long before another process may retry it.
CLAIM_LEASE: Final = timedelta(minutes=2)
MAX_BACKOFF_SECONDS: Final = 60.0
ANVIL_STATE_FILE: Final = "anvil-state.json"


@dataclass(frozen=True)
class AnchorState:
    day: date
    contract: str
    status: str
    tx_hash: str | None
    block_number: int | None
    confirmations: int
    attempts: int
    last_error: str | None

    def to_json_obj(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "contract": self.contract,
            "status": self.status,
            "tx_hash": self.tx_hash,
            "block_number": self.block_number,
            "confirmations": self.confirmations,
        }


def _state(row: Any) -> AnchorState:
    return AnchorState(
        day=row["day"],
        contract=row["contract"],
        status=row["status"],
        tx_hash=row["tx_hash"],
        block_number=row["block_number"],
        confirmations=int(row["confirmations"]),
        attempts=int(row["attempts"]),
        last_error=row["last_error"],
    )


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        # As a listener binds: connections of a previous process left in
        # TIME_WAIT do not make the port taken, a listening socket does.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


#: A previous anvil of this data dir may still be dumping its state after its
#: parent died (it gets SIGTERM then); give it this long to let go of the port.
PORT_RELEASE_SECONDS: Final = 10.0
RPC_TIMEOUT: Final = aiohttp.ClientTimeout(total=10)


async def _port_freed(host: str, port: int) -> bool:
    deadline = asyncio.get_running_loop().time() + PORT_RELEASE_SECONDS
    while not _port_free(host, port):
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


class Anchorer:
    """Anchors closed days; one per process, all processes may run it."""

    def __init__(
        self,
        db: Database,
        bridge: ServiceKeys,
        settings: ChainSettings,
        audit_log: AuditLog,
        http: aiohttp.ClientSession,
        *,
        now: Clock = utc_now,
    ) -> None:
        self.db = db
        self.log = audit_log
        self.settings = settings
        self.depth = settings.confirmations
        self.poll_seconds = settings.poll_interval.total_seconds()
        self._bridge = bridge
        self._now = now
        self._signer: HsmTransactionSigner | None = None
        self._anvil: AnvilProcess | None = None
        self._rpc_url = settings.rpc_url
        self._client: AnchorClient | None = None
        #: Asked right before an anchoring transaction is sent: does this
        #: process still lead (cloudsign/storage/leader.py)? None: always.
        self.fence: Callable[[], Awaitable[bool]] | None = None
        self._chain_id: int | None = None
        self._http = http

    def __repr__(self) -> str:
        return f"Anchorer(rpc={self._rpc_url or 'embedded'}, contract={self.contract_address})"

    async def start(self) -> None:
        """The HSM key (generated once); the chain is connected lazily by step()."""
        self._signer = await HsmTransactionSigner.create(self._bridge)

    @property
    def address(self) -> str:
        if self._signer is None:
            raise ChainError("anchorer not started", code="chain.invalid_input")
        return address_from_public_key(self._signer.public_key)

    @property
    def contract_address(self) -> str | None:
        return None if self._client is None else str(self._client.address)

    @property
    def rpc_url(self) -> str | None:
        return self._rpc_url or None

    @property
    def chain_id(self) -> int | None:
        return self._chain_id

    @property
    def is_dev_chain(self) -> bool:
        return self._anvil is not None or self._chain_id in DEV_CHAIN_IDS

    # -- chain connection --------------------------------------------------

    async def _rpc(self, method: str, params: list[Any]) -> Any:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        try:
            async with self._http.post(self._rpc_url, json=body, timeout=RPC_TIMEOUT) as response:
                answer = await response.json(content_type=None)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as e:
            raise ChainError(f"{method}: chain unreachable ({e})", code="chain.unreachable") from e
        if not isinstance(answer, dict) or "error" in answer:
            raise ChainError(f"{method} failed: {answer}", code="chain.rejected")
        return answer.get("result")

    async def _start_embedded(self) -> None:
        if self._anvil is not None and self._anvil.running():
            return
        port = self.settings.anvil_port
        if port and not await _port_freed("127.0.0.1", port):
            raise AnvilError(
                f"port {port} for the embedded anvil is taken; set chain_anvil_port",
                code="anvil.start_failed",
            )
        chain_dir = self.settings.chain_dir
        node = AnvilProcess(
            chain_dir / ANVIL_STATE_FILE,
            port=port or None,
            state_interval=1,
            log_path=chain_dir / "anvil.log",
        )
        chain_dir.mkdir(parents=True, exist_ok=True)
        # Launched from the event loop's thread, which lives as long as the
        # process: anvil's parent-death signal follows that thread.
        node.launch()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, node.wait_ready)
        self._anvil = node
        self._rpc_url = node.rpc_url
        log.info("embedded anvil at %s (state in %s)", node.rpc_url, chain_dir)

    async def _acceptable_chain_id(self) -> int:
        chain_id = int(await self._rpc("eth_chainId", []), 16)
        if chain_id in DEV_CHAIN_IDS and self._anvil is None and not self.settings.allow_dev_chain:
            # An anchor on someone's local anvil proves nothing to an auditor.
            raise ChainError(
                f"chain_rpc_url answers with chain id {chain_id}, a local development "
                "chain: refused outside development mode",
                code="chain.development_chain",
            )
        return chain_id

    async def _connect(self) -> AnchorClient:
        """The contract client: embedded chain up, HSM address funded on a dev
        chain, contract deployed once and remembered."""
        if not self.settings.rpc_url:
            await self._start_embedded()
        if self._client is not None:
            return self._client
        assert self._signer is not None
        self._chain_id = await self._acceptable_chain_id()
        if self.is_dev_chain:
            balance = int(await self._rpc("eth_getBalance", [self.address, "latest"]), 16)
            if balance < DEV_BALANCE_WEI // 10:
                await self._rpc("anvil_setBalance", [self.address, hex(DEV_BALANCE_WEI)])
        address = self.settings.contract_address or await self._remembered_contract()
        if address and not await self._has_code(address):
            if not self.is_dev_chain:
                raise ChainError(f"no contract at {address}", code="chain.no_contract")
            log.warning("contract %s is gone from the dev chain; deploying anew", address)
            address = None
        if address:
            client = AnchorClient(self._rpc_url, address, signer=self._signer)
        else:
            client = await AnchorClient.deploy(self._rpc_url, self._signer)
            client = await self._remember_contract(client)
        owner = await client.owner()
        if owner.lower() != self.address.lower():
            log.error("contract %s is owned by %s, not this log's key", client.address, owner)
        self._client = client
        return client

    async def _has_code(self, address: str) -> bool:
        code = await self._rpc("eth_getCode", [address, "latest"])
        return isinstance(code, str) and code not in ("0x", "0x0", "")

    async def _remembered_contract(self) -> str | None:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(log_head.c.contract_address, log_head.c.chain_id).where(
                        log_head.c.id == HEAD_ID
                    )
                )
            ).first()
        if row is None or row[0] is None:
            return None
        if row[1] is not None and int(row[1]) != self._chain_id:
            log.warning("remembered contract is on chain %s, not %s", row[1], self._chain_id)
            return None
        return str(row[0])

    async def _remember_contract(self, client: AnchorClient) -> AnchorClient:
        """Keep the first deployment recorded; a racing deployment is dropped."""
        async with self.db.transaction() as conn:
            await self.log._lock_head(conn)
            current = await self._remembered_contract_in(conn)
            if current is not None and await self._has_code(current):
                await client.aclose()
                return AnchorClient(self._rpc_url, current, signer=self._signer)
            await conn.execute(
                update(log_head)
                .where(log_head.c.id == HEAD_ID)
                .values(contract_address=str(client.address), chain_id=self._chain_id)
            )
        log.info("deployed AuditAnchor at %s on chain %s", client.address, self._chain_id)
        return client

    async def _remembered_contract_in(self, conn: Any) -> str | None:
        row = (
            await conn.execute(
                select(log_head.c.contract_address, log_head.c.chain_id).where(
                    log_head.c.id == HEAD_ID
                )
            )
        ).first()
        if row is None or row[0] is None or int(row[1] or -1) != self._chain_id:
            return None
        return str(row[0])

    async def _disconnect(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- anchoring ---------------------------------------------------------

    async def anchors(self, since: date | None = None) -> list[AnchorState]:
        stmt = select(log_anchors).order_by(log_anchors.c.day)
        if since is not None:
            stmt = stmt.where(log_anchors.c.day >= since)
        async with self.db.read() as conn:
            return [_state(r) for r in (await conn.execute(stmt)).mappings().all()]

    async def last_confirmed_day(self) -> date | None:
        """The latest day whose checkpoint is confirmed on chain."""
        stmt = select(func.max(log_anchors.c.day)).where(log_anchors.c.status == "confirmed")
        async with self.db.read() as conn:
            day: date | None = (await conn.execute(stmt)).scalar_one_or_none()
        return day

    async def reachable(self) -> int:
        """The chain's head block, asked now (`/readyz`); raises when the
        chain does not answer or was never connected."""
        if not self._rpc_url:
            raise ChainError("chain not connected yet", code="chain.unreachable")
        if self._chain_id is None:
            await self._acceptable_chain_id()
        return int(await self._rpc("eth_blockNumber", []), 16)

    async def anchor_state(self, day: date) -> AnchorState | None:
        async with self.db.read() as conn:
            row = (
                (await conn.execute(select(log_anchors).where(log_anchors.c.day == day)))
                .mappings()
                .one_or_none()
            )
        return None if row is None else _state(row)

    async def step(self) -> list[AnchorState]:
        """One round: connect, anchor or re-check every day that needs it."""
        try:
            client = await self._connect()
        except (AuditChainError, OSError) as e:
            await self._disconnect()
            raise ChainError(f"chain not available: {e}", code="chain.unreachable") from e
        try:
            return await self._anchor_days(client)
        except ChainError as e:
            if e.code in ("chain.unreachable", "chain.no_contract"):
                await self._disconnect()
            raise

    async def _anchor_days(self, client: AnchorClient) -> list[AnchorState]:
        states = {s.day: s for s in await self.anchors()}
        recent = self.log.clock.day_of(self._now()) - timedelta(days=RECHECK_DAYS)
        done: list[AnchorState] = []
        for cp in await self.log.checkpoints():
            state = states.get(cp.day)
            if state is not None and state.status == "confirmed" and cp.day < recent:
                continue
            if state is not None and state.status == "conflict":
                continue
            done.append(await self._anchor_day(client, cp, state))
        return done

    async def _anchor_day(
        self, client: AnchorClient, cp: CheckpointRecord, state: AnchorState | None
    ) -> AnchorState:
        day = cp.day
        found = await client.find_anchor(day)
        if found is not None:
            if found.root != cp.root or found.size != cp.tree_size:
                log.error(
                    "day %s is anchored with another root/size on chain (%s, %d)",
                    day,
                    found.root.hex(),
                    found.size,
                )
                return await self._record(
                    day, client, "conflict", None, found.block_number, found.confirmations,
                    error="on-chain root differs from the checkpoint",
                )  # fmt: skip
            if found.confirmations < self.depth and self.is_dev_chain:
                # A dev chain mines only on transactions; move it on so depth accrues.
                await self._rpc("anvil_mine", [hex(self.depth - found.confirmations)])
                found = await client.find_anchor(day) or found
            tx = "0x" + found.tx_hash.hex() if found.tx_hash else None
            if tx is None and state is not None:
                tx = state.tx_hash
            status = "confirmed" if found.confirmations >= self.depth else "submitted"
            if state is None or state.status != status or state.tx_hash != tx:
                log.info("day %s anchor %s (block %d)", day, status, found.block_number)
            return await self._record(
                day, client, status, tx, found.block_number, found.confirmations
            )
        if state is not None and state.tx_hash and state.status in ("submitted", "confirmed"):
            log.warning(
                "the anchor of %s (tx %s) left the chain; anchoring again", day, state.tx_hash
            )
        if self.fence is not None and not await self.fence():
            raise ChainError(f"day {day}: this process no longer leads", code="chain.not_leader")
        if not await self._claim(day, client):
            assert state is not None
            return state
        try:
            receipt = await client.anchor(day, cp.root, cp.tree_size)
        except ChainError as e:
            if e.code == "chain.already_anchored":
                # Another process won the race; the next round records its anchor.
                return await self._record(day, client, "pending", None, None, 0, error=e.code)
            await self._record(day, client, "pending", None, None, 0, error=e.message[:400])
            raise
        log.info("day %s anchored in block %d", day, receipt.block_number)
        return await self._record(
            day, client, "submitted", "0x" + receipt.tx_hash.hex(), receipt.block_number, 1
        )

    async def _claim(self, day: date, client: AnchorClient) -> bool:
        now = self._now()
        try:
            async with self.db.transaction() as conn:
                result = await conn.execute(
                    update(log_anchors)
                    .where(
                        log_anchors.c.day == day,
                        (log_anchors.c.status != "pending")
                        | (log_anchors.c.updated_at < now - CLAIM_LEASE)
                        | (log_anchors.c.last_error.is_not(None)),
                    )
                    .values(
                        status="pending",
                        attempts=log_anchors.c.attempts + 1,
                        updated_at=now,
                        last_error=None,
                        contract=str(client.address),
                    )
                )
                if result.rowcount == 1:
                    return True
                exists = (
                    await conn.execute(select(log_anchors.c.day).where(log_anchors.c.day == day))
                ).first()
                if exists is not None:
                    return False
                await conn.execute(
                    log_anchors.insert().values(
                        day=day,
                        contract=str(client.address),
                        status="pending",
                        confirmations=0,
                        attempts=1,
                        updated_at=now,
                    )
                )
                return True
        except IntegrityError:
            return False  # another process claimed it first

    async def _record(
        self,
        day: date,
        client: AnchorClient,
        status: str,
        tx_hash: str | None,
        block: int | None,
        confirmations: int,
        *,
        error: str | None = None,
    ) -> AnchorState:
        now = self._now()
        values: dict[str, Any] = {
            "contract": str(client.address),
            "status": status,
            "tx_hash": tx_hash,
            "block_number": block,
            "confirmations": confirmations,
            "last_error": error,
            "updated_at": now,
        }
        with contextlib.suppress(IntegrityError):
            async with self.db.transaction() as conn:
                result = await conn.execute(
                    update(log_anchors).where(log_anchors.c.day == day).values(**values)
                )
                if result.rowcount != 1:
                    await conn.execute(log_anchors.insert().values(day=day, attempts=0, **values))
        state = await self.anchor_state(day)
        assert state is not None
        return state

    async def head_block(self) -> int | None:
        if self._client is None:
            return None
        try:
            return await self._client.head()
        except ChainError:
            return None

    # -- background --------------------------------------------------------

    async def run(self) -> None:
        """Anchor forever: every poll interval, with back-off while failing.
        A round reads and writes the database too: its errors are retried
        like the chain's (asyncpg raises a refused connection as OSError, a
        query cut off by a dying server as SQLAlchemyError)."""
        failures = 0
        while True:
            try:
                await self.step()
                failures = 0
            except (AuditChainError, HsmError, SQLAlchemyError, OSError) as e:
                failures += 1
                level = logging.WARNING if failures in (1, 10) or failures % 100 == 0 else 10
                log.log(level, "anchoring failed (attempt %d): %s", failures, e)
            delay = self.poll_seconds * (2 ** min(failures, 10)) if failures else self.poll_seconds
            await asyncio.sleep(min(delay, max(self.poll_seconds, MAX_BACKOFF_SECONDS)))

    async def close(self) -> None:
        await self._disconnect()
        if self._anvil is not None:
            node, self._anvil = self._anvil, None
            await asyncio.get_running_loop().run_in_executor(None, node.stop)

    def kill_embedded_chain(self) -> None:
        """Hard-kill the embedded anvil (tests: a crash loses nothing)."""
        if self._anvil is not None:
            self._anvil.kill()
