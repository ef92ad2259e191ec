"""The consent texts an owner must accept before any key exists (rule 6).

Each text has a kind, a version and a language (Kazakh, Russian, English),
and the SHA-256 of its exact wording; the owner's device sends back the
version, language and hash it showed, so the record says which words, in
which language, were agreed to. The three languages of one version say the
same thing; accepting any one of them is the consent.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final

TEXT_DIR: Final = Path(__file__).parent / "consent_texts"
REQUIRED_KINDS: Final = ("personal_data", "cloud_key_storage")
LANGUAGES: Final = ("kk", "ru", "en")
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
def current_texts(language: str | None = None) -> tuple[ConsentText, ...]:
    """The current texts, in one language or (None) in all three."""
    texts = []
    for lang in LANGUAGES if language is None else (language,):
        for kind in REQUIRED_KINDS:
            version = CURRENT_VERSION[kind]
            path = TEXT_DIR / f"{kind}.v{version}.{lang}.md"
            texts.append(ConsentText(kind, version, lang, path.read_text(encoding="utf-8")))
    return tuple(texts)


def current_text(kind: str, language: str = "en") -> ConsentText | None:
    if language not in LANGUAGES:
        return None
    return next((t for t in current_texts(language) if t.kind == kind), None)
