"""`cloudsign ceremony` and `cloudsign backup create|restore`.

Passphrases are typed (twice at the ceremony) unless `--passphrase-file
NAME=FILE` points at a file holding one, which is meant for drills and
tests; nothing here prints or logs a passphrase or a share.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cloudsign.backup.service import Custodian, create_backup, restore_backup, run_ceremony
from cloudsign.errors import ConfigurationError
from cloudsign.instance import ServiceKeyMaker
from cloudsign.settings import Settings
from hsm_bridge import Secret
from hsm_bridge.backup import BackupError
from hsm_bridge.shares import MIN_PASSPHRASE_CHARS, ShareError

SettingsLoader = Callable[[argparse.Namespace], Settings]


def _refusals(fn: Callable[..., int]) -> Callable[..., int]:
    """Share and archive refusals as one line on stderr and exit code 2,
    like the CLI's own errors (they name the problem, never a secret)."""

    def run(*args: Any) -> int:
        try:
            return fn(*args)
        except (ShareError, BackupError) as e:
            print(f"cloudsign: {e}", file=sys.stderr)
            return 2

    return run


def _actor() -> str:
    return f"operator:cli:{getpass.getuser()}"


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values or []:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            raise ConfigurationError(f"{what} is NAME=PATH, got {value!r}")
        if name in out:
            raise ConfigurationError(f"{what} {name!r} given twice")
        out[name] = rest
    return out


def _passphrase(name: str, files: dict[str, str], *, confirm: bool) -> Secret:
    if name in files:
        try:
            return Secret(Path(files[name]).read_text().strip("\n"))
        except OSError as e:
            raise ConfigurationError(f"cannot read the passphrase file for {name!r}") from e
    first = getpass.getpass(f"passphrase of {name} (at least {MIN_PASSPHRASE_CHARS} characters): ")
    if confirm and getpass.getpass(f"passphrase of {name} again: ") != first:
        raise ConfigurationError(f"the two passphrases of {name!r} differ")
    return Secret(first)


@_refusals
def cmd_ceremony(args: argparse.Namespace, load: SettingsLoader, keys: ServiceKeyMaker) -> int:
    settings = load(args)
    shares = _pairs(args.custodian, "--custodian")
    files = _pairs(args.passphrase_file, "--passphrase-file")
    custodians = [
        Custodian(name, Path(path), _passphrase(name, files, confirm=True))
        for name, path in shares.items()
    ]
    result = asyncio.run(
        run_ceremony(
            settings,
            custodians,
            threshold=args.threshold,
            backup_out=args.backup,
            actor=_actor(),
            service_keys=keys,
        )
    )
    print(json.dumps(result, indent=1))
    return 0


@_refusals
def cmd_backup_create(args: argparse.Namespace, load: SettingsLoader) -> int:
    print(json.dumps(asyncio.run(create_backup(load(args), args.out, actor=_actor())), indent=1))
    return 0


@_refusals
def cmd_backup_restore(args: argparse.Namespace, load: SettingsLoader) -> int:
    settings = load(args)
    files = _pairs(args.passphrase_file, "--passphrase-file")
    by_share = {str(Path(k).resolve()): v for k, v in files.items()}
    shares = [
        (Path(p), _passphrase(str(Path(p).resolve()), by_share, confirm=False)) for p in args.share
    ]
    result = asyncio.run(
        restore_backup(
            settings,
            args.archive,
            shares,
            actor=_actor(),
            publish_notice=args.publish_notice,
            new_master=args.new_master,
            unrecorded=args.unrecorded_archive,
        )
    )
    print(json.dumps(result, indent=1))
    return 0


def add_parsers(sub: Any, load: SettingsLoader, keys: ServiceKeyMaker) -> None:
    """Add `ceremony` and `backup` to the top-level subparsers."""
    cer = sub.add_parser(
        "ceremony",
        help="first set-up of a production HSM with its custodians: keys, shares, first backup",
    )
    cer.add_argument(
        "--custodian",
        action="append",
        required=True,
        metavar="NAME=PATH",
        help="a custodian and where their share file goes (their own medium); 5 or more",
    )
    cer.add_argument("--threshold", type=int, default=3, help="shares needed to restore (3)")
    cer.add_argument("--backup", type=Path, required=True, help="where the first archive goes")
    cer.add_argument(
        "--passphrase-file",
        action="append",
        metavar="NAME=FILE",
        help="read NAME's passphrase from FILE instead of the terminal (drills, tests)",
    )
    cer.set_defaults(fn=lambda a: cmd_ceremony(a, load, keys))
    bak = sub.add_parser("backup", help="HSM backup archives under the split archive key")
    bak_sub = bak.add_subparsers(dest="backup_cmd", required=True)
    create = bak_sub.add_parser("create", help="write an archive of the token's keys")
    create.add_argument("--out", type=Path, required=True)
    create.set_defaults(fn=lambda a: cmd_backup_create(a, load))
    restore = bak_sub.add_parser(
        "restore", help="a new token from an archive and the custodians' shares"
    )
    restore.add_argument("--archive", type=Path, required=True)
    restore.add_argument(
        "--share", action="append", required=True, metavar="FILE", help="a custodian's share file"
    )
    restore.add_argument(
        "--passphrase-file",
        action="append",
        metavar="SHARE=FILE",
        help="read the passphrase of share file SHARE from FILE (drills, tests)",
    )
    restore.add_argument(
        "--publish-notice",
        action="store_true",
        help="publish a notice of the restore on the public site",
    )
    restore.add_argument(
        "--new-master",
        action="store_true",
        help="rotate the master key: the archive's comes back retired, owner keys move to "
        "the new one at their next use",
    )
    restore.add_argument(
        "--unrecorded-archive",
        action="store_true",
        help="restore an archive no backup.create event of this database records "
        "(a database older than the archive); the officers checked it otherwise",
    )
    restore.set_defaults(fn=lambda a: cmd_backup_restore(a, load))
