"""Who is asking: the owner behind a request's access token, and the fields
of a login (the API's and the portal's)."""

from __future__ import annotations

from aiohttp import web

from cloudsign.accounts.service import Owner
from cloudsign.appkeys import ACCOUNTS
from cloudsign.web.auth import owner_token
from cloudsign.web.inputs import Fields


async def current_owner(request: web.Request) -> Owner:
    """The owner of the Bearer token or portal session (401 without one)."""
    return await request.app[ACCOUNTS].authenticate(owner_token(request))


def login_fields(body: Fields) -> tuple[str, str]:
    """`{iin, otp}` of a login."""
    body.only({"iin", "otp"})
    return body.digits("iin", min_len=12), body.digits("otp", min_len=6, max_len=8)
