"""cloudsign: the cloud digital-signature service."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cloudsign")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0"
