"""Public PKI publication: the CA certificates the issued certificates point at."""

from __future__ import annotations

from aiohttp import web

from cloudsign.appkeys import CA
from cloudsign.ca.x509 import to_pem

routes = web.RouteTableDef()


@routes.get("/pki/ca/{which:root|issuing}.cer")
async def ca_der(request: web.Request) -> web.Response:
    ca = request.app[CA]
    cert = ca.root if request.match_info["which"] == "root" else ca.issuing
    return web.Response(body=cert.dump(), content_type="application/pkix-cert")


@routes.get("/pki/ca/{which:root|issuing}.pem")
async def ca_pem(request: web.Request) -> web.Response:
    ca = request.app[CA]
    cert = ca.root if request.match_info["which"] == "root" else ca.issuing
    return web.Response(text=to_pem(cert), content_type="application/x-pem-file")
