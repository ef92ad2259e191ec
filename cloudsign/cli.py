"""`cloudsign` command line: serve, init, and the operator's registry views."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import select

from cloudsign.backup import cli as backup_cli
from cloudsign.ca import certificates
from cloudsign.errors import CloudsignError
from cloudsign.instance import restrict_umask
from cloudsign.operators import cli as operators_cli
from cloudsign.settings import ENV_PREFIX, Settings, load_settings
from cloudsign.status import cli as status_cli
from cloudsign.storage import Database
from cloudsign.storage.schema import events


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = args.data_dir
    settings = load_settings(args.config, **overrides)
    # Read once into a Secret: children (face workers, anvil) must not inherit it.
    os.environ.pop(f"{ENV_PREFIX}HSM_PIN", None)
    return settings


def cmd_init(args: argparse.Namespace) -> int:
    from cloudsign.app import service_keys
    from cloudsign.instance import initialise

    settings = _settings(args)
    for line in asyncio.run(initialise(settings, service_keys)):
        print(line)
    print(f"data dir ready: {settings.data_dir.resolve()}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from cloudsign.app import create_app
    from cloudsign.web.logs import SafeAccessLogger, access_logger, configure_logging

    settings = _settings(args)
    refusals = settings.production_refusals()
    if refusals and not settings.development:
        print(
            "cloudsign serve: refusing to start a development instance outside "
            "development mode:\n"
            + "".join(f"  - {r}\n" for r in refusals)
            + "configure production parts, or set development = true "
            f"({ENV_PREFIX}DEVELOPMENT=true; `make run` does) for a development instance",
            file=sys.stderr,
        )
        return 2
    configure_logging(settings.log_format)
    workers = args.workers or settings.workers
    if workers > 1 and not args.worker:
        from cloudsign.workers import supervise

        os.environ[f"{ENV_PREFIX}REUSE_PORT"] = "true"
        return supervise(settings, workers, args.config)
    log = logging.getLogger("cloudsign")
    if refusals:
        log.warning("development mode: %s", "; ".join(refusals))
    log.info("settings: %s", json.dumps(settings.describe()))
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        print=None,
        access_log=access_logger(),
        access_log_class=SafeAccessLogger,
        reuse_port=settings.reuse_port,
    )
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    print(json.dumps(_settings(args).describe(), indent=2))
    return 0


async def _query(settings: Settings, stmt: Any) -> list[dict[str, Any]]:
    db = Database(settings.effective_database_url, immediate=True)
    try:
        await db.migrate()
        async with db.read() as conn:
            return [dict(r) for r in (await conn.execute(stmt)).mappings().all()]
    finally:
        await db.close()


def _print_rows(rows: list[dict[str, Any]], as_json: bool) -> None:
    for row in rows:
        clean = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}
        if as_json:
            print(json.dumps(clean))
        else:
            print("  ".join(f"{k}={v}" for k, v in clean.items()))


def cmd_registry(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.registry_cmd == "show":
        rows = asyncio.run(
            _query(
                settings, select(certificates).where(certificates.c.serial == args.serial.lower())
            )
        )
        if not rows:
            print(f"no certificate with serial {args.serial}", file=sys.stderr)
            return 1
        from asn1crypto import pem

        print(pem.armor("CERTIFICATE", rows[0]["der"]).decode(), end="")
        return 0
    stmt = select(
        certificates.c.serial,
        certificates.c.subject,
        certificates.c.status,
        certificates.c.not_before,
        certificates.c.not_after,
        certificates.c.revoked_at,
        certificates.c.revocation_reason,
    ).order_by(certificates.c.issued_at)
    if args.status:
        stmt = stmt.where(certificates.c.status == args.status)
    _print_rows(asyncio.run(_query(settings, stmt)), args.json)
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    stmt = select(events).order_by(events.c.seq.desc()).limit(args.limit)
    _print_rows(list(reversed(asyncio.run(_query(_settings(args), stmt)))), args.json)
    return 0


async def extend_signatures(
    settings: Settings, *, before_days: int, dry_run: bool, actor: str
) -> dict[str, Any]:
    """`cloudsign extend`: a new document time-stamp on the cabinet's PAdES
    LT/LTA signatures whose newest time-stamp's TSA certificate expires
    within `before_days` (cloudsign/signing/extend.py). The running service's
    own TSA, OCSP responder and CRLs answer over its public URL."""
    from datetime import timedelta

    from asn1crypto import pem, x509

    from cloudsign.ca import CertificateAuthority, PkiUrls
    from cloudsign.clock import utc_now
    from cloudsign.signing import DocumentWorker, LevelServices, SignatureExtender

    root_file, issuing_file = CertificateAuthority.files(settings.pki_dir)

    def load(path: Path) -> x509.Certificate:
        return x509.Certificate.load(pem.unarmor(path.read_bytes())[2])

    services = LevelServices(
        tsa_url=PkiUrls(settings.ca.public_url).tsa,
        trust_roots=(load(root_file),),
        other_certs=(load(issuing_file),),
    )
    db = Database(settings.effective_database_url, immediate=True)
    documents = DocumentWorker()
    try:
        await db.migrate()
        await documents.start()
        extender = SignatureExtender(db, documents, services, clock=utc_now, actor=actor)
        report = await extender.run(timedelta(days=before_days), dry_run=dry_run)
    finally:
        await documents.close()
        await db.close()
    return report.to_json()


def cmd_extend(args: argparse.Namespace) -> int:
    import getpass

    if args.before < 0:
        print("cloudsign extend: --before must be 0 or more days", file=sys.stderr)
        return 2
    report = asyncio.run(
        extend_signatures(
            _settings(args),
            before_days=args.before,
            dry_run=args.dry_run,
            actor=f"operator:cli:{getpass.getuser()}",
        )
    )
    print(json.dumps(report))
    return 1 if report["failed"] else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cloudsign", description=__doc__)
    p.add_argument("--config", type=Path, help="TOML settings file (or CLOUDSIGN_CONFIG)")
    p.add_argument("--data-dir", type=Path, help="data directory (overrides settings)")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("init", help="initialise the data dir (HSM token, CA, database)").set_defaults(
        fn=cmd_init
    )
    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument(
        "--workers",
        type=int,
        help="service processes on this machine, sharing the port (settings: workers)",
    )
    serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(fn=cmd_serve)
    sub.add_parser("config", help="print the effective settings (no secrets)").set_defaults(
        fn=cmd_config
    )
    reg = sub.add_parser("registry", help="the certificate registry")
    reg.set_defaults(fn=cmd_registry)
    reg_sub = reg.add_subparsers(dest="registry_cmd", required=True)
    lst = reg_sub.add_parser("list", help="every issued certificate")
    lst.add_argument("--status", choices=["good", "revoked"])
    lst.add_argument("--json", action="store_true")
    show = reg_sub.add_parser("show", help="one certificate as PEM")
    show.add_argument("serial")
    ev = sub.add_parser("events", help="the latest audit events")
    ev.add_argument("--limit", type=int, default=50)
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(fn=cmd_events)
    ext = sub.add_parser(
        "extend",
        help="add a document time-stamp to cabinet PAdES signatures before their TSA ages out",
    )
    ext.add_argument(
        "--before",
        type=int,
        default=90,
        metavar="DAYS",
        help="extend when the newest time-stamp's TSA certificate expires within DAYS "
        "(default 90); PAdES-LT without a document time-stamp always qualifies",
    )
    ext.add_argument("--dry-run", action="store_true", help="count only, change nothing")
    ext.set_defaults(fn=cmd_extend)
    status_cli.add_parsers(sub, _settings)
    operators_cli.add_parsers(sub, _settings)
    from cloudsign.app import service_keys

    backup_cli.add_parsers(sub, _settings, service_keys)
    return p


def main(argv: list[str] | None = None) -> int:
    # Whatever the command creates in the data dir is the owner's alone.
    restrict_umask()
    args = build_parser().parse_args(argv)
    try:
        code: int = args.fn(args)
    except CloudsignError as e:
        print(f"cloudsign: {e.detail}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
