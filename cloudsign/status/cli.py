"""Server-side commands of the status services, registered on the
`cloudsign` command line: `revoke` and `notice publish`, for the centre's
administrators on the server itself (the actor recorded is their login
name). Operators use the operator API or console; a CA-compromise
revocation or notice needs two of them there and is refused here.

Both write straight to the database (the server need not run); a running
server picks a CLI revocation up within `status_poll_ms` and answers for it
in OCSP and the next delta CRL.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Callable
from typing import Any

from cloudsign.settings import Settings
from cloudsign.status.notices import NoticeService
from cloudsign.status.reasons import GROUNDS, RevocationReason, parse_reason
from cloudsign.status.revocation import RevocationService
from cloudsign.storage import Database

SettingsLoader = Callable[[argparse.Namespace], Settings]


def _actor(args: argparse.Namespace) -> str:
    name = args.operator or getpass.getuser()
    return f"operator:cli:{name}"


async def _with_db(settings: Settings, fn: Callable[[Database], Any]) -> Any:
    db = Database(settings.effective_database_url, immediate=True)
    try:
        await db.migrate()
        return await fn(db)
    finally:
        await db.close()


def cmd_revoke(args: argparse.Namespace, load: SettingsLoader) -> int:
    if parse_reason(args.reason) is RevocationReason.CA_COMPROMISE:
        # Two operators must agree (the operator API); one shell does not.
        raise SystemExit("cloudsign: a CA-compromise revocation needs two operators (operator API)")

    async def run(db: Database) -> dict[str, Any]:
        revocation = await RevocationService(db).revoke(
            args.serial, args.reason, _actor(args), reference=args.reference
        )
        return revocation.to_json()

    print(json.dumps(asyncio.run(_with_db(load(args), run))))
    return 0


def cmd_notice_publish(args: argparse.Namespace, load: SettingsLoader) -> int:
    def text(value: str) -> str:
        return sys.stdin.read() if value == "-" else value

    async def run(db: Database) -> dict[str, Any]:
        notice = await NoticeService(db).publish(
            title=args.title,
            summary=text(args.summary),
            measures=text(args.measures),
            serials=args.serial or [],
            actor=_actor(args),
        )
        return notice.to_json()

    print(json.dumps(asyncio.run(_with_db(load(args), run)), ensure_ascii=False))
    return 0


def add_parsers(sub: Any, load: SettingsLoader) -> None:
    """Add `revoke` and `notice` to the top-level subparsers."""
    rev = sub.add_parser(
        "revoke",
        help="revoke a certificate (effective at once in OCSP and the next delta CRL)",
        description="Grounds: " + ", ".join(f"{g} -> {r.rfc_name}" for g, r in GROUNDS.items()),
    )
    rev.add_argument("serial", help="certificate serial number (hex)")
    rev.add_argument(
        "--reason",
        required=True,
        help="a ground (" + ", ".join(GROUNDS) + ") or an RFC 5280 reason name",
    )
    rev.add_argument("--reference", help="public reference, e.g. the court decision number")
    rev.add_argument("--operator", help="who decides (default: the login name)")
    rev.set_defaults(fn=lambda a: cmd_revoke(a, load))
    notice = sub.add_parser("notice", help="compromise notices on the public site")
    notice_sub = notice.add_subparsers(dest="notice_cmd", required=True)
    pub = notice_sub.add_parser("publish", help="publish a notice now")
    pub.add_argument("--title", required=True)
    pub.add_argument("--summary", required=True, help="what happened ('-' reads stdin)")
    pub.add_argument("--measures", required=True, help="what the CA did ('-' reads stdin)")
    pub.add_argument("--serial", action="append", help="a certificate concerned (repeatable)")
    pub.add_argument("--operator", help="who publishes (default: the login name)")
    pub.set_defaults(fn=lambda a: cmd_notice_publish(a, load))
