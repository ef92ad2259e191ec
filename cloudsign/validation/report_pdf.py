"""A validation report as a PDF for people: the same content as the JSON
report (cloudsign/validation/worker.py) laid out on A4 pages, with the
SHA-256 of the file that was checked, when it was checked and by whom.

Every string of a report comes from an untrusted signature (a subject name
can hold markup, control characters, bidi overrides or a megabyte of text):
`clean` normalises it (NFC), shows each control or format character as its
code point instead of drawing it, and shortens it; `_text` then escapes it
for reportlab's paragraph markup. Nothing of the report reaches reportlab
unescaped, and nothing is laid out in a table (a cell taller than a page is
a LayoutError): paragraphs only, which split across pages.

`render` is synchronous and CPU-bound: the route runs it in a thread.
"""

from __future__ import annotations

import io
import threading
import unicodedata
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Final
from xml.sax.saxutils import escape

from reportlab.lib import colors  # type: ignore[import-untyped]
from reportlab.lib.pagesizes import A4  # type: ignore[import-untyped]
from reportlab.lib.styles import ParagraphStyle  # type: ignore[import-untyped]
from reportlab.lib.units import mm  # type: ignore[import-untyped]
from reportlab.pdfbase import pdfmetrics  # type: ignore[import-untyped]
from reportlab.pdfbase.ttfonts import TTFont  # type: ignore[import-untyped]
from reportlab.platypus import (  # type: ignore[import-untyped]
    Flowable,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
)

#: One string of a report, at most (a longer one is cut, and says so).
MAX_STRING_CHARS: Final = 2000
#: Items of one list shown (a chain, coverage references).
MAX_ITEMS: Final = 32
#: Characters of text in one PDF, at most (some eight pages, about a second
#: of reportlab at worst): past it, the rest is left to the JSON report and
#: the PDF says so. Sixteen signatures full of 2000-character names would
#: otherwise take it twenty seconds.
MAX_REPORT_CHARS: Final = 24_000
#: A Unicode font for Cyrillic (Kazakh, Russian) names, where the system has one;
#: otherwise reportlab's Helvetica (Latin-1: other letters are shown as "?").
UNICODE_FONTS: Final = (
    (
        Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
        Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
    ),
    (
        Path("/usr/share/fonts/dejavu/DejaVuSans.ttf"),
        Path("/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf"),
    ),
)
_COLOURS: Final = {
    "TOTAL-PASSED": colors.HexColor("#1b7a3a"),
    "TOTAL-FAILED": colors.HexColor("#b00020"),
    "INDETERMINATE": colors.HexColor("#9a6700"),
}
#: Categories drawn as their code point: controls, format (bidi overrides,
#: zero-width), surrogates, private use, unassigned, line/paragraph separators.
_HIDDEN: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_RENDERING: Final = threading.Lock()


def clean(value: Any, limit: int = MAX_STRING_CHARS) -> str:
    """`value` as plain, visible, bounded text."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > 4 * limit:  # normalising a megabyte to keep 2000 characters is waste
        text = text[: 4 * limit]
    text = unicodedata.normalize("NFC", text)
    out: list[str] = []
    size = 0
    for ch in text:
        piece = ch
        if unicodedata.category(ch) in _HIDDEN:
            piece = " " if ch in "\t\n\r" else f"[U+{ord(ch):04X}]"
        if size + len(piece) > limit:
            out.append(" [… cut]")
            break
        out.append(piece)
        size += len(piece)
    return "".join(out)


@cache
def _fonts() -> tuple[str, str, bool]:
    """(regular, bold, unicode?) font names, registered once per process."""
    for regular, bold in UNICODE_FONTS:
        if regular.is_file() and bold.is_file():
            try:
                pdfmetrics.registerFont(TTFont("CloudsignSans", str(regular)))
                pdfmetrics.registerFont(TTFont("CloudsignSans-Bold", str(bold)))
            except Exception:  # noqa: BLE001, S112 - a broken font file: try the next one
                continue
            return "CloudsignSans", "CloudsignSans-Bold", True
    return "Helvetica", "Helvetica-Bold", False


def _text(value: Any, unicode: bool, limit: int = MAX_STRING_CHARS) -> str:
    """Paragraph markup showing `value` literally."""
    text = clean(value, limit)
    if not unicode:
        text = text.encode("latin-1", "replace").decode("latin-1")
    return escape(text)


def _when(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is None:
        return value
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class _Page:
    def __init__(self) -> None:
        regular, bold, self.unicode = _fonts()
        self.body = ParagraphStyle("body", fontName=regular, fontSize=9.5, leading=12.5)
        self.key = ParagraphStyle(
            "key", parent=self.body, leftIndent=0, spaceBefore=1.5, textColor=colors.black
        )
        self.item = ParagraphStyle("item", parent=self.body, leftIndent=8 * mm)
        self.title = ParagraphStyle("title", fontName=bold, fontSize=16, leading=20, spaceAfter=4)
        self.h2 = ParagraphStyle(
            "h2", fontName=bold, fontSize=12.5, leading=16, spaceBefore=8, spaceAfter=2
        )
        self.verdict = ParagraphStyle("verdict", fontName=bold, fontSize=14, leading=18)
        self.bold = bold
        self.flow: list[Flowable] = []
        self.used = 0
        self.cut = False

    def add(self, markup: str, style: ParagraphStyle) -> None:
        """One paragraph, unless the report's text budget is spent."""
        self.used += len(markup)
        if self.used > MAX_REPORT_CHARS:
            self.cut = True
            return
        self.flow.append(Paragraph(markup, style))

    def t(self, value: Any) -> str:
        return _text(value, self.unicode)

    def heading(self, text: str, style: ParagraphStyle) -> None:
        self.add(self.t(text), style)

    def verdict_line(self, indication: Any, sub: Any) -> None:
        colour = _COLOURS.get(indication, colors.black) if isinstance(indication, str) else None
        text = self.t(indication if indication is not None else "—")
        if sub:
            text += " · " + self.t(sub)
        style = ParagraphStyle("v", parent=self.verdict, textColor=colour or colors.black)
        self.add(text, style)

    def field(self, label: str, value: Any) -> None:
        if value is None or value == "":
            return
        self.add(f'<font name="{self.bold}">{self.t(label)}:</font> {self.t(value)}', self.key)

    def items(self, label: str, values: Iterable[str]) -> None:
        values = list(values)
        if not values:
            return
        self.add(f'<font name="{self.bold}">{self.t(label)}:</font>', self.key)
        for n, value in enumerate(values[:MAX_ITEMS], start=1):
            self.add(f"{n}. {self.t(value)}", self.item)
        if len(values) > MAX_ITEMS:
            self.add(self.t(f"… {len(values) - MAX_ITEMS} more"), self.item)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _cert_line(cert: dict[str, Any]) -> str:
    parts = [str(cert.get("subject", "?"))]
    if cert.get("serial"):
        parts.append(f"serial {cert['serial']}")
    if cert.get("not_before") or cert.get("not_after"):
        parts.append(f"valid {_when(cert.get('not_before'))} – {_when(cert.get('not_after'))}")
    return ", ".join(parts)


def _revocation(rev: dict[str, Any]) -> str:
    status = str(rev.get("status", "unknown"))
    if status == "revoked":
        status = f"revoked at {_when(rev.get('revoked_at'))} ({rev.get('reason')})"
        if rev.get("ca_revoked"):
            status += ", a CA certificate"
    checked = _when(rev.get("checked_at"))
    return f"{status}; checked at {checked}" if checked else status


def _coverage(coverage: Any) -> list[tuple[str, Any]]:
    if isinstance(coverage, str):
        return [("Coverage", coverage)]
    c = _dict(coverage)
    if not c:
        return []
    out: list[tuple[str, Any]] = []
    if "whole_document" in c:
        whole = "the whole document" if c["whole_document"] else "part of the document"
        out.append(("Coverage", whole))
    ranges = c.get("byte_ranges")
    if isinstance(ranges, list) and ranges:
        shown = []
        for r in ranges[:MAX_ITEMS]:
            r = _dict(r)
            start, length = r.get("start"), r.get("length")
            if isinstance(start, int) and isinstance(length, int):
                shown.append(f"{start}–{start + length - 1}")
        out.append(("Signed bytes", ", ".join(shown)))
    if c.get("level"):
        out.append(("Coverage level", c["level"]))
    if c.get("modifications"):
        out.append(("Changes after signing", c["modifications"]))
    return out


def _file_reference(ref: dict[str, Any]) -> str:
    if not ref.get("found"):
        state = "missing from the container"
    else:
        state = "digest matches" if ref.get("digest_matches") else "digest DOES NOT match"
    return f"{ref.get('name')}: {state}"


def _container(page: _Page, container: dict[str, Any]) -> None:
    page.field("Container", container.get("type"))
    if "all_files_covered" in container:
        covered = container["all_files_covered"]
        page.field("Every file signed", "yes" if covered else "no")
    files = container.get("files")
    if isinstance(files, list):
        lines = []
        for f in files:
            f = _dict(f)
            by = f.get("signatures")
            signers = ", ".join(map(str, by)) if isinstance(by, list) and by else ""
            lines.append(
                f"{f.get('name')}: signed by {signers}"
                if f.get("covered")
                else f"{f.get('name')}: NOT signed"
            )
        page.items("Files", lines)


def _signature(page: _Page, n: int, sig: dict[str, Any]) -> None:
    page.heading(
        f"Signature {n}" + (f" ({clean(sig['id'], 200)})" if sig.get("id") else ""), page.h2
    )
    page.verdict_line(sig.get("indication"), sig.get("sub_indication"))
    signer = _dict(sig.get("signer"))
    page.field("Signer", signer.get("subject"))
    page.field("Signer's certificate serial", signer.get("serial"))
    page.field("Issued by", signer.get("issuer"))
    if signer.get("not_before") or signer.get("not_after"):
        page.field(
            "Certificate valid",
            f"{_when(signer.get('not_before'))} – {_when(signer.get('not_after'))}",
        )
    page.field("Level", sig.get("level"))
    page.field("Claimed signing time", _when(sig.get("claimed_signing_time")))
    stamp = sig.get("signature_timestamp")
    if isinstance(stamp, dict):
        verified = "verified" if stamp.get("verified") else "not verified"
        page.field("Signature time-stamp", f"{_when(stamp.get('time'))}, {verified}")
        page.field("Time-stamping authority", stamp.get("tsa"))
    else:
        page.field("Signature time-stamp", "none")
    page.field("Revocation", _revocation(_dict(sig.get("revocation"))))
    checks = _dict(sig.get("checks"))
    if checks:
        page.field(
            "Checks",
            " · ".join(
                f"{label}: {'yes' if checks.get(key) else 'no'}"
                for key, label in (
                    ("intact", "intact"),
                    ("signature_valid", "signature valid"),
                    ("trusted", "trusted"),
                )
            ),
        )
    page.field("Digest algorithm", sig.get("digest_algorithm"))
    page.field("Content", sig.get("content"))
    for label, value in _coverage(sig.get("coverage")):
        page.field(label, value)
    references = _dict(sig.get("coverage")).get("references")
    if isinstance(references, list):
        page.items(
            "Signed references",
            (f'URI "{_dict(r).get("uri")}"' for r in references),
        )
    files = sig.get("references")
    if isinstance(files, list):  # an ASiC-E manifest's files
        page.items("Signed files", (_file_reference(_dict(r)) for r in files))
    chain = sig.get("chain")
    if isinstance(chain, list):
        page.items("Certificate chain (signer first)", (_cert_line(_dict(c)) for c in chain))
        if not chain:
            page.field("Certificate chain", "none found to a trusted root")


def render(
    report: dict[str, Any],
    *,
    file_sha256: str,
    service: str,
    content_sha256: str | None = None,
) -> bytes:
    """The PDF of `report` (the worker's, as the JSON answer carries it).
    One at a time per process: reportlab keeps module-level state (fonts,
    caches) that its documentation does not promise is thread-safe."""
    with _RENDERING:
        return _render(report, file_sha256, service, content_sha256)


def _render(
    report: dict[str, Any], file_sha256: str, service: str, content_sha256: str | None
) -> bytes:
    page = _Page()
    page.heading("Signature validation report", page.title)
    page.verdict_line(report.get("indication"), report.get("sub_indication"))
    page.flow.append(Spacer(1, 2 * mm))
    page.field("Format", report.get("format"))
    page.field("Validated at", _when(report.get("validation_time")))
    page.field("Validated by", service)
    page.field("SHA-256 of the file checked", file_sha256)
    page.field("SHA-256 of its content", content_sha256)
    container = report.get("container")
    if isinstance(container, dict):
        _container(page, container)
    signatures = [s for s in report.get("signatures") or [] if isinstance(s, dict)]
    page.field("Signatures", len(signatures))
    page.field(
        "Indications follow",
        "ETSI EN 319 102-1: TOTAL-PASSED, TOTAL-FAILED or INDETERMINATE with a sub-indication",
    )
    for n, sig in enumerate(signatures, start=1):
        _signature(page, n, sig)
    if page.cut:
        page.flow.append(
            Paragraph(
                "This report is longer than its PDF shows; the rest is in the JSON report "
                "(the same request without Accept: application/pdf).",
                page.h2,
            )
        )

    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=16 * mm,
        bottomMargin=16 * mm,
        title="Signature validation report",
        author=clean(service, 200),
        subject=clean(f"{report.get('indication')} {file_sha256}", 200),
        creator="cloudsign",
    )
    doc.build(page.flow)
    return out.getvalue()
