"""The consent texts an owner must accept before any key exists (rule 6).

Each text has a kind, a version and the SHA-256 of its exact wording; the
owner's device sends back the version and hash it showed, so the record says
which words were agreed to.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final

TEXT_DIR: Final = Path(__file__).parent / "consent_texts"
REQUIRED_KINDS: Final = ("personal_data", "cloud_key_storage")
CURRENT_VERSION: Final = {"personal_data": "1", "cloud_key_storage": "1"}


@dataclass(frozen=True)
class ConsentText:
    kind: str
    version: str
    language: str
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


@cache
def current_texts(language: str = "en") -> tuple[ConsentText, ...]:
    texts = []
    for kind in REQUIRED_KINDS:
        version = CURRENT_VERSION[kind]
        path = TEXT_DIR / f"{kind}.v{version}.{language}.md"
        texts.append(ConsentText(kind, version, language, path.read_text(encoding="utf-8")))
    return tuple(texts)


def current_text(kind: str) -> ConsentText | None:
    return next((t for t in current_texts() if t.kind == kind), None)
