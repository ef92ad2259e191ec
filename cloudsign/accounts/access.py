"""Who is asking: the owner behind a request's access token."""

from __future__ import annotations

from aiohttp import web

from cloudsign.accounts.service import Owner
from cloudsign.appkeys import ACCOUNTS
from cloudsign.web.auth import owner_token


async def current_owner(request: web.Request) -> Owner:
    """The owner of the Bearer token or portal session (401 without one)."""
    return await request.app[ACCOUNTS].authenticate(owner_token(request))
