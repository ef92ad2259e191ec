"""The mobile channel's settings, read from the service's flat keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from cloudsign.settings import Settings


@dataclass(frozen=True)
class MobileSettings:
    public_url: str
    #: The WebAuthn relying party id: the public URL's host unless set.
    rp_id: str
    rp_name: str
    #: Origins whose WebAuthn answers are accepted: the public URL's.
    origins: list[str]
    challenge_ttl: timedelta
    request_ttl: timedelta
    max_devices: int
    max_request_documents: int
    #: Hosts (and their subdomains) a push subscription may point at.
    push_services: tuple[str, ...]
    push_allow_loopback: bool
    #: Who the push services may contact about this sender (VAPID `sub`).
    push_contact: str
    #: eGov QR signing: loopback http services accepted (tests only).
    egov_allow_loopback: bool
    egov_max_response_bytes: int

    @classmethod
    def from_settings(cls, s: Settings) -> MobileSettings:
        url = urlsplit(s.effective_public_url)
        return cls(
            public_url=s.effective_public_url,
            rp_id=s.webauthn_rp_id or (url.hostname or "localhost"),
            rp_name=s.ca_organisation,
            origins=[f"{url.scheme}://{url.netloc}"],
            challenge_ttl=timedelta(seconds=s.device_challenge_ttl_seconds),
            request_ttl=timedelta(seconds=s.signing_request_ttl_seconds),
            max_devices=s.max_devices,
            max_request_documents=s.max_request_documents,
            push_services=tuple(h.strip().lower() for h in s.push_services.split(",") if h.strip()),
            push_allow_loopback=s.push_allow_loopback,
            push_contact=s.push_contact or f"mailto:pki@{url.hostname or 'localhost'}",
            egov_allow_loopback=s.egov_allow_loopback,
            egov_max_response_bytes=s.egov_max_response_bytes,
        )
