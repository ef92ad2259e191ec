"""Operators: the people who run the centre, each with their own account,
roles and factors; no shared token.

- **Accounts.** The first security officers (two, so that the two-person
  rule can start) are created on the server with `cloudsign operator
  create-security-officer`; there is no default account. Security officers
  create the others; each new operator gets a one-time
  setup code, with which they choose their own password (Argon2id, verified
  off the event loop) and set up TOTP. Sign-in takes username, password and
  a TOTP code, counted by the guard per operator and per address.
- **Roles.** registration officer (identity proofing at the desk),
  revocation officer (revocations, notices), auditor (reads, writes
  nothing), security officer (manages operators).
- **Two-person rule.** The actions that hurt most are requested by one
  operator and carried out only when a second one, holding the needed role,
  approves: `register_action` names them and their executors (the app wires
  them), `request`/`approve`/`reject` run the procedure.
- **Every action** records the authenticated operator (never a name the
  client sends) as an `operator.action` event in the anchored log.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from cloudsign import totp
from cloudsign.clock import Clock
from cloudsign.errors import (
    CloudsignError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    UnauthorizedError,
    ValidationError,
)
from cloudsign.events import EventType, append_event
from cloudsign.guard import Guard, Limits
from cloudsign.operators.tables import approvals, operator_sessions, operators
from cloudsign.settings import OperatorSettings
from cloudsign.storage import Database
from cloudsign.web.client import client_address
from hsm_bridge import Sealer

#: Security officers the server CLI may create: two, so that the two-person
#: rule (adding a security officer needs a second one) can start.
BOOTSTRAP_OFFICERS: Final = 2
SETUP_CODE_BYTES: Final = 15
MIN_PASSWORD_CHARS: Final = 12
MAX_PASSWORD_CHARS: Final = 256


class Role(StrEnum):
    REGISTRATION = "registration_officer"
    REVOCATION = "revocation_officer"
    AUDITOR = "auditor"
    SECURITY = "security_officer"


class ApprovalPendingError(CloudsignError):
    """Not an error for the client: the action waits for a second operator."""

    code = "approval_pending"
    status = 202
    title = "Waiting for a second operator"

    def __init__(self, approval: Approval) -> None:
        super().__init__(f"a second operator must approve {approval.action}")
        self.approval = approval


@dataclass(frozen=True)
class Operator:
    id: str
    username: str
    display_name: str
    roles: frozenset[Role]
    status: str

    @property
    def actor(self) -> str:
        """How revocations and notices name who decided."""
        return f"operator:{self.username}"

    def has(self, role: Role) -> bool:
        return role in self.roles


@dataclass(frozen=True)
class Approval:
    id: str
    action: str
    payload: dict[str, Any]
    requested_by: str
    requested_at: datetime
    expires_at: datetime
    status: str
    decided_by: str | None
    result: dict[str, Any] | None


Executor = Callable[[Operator, Operator, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class _Action:
    role: Role
    execute: Executor


def _hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def _seed_aad(operator_id: str) -> bytes:
    return b"cloudsign/operator-totp/v1\x00" + operator_id.encode()


def _operator(row: Any) -> Operator:
    return Operator(
        id=row.id,
        username=row.username,
        display_name=row.display_name,
        roles=frozenset(Role(r) for r in row.roles),
        status=row.status,
    )


def check_password(password: str) -> str:
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise ValidationError(
            f"an operator password has {MIN_PASSWORD_CHARS}..{MAX_PASSWORD_CHARS} characters",
            field="password",
        )
    return password


class OperatorService:
    def __init__(
        self,
        db: Database,
        sealer: Sealer,
        guard: Guard,
        limits: Limits,
        settings: OperatorSettings,
        *,
        clock: Clock,
        totp_clock: Clock | None = None,
    ) -> None:
        self.db = db
        self.sealer = sealer
        self.guard = guard
        self.limits = limits
        self.settings = settings
        self.clock = clock
        # TOTP steps are read from their own clock so tests can step it.
        self.totp_clock = totp_clock or clock
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        )
        self._actions: dict[str, _Action] = {}

    # -- accounts -------------------------------------------------------------

    async def _hash_password(self, password: str) -> str:
        # Argon2id costs tens of milliseconds of CPU: never on the event loop.
        return await asyncio.to_thread(self._hasher.hash, password)

    async def _password_ok(self, stored: str | None, password: str) -> bool:
        if stored is None:
            return False
        try:
            return await asyncio.to_thread(self._hasher.verify, stored, password)
        except (VerificationError, InvalidHashError):
            return False

    async def bootstrap_security_officer(
        self, username: str, display_name: str, password: str
    ) -> str:
        """The server-side bootstrap of the two-person rule: one of the first
        `BOOTSTRAP_OFFICERS` security officers, refused once that many are
        active (then a new one needs a second officer's approval).
        Returns the TOTP provisioning URI (show it once, never log it)."""
        async with self.db.read() as conn:
            existing = (await conn.execute(select(operators.c.roles, operators.c.status))).all()
        officers = sum(
            1 for roles, status in existing if Role.SECURITY.value in roles and status != "disabled"
        )
        if officers >= BOOTSTRAP_OFFICERS:
            raise ConflictError(
                f"{BOOTSTRAP_OFFICERS} security officers exist: a new one needs their approval"
            )
        check_password(password)
        operator_id = str(uuid.uuid4())
        seed = totp.new_seed()
        sealed = await self.sealer.seal("totp", seed.encode(), _seed_aad(operator_id))
        now = self.clock()
        try:
            async with self.db.transaction() as conn:
                await conn.execute(
                    operators.insert().values(
                        id=operator_id,
                        username=username,
                        display_name=display_name,
                        roles=[Role.SECURITY.value],
                        status="active",
                        password_hash=await self._hash_password(password),
                        totp_sealed=sealed,
                        totp_confirmed_at=now,
                        created_at=now,
                    )
                )
                await append_event(
                    conn,
                    EventType.OPERATOR_CREATE,
                    owner_id=None,
                    data={
                        "operator": username,
                        "roles": [Role.SECURITY.value],
                        "by": "server-cli",
                    },
                    at=now,
                )
        except IntegrityError as e:
            raise ConflictError("an operator with this username exists") from e
        return totp.provisioning_uri(
            seed, name=username, issuer=self.settings.totp_issuer, period=self.settings.totp_period
        )

    async def create(
        self, by: Operator, username: str, display_name: str, roles: Collection[Role]
    ) -> tuple[Operator, str]:
        """A new operator in `setup` state and their one-time setup code.
        Adding a security officer is a two-person action (`operator.create`)."""
        self.require(by, Role.SECURITY)
        if not roles:
            raise ValidationError("an operator needs at least one role", field="roles")
        if Role.SECURITY in roles:
            raise ApprovalPendingError(
                await self.request(
                    by,
                    "operator.create",
                    {"username": username, "display_name": display_name, "roles": sorted(roles)},
                )
            )
        return await self._create(by, username, display_name, roles)

    async def _create(
        self, by: Operator, username: str, display_name: str, roles: Collection[Role]
    ) -> tuple[Operator, str]:
        operator_id = str(uuid.uuid4())
        code = secrets.token_urlsafe(SETUP_CODE_BYTES)
        now = self.clock()
        try:
            async with self.db.transaction() as conn:
                await conn.execute(
                    operators.insert().values(
                        id=operator_id,
                        username=username,
                        display_name=display_name,
                        roles=sorted(r.value for r in roles),
                        status="setup",
                        setup_code_hash=_hash(code),
                        setup_expires_at=now + self.settings.setup_ttl,
                        created_at=now,
                        created_by=by.id,
                    )
                )
                await append_event(
                    conn,
                    EventType.OPERATOR_CREATE,
                    owner_id=None,
                    data={
                        "operator": username,
                        "roles": sorted(r.value for r in roles),
                        "by": by.username,
                    },
                    at=now,
                )
        except IntegrityError as e:
            raise ConflictError("an operator with this username exists") from e
        created = Operator(operator_id, username, display_name, frozenset(roles), "setup")
        return created, code

    async def begin_setup(self, code: str, password: str) -> str:
        """The new operator chooses a password; returns their TOTP URI."""
        check_password(password)
        row = await self._setup_row(code)
        seed = totp.new_seed()
        sealed = await self.sealer.seal("totp", seed.encode(), _seed_aad(row.id))
        async with self.db.transaction() as conn:
            await conn.execute(
                update(operators)
                .where(operators.c.id == row.id, operators.c.status == "setup")
                .values(password_hash=await self._hash_password(password), totp_sealed=sealed)
            )
        return totp.provisioning_uri(
            seed,
            name=row.username,
            issuer=self.settings.totp_issuer,
            period=self.settings.totp_period,
        )

    async def finish_setup(self, code: str, otp: str) -> Operator:
        """The first TOTP code activates the account and spends the setup code."""
        row = await self._setup_row(code)
        if row.totp_sealed is None:
            raise ConflictError("choose a password first")
        await self._check_otp(row, otp)
        now = self.clock()
        async with self.db.transaction() as conn:
            await conn.execute(
                update(operators)
                .where(operators.c.id == row.id, operators.c.status == "setup")
                .values(status="active", totp_confirmed_at=now, setup_code_hash=None)
            )
            await append_event(
                conn,
                EventType.OPERATOR_ACTION,
                owner_id=None,
                data={"action": "operator.setup", "operator": row.username},
                at=now,
            )
        return Operator(
            row.id, row.username, row.display_name, frozenset(Role(r) for r in row.roles), "active"
        )

    async def _setup_row(self, code: str) -> Any:
        attempt = await self.guard.attempt(
            [(self.limits.activation, client_address()), (self.limits.address, client_address())],
            factor="operator-setup",
        )
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(operators).where(
                        operators.c.setup_code_hash == _hash(code),
                        operators.c.status == "setup",
                        operators.c.setup_expires_at > self.clock(),
                    )
                )
            ).first()
        if row is None:
            await self.guard.failure(attempt, "unknown or expired setup code")
            raise UnauthorizedError("setup code unknown or expired")
        await self.guard.success(attempt)
        return row

    async def sign_in(self, username: str, password: str, otp: str) -> tuple[Operator, str]:
        attempt = await self.guard.attempt(
            [(self.limits.operator, username), (self.limits.address, client_address())],
            factor="operator-signin",
        )
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(operators).where(
                        operators.c.username == username, operators.c.status == "active"
                    )
                )
            ).first()
        password_ok = await self._password_ok(row.password_hash if row else None, password)
        otp_ok = row is not None and password_ok and await self._otp_matches(row, otp)
        if row is None or not otp_ok:
            await self.guard.failure(attempt, "operator sign-in refused")
            raise UnauthorizedError("unknown operator, wrong password or wrong code")
        await self.guard.success(attempt)
        operator = _operator(row)
        token = secrets.token_urlsafe(32)
        now = self.clock()
        async with self.db.transaction() as conn:
            await conn.execute(
                operator_sessions.insert().values(
                    token_hash=_hash(token),
                    operator_id=operator.id,
                    created_at=now,
                    expires_at=now + self.settings.session_ttl,
                )
            )
            await append_event(
                conn,
                EventType.OPERATOR_SIGNIN,
                owner_id=None,
                data={"operator": operator.username},
                at=now,
            )
        return operator, token

    async def _otp_matches(self, row: Any, otp: str) -> bool:
        try:
            await self._check_otp(row, otp)
        except UnauthorizedError:
            return False
        return True

    async def _check_otp(self, row: Any, otp: str) -> None:
        if row.totp_sealed is None or not totp.well_formed(otp):
            raise UnauthorizedError("wrong code")
        seed = (await self.sealer.unseal("totp", row.totp_sealed, _seed_aad(row.id))).decode()
        step = totp.matching_step(
            seed,
            otp,
            self.totp_clock(),
            period=self.settings.totp_period,
            window=self.settings.totp_window,
        )
        if step is None:
            raise UnauthorizedError("wrong code")
        async with self.db.transaction() as conn:
            done = await conn.execute(
                update(operators)
                .where(
                    operators.c.id == row.id,
                    or_(operators.c.totp_last_step.is_(None), operators.c.totp_last_step < step),
                )
                .values(totp_last_step=step)
            )
        if done.rowcount != 1:
            raise UnauthorizedError("code already used")

    async def authenticate(self, token: str) -> Operator:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(operators)
                    .join(operator_sessions, operator_sessions.c.operator_id == operators.c.id)
                    .where(
                        operator_sessions.c.token_hash == _hash(token),
                        operator_sessions.c.revoked.is_(False),
                        operator_sessions.c.expires_at > self.clock(),
                        operators.c.status == "active",
                    )
                )
            ).first()
        if row is None:
            raise UnauthorizedError("operator session unknown or expired")
        return _operator(row)

    async def sign_out(self, token: str) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                update(operator_sessions)
                .where(operator_sessions.c.token_hash == _hash(token))
                .values(revoked=True)
            )

    async def all_operators(self) -> list[Operator]:
        async with self.db.read() as conn:
            rows = (await conn.execute(select(operators).order_by(operators.c.created_at))).all()
        return [_operator(r) for r in rows]

    async def disable(self, by: Operator, operator_id: str) -> Operator:
        self.require(by, Role.SECURITY)
        if operator_id == by.id:
            raise ConflictError("an operator cannot disable themselves")
        now = self.clock()
        async with self.db.transaction() as conn:
            row = (
                await conn.execute(select(operators).where(operators.c.id == operator_id))
            ).first()
            if row is None:
                raise NotFoundError("no such operator")
            await conn.execute(
                update(operators).where(operators.c.id == operator_id).values(status="disabled")
            )
            await conn.execute(
                update(operator_sessions)
                .where(operator_sessions.c.operator_id == operator_id)
                .values(revoked=True)
            )
            await self.record(conn, by, "operator.disable", {"target": row.username}, at=now)
        return Operator(
            row.id,
            row.username,
            row.display_name,
            frozenset(Role(r) for r in row.roles),
            "disabled",
        )

    @staticmethod
    def require(operator: Operator, *roles: Role) -> None:
        if not any(operator.has(r) for r in roles):
            names = " or ".join(r.value for r in roles)
            raise ForbiddenError(f"this needs the role {names}")

    @staticmethod
    async def record(
        conn: AsyncConnection,
        by: Operator,
        action: str,
        data: dict[str, Any],
        *,
        at: datetime,
        owner_id: str | None = None,
    ) -> None:
        """An operator action in the audit log, inside the caller's transaction."""
        await append_event(
            conn,
            EventType.OPERATOR_ACTION,
            owner_id=owner_id,
            data={"action": action, "operator": by.username, **data},
            at=at,
        )

    # -- two-person rule ------------------------------------------------------------

    def register_action(self, action: str, role: Role, execute: Executor) -> None:
        """An action only a second operator with `role` can carry out."""
        self._actions[action] = _Action(role, execute)

    async def request(self, by: Operator, action: str, payload: dict[str, Any]) -> Approval:
        if action not in self._actions and action != "operator.create":
            raise ValidationError("no such two-person action", field="action")
        now = self.clock()
        approval = Approval(
            id=str(uuid.uuid4()),
            action=action,
            payload=payload,
            requested_by=by.id,
            requested_at=now,
            expires_at=now + self.settings.approval_ttl,
            status="pending",
            decided_by=None,
            result=None,
        )
        async with self.db.transaction() as conn:
            await conn.execute(
                approvals.insert().values(
                    id=approval.id,
                    action=action,
                    payload=payload,
                    requested_by=by.id,
                    requested_at=now,
                    expires_at=approval.expires_at,
                    status="pending",
                )
            )
            await self.record(
                conn, by, "approval.request", {"approval": approval.id, "requested": action}, at=now
            )
        return approval

    async def pending(self) -> list[Approval]:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(approvals)
                    .where(approvals.c.status == "pending", approvals.c.expires_at > self.clock())
                    .order_by(approvals.c.requested_at)
                )
            ).all()
        return [_approval(r) for r in rows]

    async def decide(self, by: Operator, approval_id: str, *, approve: bool) -> Approval:
        """A second operator approves (the action runs) or rejects."""
        now = self.clock()
        async with self.db.read() as conn:
            row = (
                await conn.execute(select(approvals).where(approvals.c.id == approval_id))
            ).first()
        if row is None:
            raise NotFoundError("no such approval")
        if row.status != "pending" or row.expires_at <= now:
            raise ConflictError("this approval is no longer pending")
        if row.requested_by == by.id:
            raise ForbiddenError("a second operator must approve; not the one who asked")
        needed = (
            Role.SECURITY if row.action == "operator.create" else self._actions[row.action].role
        )
        self.require(by, needed)
        # Claim it first: two approvers racing run the action once.
        async with self.db.transaction() as conn:
            claimed = await conn.execute(
                update(approvals)
                .where(approvals.c.id == approval_id, approvals.c.status == "pending")
                .values(status="done" if approve else "rejected", decided_by=by.id, decided_at=now)
            )
            if claimed.rowcount != 1:
                raise ConflictError("this approval is no longer pending")
            await self.record(
                conn,
                by,
                "approval.approve" if approve else "approval.reject",
                {"approval": approval_id, "requested": row.action},
                at=now,
            )
        if not approve:
            return _approval(row, status="rejected", decided_by=by.id)
        requester = await self._by_id(row.requested_by)
        try:
            result = await self._run(row.action, requester, by, dict(row.payload))
        except CloudsignError as e:
            async with self.db.transaction() as conn:
                await conn.execute(
                    update(approvals)
                    .where(approvals.c.id == approval_id)
                    .values(status="failed", result={"error": e.code, "detail": e.detail[:300]})
                )
            raise
        async with self.db.transaction() as conn:
            await conn.execute(
                update(approvals).where(approvals.c.id == approval_id).values(result=result)
            )
        return _approval(row, status="done", decided_by=by.id, result=result)

    async def _run(
        self, action: str, requester: Operator, approver: Operator, payload: dict[str, Any]
    ) -> dict[str, Any]:
        if action == "operator.create":
            roles = [Role(r) for r in payload["roles"]]
            created, code = await self._create(
                requester, payload["username"], payload["display_name"], roles
            )
            return {"operator_id": created.id, "username": created.username, "setup_code": code}
        return await self._actions[action].execute(requester, approver, payload)

    async def _by_id(self, operator_id: str) -> Operator:
        async with self.db.read() as conn:
            row = (
                await conn.execute(select(operators).where(operators.c.id == operator_id))
            ).first()
        if row is None:
            raise NotFoundError("no such operator")
        return _operator(row)


def _approval(row: Any, **over: Any) -> Approval:
    values = {
        "id": row.id,
        "action": row.action,
        "payload": dict(row.payload),
        "requested_by": row.requested_by,
        "requested_at": row.requested_at,
        "expires_at": row.expires_at,
        "status": row.status,
        "decided_by": row.decided_by,
        "result": row.result,
    }
    values.update(over)
    return Approval(**values)


__all__ = [
    "Approval",
    "ApprovalPendingError",
    "Operator",
    "OperatorService",
    "Role",
]
