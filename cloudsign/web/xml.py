"""Untrusted XML: the one way the service parses a document it did not write
(XAdES signing, signing requests, validation).

lxml without entity expansion, DTD loading, network access or huge-tree
mode (its default limits: a depth of 256), one parser per parse (lxml
parsers must not be shared between threads), and a document with a DTD or
an entity at all is refused (billion laughs, XXE), also when UTF-16."""

from __future__ import annotations

from typing import Any, Final

from lxml import etree

_DOCTYPE_MARKS: Final = tuple(
    "<!DOCTYPE".encode(codec) for codec in ("utf-8", "utf-16-le", "utf-16-be")
)


class UntrustedXmlError(Exception):
    """Why a document was refused: `code` `malformed` or `too_deep`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def untrusted_parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        load_dtd=False,
        dtd_validation=False,
        no_network=True,
        huge_tree=False,
        remove_blank_text=False,
    )


def parse_untrusted(document: bytes) -> Any:
    """The document's root element, or `UntrustedXmlError`."""
    if any(mark in document for mark in _DOCTYPE_MARKS):
        # Said plainly up front; the checks after parsing are the guard.
        raise UntrustedXmlError("malformed", "XML documents with a DTD (DOCTYPE) are not accepted")
    try:
        root = etree.fromstring(document, parser=untrusted_parser())
    except etree.XMLSyntaxError as e:
        if "depth" in str(e).lower():
            raise UntrustedXmlError("too_deep", "the XML document is nested too deeply") from e
        raise UntrustedXmlError("malformed", "the document is not well-formed XML") from e
    except ValueError as e:
        raise UntrustedXmlError("malformed", "the document is not well-formed XML") from e
    if root is None:
        raise UntrustedXmlError("malformed", "the document is not well-formed XML")
    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None or docinfo.externalDTD is not None or docinfo.doctype:
        raise UntrustedXmlError("malformed", "XML documents with a DTD (DOCTYPE) are not accepted")
    for _entity in root.iter(etree.Entity):
        raise UntrustedXmlError("malformed", "XML documents with entities are not accepted")
    return root
