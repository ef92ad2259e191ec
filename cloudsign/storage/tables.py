"""Every table of the service, gathered on the one `metadata`.

Feature packages keep their tables next to their code (on
`cloudsign.storage.schema.metadata`); `all_tables()` imports them all, which
migrations and the schema test rely on. Importing them by name keeps storage
below the features: nothing here imports a feature at module load.
"""

from __future__ import annotations

import importlib
from typing import Final

from sqlalchemy import MetaData

from cloudsign.storage.schema import metadata

#: Modules that define tables, besides storage.schema itself (in foreign-key order).
TABLE_MODULES: Final[tuple[str, ...]] = (
    "cloudsign.accounts.tables",
    "cloudsign.operators.tables",
    "cloudsign.guard.tables",
    "cloudsign.proofing.tables",
    "cloudsign.credentials.tables",
    "cloudsign.ca.tables",
    "cloudsign.faces.tables",
    "cloudsign.signing.tables",
    "cloudsign.audit.tables",
    "cloudsign.status.tables",
    "mobile_api.tables",
)


def all_tables() -> MetaData:
    for name in TABLE_MODULES:
        importlib.import_module(name)
    return metadata
