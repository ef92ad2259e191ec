"""Typed application keys: the one place the app's shared resources are named."""

from __future__ import annotations

from aiohttp import web

from biometrics import FaceWorkerPool
from cloudsign.ca.authority import CertificateAuthority
from cloudsign.enrolment import EnrolmentService
from cloudsign.faces import FaceService
from cloudsign.settings import Settings
from cloudsign.signing.service import SigningService
from cloudsign.storage import Database
from hsm_bridge import HsmBridge

SETTINGS = web.AppKey("settings", Settings)
DATABASE = web.AppKey("database", Database)
HSM = web.AppKey("hsm", HsmBridge)
CA = web.AppKey("ca", CertificateAuthority)
ENROLMENT = web.AppKey("enrolment", EnrolmentService)
FACE_POOL = web.AppKey("face_pool", FaceWorkerPool)
FACES = web.AppKey("faces", FaceService)
SIGNING = web.AppKey("signing", SigningService)
