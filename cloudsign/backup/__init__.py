"""cloudsign.backup: the key ceremony, HSM backup archives under the split
archive key, and restore into a new token (docs/backup.md)."""

from cloudsign.backup.service import Custodian, create_backup, restore_backup, run_ceremony

__all__ = ["Custodian", "create_backup", "restore_backup", "run_ceremony"]
