"""Checks on what users type, done before anything is stored or queued."""

from __future__ import annotations

import unicodedata

from jayavatar import catalog
from jayavatar.errors import BadInput
from jayavatar.settings import Settings

# Invisible characters that change nothing spoken but can hide text or reorder it on screen.
INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def clean_text(text: str, settings: Settings) -> str:
    """Return the script normalised for speech, or raise `BadInput` saying what is wrong."""
    if not isinstance(text, str):
        raise BadInput("the text must be a string")
    text = unicodedata.normalize("NFC", text).translate(INVISIBLE)
    for ch in text:
        if ch in BIDI:
            raise BadInput("the text contains bidirectional override characters; remove them")
        if unicodedata.category(ch) == "Cc" and ch not in "\n\t\r":
            raise BadInput(f"the text contains a control character (U+{ord(ch):04X}); remove it")
        if unicodedata.category(ch) == "Cs":
            # A lone surrogate cannot be stored as UTF-8: refuse it instead of failing later.
            raise BadInput(f"the text contains an invalid character (U+{ord(ch):04X}); remove it")
    text = " ".join(text.split())
    if not text:
        raise BadInput("the text is empty; type what the avatar should say")
    if len(text) > settings.max_text_chars:
        raise BadInput(
            f"the text is {len(text)} characters long; the limit is {settings.max_text_chars}"
        )
    if not any(ch.isalnum() for ch in text):
        raise BadInput("the text has no words to speak")
    return text


def check_language(language: str, settings: Settings) -> str:
    """Return the configured voice engine's code for `language`, or raise `BadInput`."""
    code = catalog.spoken(settings.voice_engine, language)
    if code is None:
        spoken = ", ".join(catalog.engine(settings.voice_engine).languages)
        raise BadInput(
            f"language {language.strip().lower()!r} is not available with the "
            f"{settings.voice_engine} voice; use one of {spoken}"
        )
    return code
