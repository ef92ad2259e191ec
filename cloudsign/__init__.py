"""cloudsign: the cloud digital-signature service."""
