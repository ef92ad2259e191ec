"""Storage: schema, engine and migrations."""

from cloudsign.storage.database import Database

__all__ = ["Database"]
