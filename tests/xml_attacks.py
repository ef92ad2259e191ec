"""Hostile XML for the tests of everything that parses it (XAdES signing,
XML validation): the billion laughs, and a local server that records every
request, which an external entity or DTD would make."""

from __future__ import annotations

from aiohttp import web

BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + b"".join(
        b' <!ENTITY lol%d "%s">\n' % (i, (b"&lol%s;" % (b"" if i == 1 else b"%d" % (i - 1))) * 10)
        for i in range(1, 10)
    )
    + b"]>\n<lolz>&lol9;</lolz>\n"
)


async def fetch_counter() -> tuple[web.AppRunner, str, list[str]]:
    """A local HTTP server that records every request (an XXE would call it)."""
    hits: list[str] = []

    async def record(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(text='<!ENTITY leak "leaked">', content_type="application/xml-dtd")

    server = web.Application()
    server.router.add_get("/{tail:.*}", record)
    runner = web.AppRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}", hits
