"""Typed application keys: the one place the app's shared resources are named."""

from __future__ import annotations

from aiohttp import web

from cloudsign.ca.authority import CertificateAuthority
from cloudsign.enrolment import EnrolmentService
from cloudsign.settings import Settings
from cloudsign.storage import Database
from hsm_bridge import HsmBridge

SETTINGS = web.AppKey("settings", Settings)
DATABASE = web.AppKey("database", Database)
HSM = web.AppKey("hsm", HsmBridge)
CA = web.AppKey("ca", CertificateAuthority)
ENROLMENT = web.AppKey("enrolment", EnrolmentService)
