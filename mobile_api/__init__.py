"""The mobile channel's server side: phones bound as WebAuthn devices (the
app's possession factor), and signing requests started on another screen
and approved on the phone (animated QR, inbox), bound to the exact hashes."""

from mobile_api.binding import DeskAccess, DeviceBinding
from mobile_api.devices import Device, DeviceService
from mobile_api.egov import EgovQr
from mobile_api.push import PushService
from mobile_api.relying import Callbacks, RelyingParties, RelyingParty
from mobile_api.requests import SigningRequest, SigningRequests
from mobile_api.settings import MobileSettings

__all__ = [
    "Callbacks",
    "DeskAccess",
    "Device",
    "DeviceBinding",
    "DeviceService",
    "EgovQr",
    "MobileSettings",
    "PushService",
    "RelyingParties",
    "RelyingParty",
    "SigningRequest",
    "SigningRequests",
]
