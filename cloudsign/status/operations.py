"""What operators do with certificate status, and the two-person rule on
the parts that hurt most.

A revocation officer revokes one certificate, or a few at once, and
publishes compromise notices. Revoking on the ground of a CA compromise,
revoking more than `bulk_revocation_threshold` certificates at once, and
publishing a CA-compromise notice wait for a second operator's approval
(`OperatorService.request`); the approving operator's action runs them.
The actor recorded is always the authenticated operator.
"""

from __future__ import annotations

from typing import Any

from cloudsign.operators import ApprovalPendingError, Operator, OperatorService, Role
from cloudsign.status.notices import Notice
from cloudsign.status.reasons import RevocationReason, parse_reason
from cloudsign.status.revocation import Revocation, normalise_serial
from cloudsign.status.services import StatusServices

REVOKE_CA_COMPROMISE = "revocation.ca_compromise"
REVOKE_BULK = "revocation.bulk"
NOTICE_CA_COMPROMISE = "notice.ca_compromise"


def _actor(requester: Operator, approver: Operator | None) -> str:
    if approver is None:
        return requester.actor
    return f"{requester.actor}+{approver.username}"


class StatusOperations:
    def __init__(
        self, status: StatusServices, operators: OperatorService, *, bulk_threshold: int
    ) -> None:
        self.status = status
        self.operators = operators
        self.bulk_threshold = bulk_threshold
        operators.register_action(REVOKE_CA_COMPROMISE, Role.REVOCATION, self._revoke_approved)
        operators.register_action(REVOKE_BULK, Role.REVOCATION, self._bulk_approved)
        operators.register_action(NOTICE_CA_COMPROMISE, Role.SECURITY, self._notice_approved)

    async def revoke(
        self, by: Operator, serial: str, reason: str, reference: str | None
    ) -> Revocation:
        OperatorService.require(by, Role.REVOCATION)
        code = parse_reason(reason)
        hex_serial = normalise_serial(serial)
        if code is RevocationReason.CA_COMPROMISE:
            raise ApprovalPendingError(
                await self.operators.request(
                    by,
                    REVOKE_CA_COMPROMISE,
                    {"serial": hex_serial, "reason": reason, "reference": reference},
                )
            )
        return await self.status.revocation.revoke(hex_serial, code, by.actor, reference=reference)

    async def revoke_many(
        self, by: Operator, serials: list[str], reason: str, reference: str | None
    ) -> list[Revocation]:
        OperatorService.require(by, Role.REVOCATION)
        code = parse_reason(reason)
        hex_serials = list(dict.fromkeys(normalise_serial(s) for s in serials))
        if len(hex_serials) > self.bulk_threshold or code is RevocationReason.CA_COMPROMISE:
            raise ApprovalPendingError(
                await self.operators.request(
                    by,
                    REVOKE_BULK,
                    {"serials": hex_serials, "reason": reason, "reference": reference},
                )
            )
        return [
            await self.status.revocation.revoke(s, code, by.actor, reference=reference)
            for s in hex_serials
        ]

    async def publish(
        self,
        by: Operator,
        *,
        title: str,
        summary: str,
        measures: str,
        serials: list[str],
        ca_compromise: bool,
    ) -> Notice:
        OperatorService.require(by, Role.REVOCATION, Role.SECURITY)
        if ca_compromise:
            raise ApprovalPendingError(
                await self.operators.request(
                    by,
                    NOTICE_CA_COMPROMISE,
                    {
                        "title": title,
                        "summary": summary,
                        "measures": measures,
                        "serials": serials,
                    },
                )
            )
        return await self.status.notices.publish(
            title=title, summary=summary, measures=measures, serials=serials, actor=by.actor
        )

    # -- run when a second operator approves ----------------------------------------------

    async def _revoke_approved(
        self, requester: Operator, approver: Operator, payload: dict[str, Any]
    ) -> dict[str, Any]:
        done = await self.status.revocation.revoke(
            payload["serial"],
            payload["reason"],
            _actor(requester, approver),
            reference=payload.get("reference"),
        )
        return done.to_json()

    async def _bulk_approved(
        self, requester: Operator, approver: Operator, payload: dict[str, Any]
    ) -> dict[str, Any]:
        actor = _actor(requester, approver)
        done = [
            await self.status.revocation.revoke(
                s, payload["reason"], actor, reference=payload.get("reference")
            )
            for s in payload["serials"]
        ]
        return {"revoked": [r.to_json() for r in done]}

    async def _notice_approved(
        self, requester: Operator, approver: Operator, payload: dict[str, Any]
    ) -> dict[str, Any]:
        notice = await self.status.notices.publish(
            title=payload["title"],
            summary=payload["summary"],
            measures=payload["measures"],
            serials=payload["serials"],
            actor=_actor(requester, approver),
        )
        return notice.to_json()
