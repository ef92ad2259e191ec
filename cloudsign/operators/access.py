"""Which operator is asking, and whether they may."""

from __future__ import annotations

from aiohttp import web

from cloudsign.appkeys import OPERATORS
from cloudsign.operators.service import Operator, OperatorService, Role
from cloudsign.web.auth import operator_token


async def current_operator(request: web.Request, *roles: Role) -> Operator:
    """The signed-in operator (401 without a session), holding one of
    `roles` if any are named (403 otherwise)."""
    operator = await request.app[OPERATORS].authenticate(operator_token(request))
    if roles:
        OperatorService.require(operator, *roles)
    return operator
