"""`cloudsign operator ...`: the server-side bootstrap of operator accounts.

`create-security-officer` makes one of the first two security officers, on
the server itself (there is no default account and no shared token); two,
so that the two-person rule for adding a third can start. Once two are
active it refuses. The password is read
from the terminal (or stdin with --password-stdin), never from the command
line; the TOTP provisioning URI is printed once to the terminal and written
nowhere else. Every other operator is created by a security officer.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Callable
from typing import Any

from cloudsign.clock import utc_now
from cloudsign.guard import Guard, Limits
from cloudsign.instance import prepare_hsm
from cloudsign.operators.service import OperatorService, check_password
from cloudsign.settings import Settings
from cloudsign.storage import Database
from hsm_bridge import HsmBridge

SettingsLoader = Callable[[argparse.Namespace], Settings]


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password for the new security officer: ")
    if getpass.getpass("again: ") != first:
        raise SystemExit("cloudsign: the passwords differ")
    return first


async def _create_officer(settings: Settings, username: str, name: str, password: str) -> str:
    access = prepare_hsm(settings)
    bridge = HsmBridge(access.module, access.token_label, access.pin)
    db = Database(settings.effective_database_url, immediate=True)
    await bridge.start()
    try:
        await db.migrate()
        guard = Guard(db, clock=utc_now)
        service = OperatorService(
            db,
            bridge,
            guard,
            Limits.from_settings(settings.guard),
            settings.operators,
            clock=utc_now,
        )
        return await service.bootstrap_security_officer(username, name, password)
    finally:
        await bridge.close()
        await db.close()


def cmd_create_security_officer(args: argparse.Namespace, load: SettingsLoader) -> int:
    password = check_password(_password(args))
    uri = asyncio.run(_create_officer(load(args), args.username, args.display_name, password))
    print(f"security officer {args.username!r} created.")
    print("Add this to their authenticator app now (shown once):")
    print(uri)
    return 0


def add_parsers(sub: Any, load: SettingsLoader) -> None:
    op = sub.add_parser("operator", help="operator accounts (server-side bootstrap)")
    op_sub = op.add_subparsers(dest="operator_cmd", required=True)
    first = op_sub.add_parser(
        "create-security-officer",
        help="create one of the first two security officers (refused once two exist)",
    )
    first.add_argument("--username", required=True)
    first.add_argument("--display-name", required=True)
    first.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    first.set_defaults(fn=lambda a: cmd_create_security_officer(a, load))
