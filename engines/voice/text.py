"""Text for speech: language codes and detection, normalisation, and sentence splitting.

Shared by the voice engines; standard library only, so the core may use it too.
"""

from __future__ import annotations

import re
import unicodedata

from jayavatar import catalog
from jayavatar.errors import BadInput

#: The 17 languages XTTS v2 speaks, from the engine table (its own code for Chinese is "zh-cn").
LANGUAGES = catalog.XTTS_LANGUAGES

#: Characters per chunk that XTTS v2 speaks reliably, per language (its tokenizer's guidance).
CHAR_LIMITS = {
    "en": 250, "de": 253, "fr": 273, "es": 239, "it": 213, "pt": 203, "pl": 224, "zh": 82,
    "ar": 166, "cs": 186, "ru": 182, "nl": 251, "tr": 226, "ja": 71, "hu": 224, "ko": 95,
    "hi": 150,
}  # fmt: skip

# Languages written without spaces between words: any character is a safe place to cut.
_NO_SPACES = {"zh", "ja"}

# Words that stand for symbols; a language missing from a table keeps the symbol for the engine.
_WORDS = {
    "dot": {
        "en": "dot", "es": "punto", "fr": "point", "de": "Punkt", "it": "punto", "pt": "ponto",
        "pl": "kropka", "tr": "nokta", "ru": "точка", "nl": "punt", "cs": "tečka", "hu": "pont",
        "ar": "نقطة", "zh": "点", "ko": "점", "ja": "ドット", "hi": "डॉट",
    },
    "at": {
        "en": "at", "es": "arroba", "fr": "arobase", "de": "at", "it": "chiocciola",
        "pt": "arroba", "pl": "małpa", "tr": "et", "ru": "собака", "nl": "apenstaartje",
        "cs": "zavináč", "hu": "kukac",
    },
    "&": {
        "en": "and", "es": "y", "fr": "et", "de": "und", "it": "e", "pt": "e", "pl": "i",
        "tr": "ve", "ru": "и", "nl": "en", "cs": "a", "hu": "és",
    },
    "%": {
        "en": "percent", "es": "por ciento", "fr": "pour cent", "de": "Prozent",
        "it": "per cento", "pt": "por cento", "pl": "procent", "tr": "yüzde", "ru": "процентов",
        "nl": "procent", "cs": "procent", "hu": "százalék",
    },
    "°": {
        "en": "degrees", "es": "grados", "fr": "degrés", "de": "Grad", "it": "gradi",
        "pt": "graus", "pl": "stopni", "ru": "градусов", "nl": "graden", "cs": "stupňů",
        "hu": "fok",
    },
    "+": {
        "en": "plus", "es": "más", "fr": "plus", "de": "plus", "it": "più", "pt": "mais",
        "pl": "plus", "ru": "плюс", "nl": "plus", "cs": "plus", "hu": "plusz",
    },
}  # fmt: skip

# A few frequent words per Latin-script language, to tell them apart.
_STOPWORDS = {
    "en": "the and is are you that this with for have not was what it of to",
    "es": "el la los las que es y en un una por con para no está qué muy",
    "fr": "le la les et est une un des du que pas pour dans ce vous je",
    "de": "der die das und ist nicht ein eine ich sie mit zu auf für es den",
    "it": "il lo la gli le che è e non un una per con sono del della di",
    "pt": "o a os as que é e não um uma com para em do da você são",
    "pl": "i w nie się na jest to że z do jak co ale ja ty",
    "tr": "bir ve bu da de için ne çok ile mi ben sen değil var",
    "nl": "de het een en is niet van dat ik je met op zijn voor",
    "cs": "a je se na že to v není jsem jak ale co s do",
    "hu": "a az és hogy nem egy is ez van de meg csak már",
}  # fmt: skip

# A link never ends with sentence punctuation: "see example.com!" keeps its "!".
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"']*[^\s<>\"'.,;:!?)]", re.IGNORECASE)
_EMAIL = re.compile(r"\b([\w.+-]+)@([\w-]+(?:\.[\w-]+)+)\b")
_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_MARK = re.compile(r"\s+([.,;:!?])")
_EN_MONEY = re.compile(r"([$€£])(\d[\d,]*(?:\.\d+)?)")
_CURRENCIES = {"$": "dollars", "€": "euros", "£": "pounds"}
_EN_NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(st|nd|rd|th)?(?![\w])")
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "st", "sr", "jr", "vs", "etc", "e.g", "i.e", "no", "fig",
    "approx", "sra", "dra", "mme", "mlle", "hr", "fr", "bzw", "z.b", "usw", "ca", "nr",
}  # fmt: skip
_TERMINATORS = ".!?…。！？؟।"
_CLAUSE_MARKS = ",;:—–、，；："
_CLOSERS = "\"')]»”’」』"


def language_code(language: str) -> str:
    """Return the bare code ("zh-cn" -> "zh", "en-US" -> "en"); raise BadInput if unsupported."""
    code = language.strip().lower().replace("_", "-").split("-")[0]
    if code not in LANGUAGES:
        raise BadInput(f"language {language!r} is not supported; use one of {', '.join(LANGUAGES)}")
    return code


def detect_language(text: str) -> str:
    """Guess the language of `text` from its script, then from frequent words; default English."""
    counts: dict[str, int] = {}
    for char in text:
        script = _script(char)
        if script:
            counts[script] = counts.get(script, 0) + 1
    if counts.get("kana"):
        return "ja"
    for script in ("hangul", "han", "cyrillic", "arabic", "devanagari"):
        if counts.get(script, 0) * 4 >= sum(counts.values()):
            return {"hangul": "ko", "han": "zh", "cyrillic": "ru", "arabic": "ar"}.get(script, "hi")
    words = re.findall(r"[^\W\d_]+", text.lower())
    scores = {lang: sum(w in _STOPWORD_SETS[lang] for w in words) for lang in _STOPWORD_SETS}
    best = max(scores, key=lambda lang: scores[lang])
    return best if scores[best] > 0 else "en"


def _script(char: str) -> str:
    """Name the script of a letter, or "" for anything else."""
    point = ord(char)
    if 0x3040 <= point <= 0x30FF:
        return "kana"
    if 0xAC00 <= point <= 0xD7AF or 0x1100 <= point <= 0x11FF:
        return "hangul"
    if 0x4E00 <= point <= 0x9FFF or 0x3400 <= point <= 0x4DBF:
        return "han"
    if 0x0400 <= point <= 0x04FF:
        return "cyrillic"
    if 0x0600 <= point <= 0x06FF:
        return "arabic"
    if 0x0900 <= point <= 0x097F:
        return "devanagari"
    return "latin" if char.isalpha() else ""


_STOPWORD_SETS = {lang: set(words.split()) for lang, words in _STOPWORDS.items()}


def normalize(text: str, language: str) -> str:
    """Make `text` speakable: URLs, e-mail addresses, emoji, symbols, English numbers, spacing."""
    lang = language_code(language)
    text = unicodedata.normalize("NFKC", text)
    text = _URL.sub(lambda m: _speak_url(m.group(0), lang), text)
    text = _EMAIL.sub(lambda m: _speak_email(m.group(1), m.group(2), lang), text)
    text = _speak_symbols(text, lang)
    text = "".join(_clean_char(c) for c in text)
    if lang == "en":
        text = _EN_MONEY.sub(_speak_en_money, text)
        text = _EN_NUMBER.sub(_speak_en_number, text)
    text = _SPACE_BEFORE_MARK.sub(r"\1", text)
    return _SPACES.sub(" ", text).strip()


def _speak_url(url: str, lang: str) -> str:
    """Say a link as its host name ("example dot com"), since paths are noise when spoken."""
    host = re.sub(r"^(?:https?://)?(?:www\.)?", "", url, flags=re.IGNORECASE).split("/")[0]
    host = host.split("?")[0].split("#")[0].rstrip(".,;:!?)")
    return f" {_dotted(host, lang)} "


def _speak_email(user: str, host: str, lang: str) -> str:
    """Say an e-mail address with the language's words for "at" and "dot"."""
    at = _WORDS["at"].get(lang, "@")
    return f" {_dotted(user, lang)} {at} {_dotted(host, lang)} "


def _dotted(name: str, lang: str) -> str:
    """Replace the dots of a name by the spoken word for a dot."""
    return f" {_WORDS['dot'].get(lang, '.')} ".join(p for p in name.split(".") if p)


def _clean_char(char: str) -> str:
    """Drop emoji, pictographs and invisible characters; turn typographic marks into plain ones."""
    category = unicodedata.category(char)
    if category in ("So", "Sk", "Cs", "Co", "Cn") or (category == "Cf" and char != "\u200c"):
        return " " if category == "So" else ""
    if category == "Cc":
        return " " if char in "\t\n\r" else ""
    if 0xFE00 <= ord(char) <= 0xFE0F:  # variation selectors glue emoji together
        return ""
    return {"“": '"', "”": '"', "„": '"', "«": '"', "»": '"', "‘": "'", "’": "'"}.get(char, char)


def _speak_symbols(text: str, lang: str) -> str:
    """Spell out &, %, °, + where the language has a word for them."""
    for symbol in ("&", "%", "°", "+"):
        word = _WORDS[symbol].get(lang)
        if word and symbol in text:
            text = text.replace(symbol, f" {word} ")
    return text


_ONES = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
]  # fmt: skip
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL_ENDINGS = {"one": "first", "two": "second", "three": "third", "five": "fifth",
                    "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}  # fmt: skip


def english_number(value: int) -> str:
    """Spell a non-negative integer in English words ("one hundred and five")."""
    if value < 20:
        return _ONES[value]
    if value < 100:
        tens, ones = divmod(value, 10)
        return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    if value < 1000:
        hundreds, rest = divmod(value, 100)
        return f"{_ONES[hundreds]} hundred" + (f" and {english_number(rest)}" if rest else "")
    for scale, name in _SCALES:
        if value >= scale:
            high, rest = divmod(value, scale)
            tail = "" if not rest else (" and " if rest < 100 else " ") + english_number(rest)
            return f"{english_number(high)} {name}{tail}"
    raise AssertionError("unreachable")  # pragma: no cover


def _english_ordinal(words: str) -> str:
    """Turn the last word of a spelled number into its ordinal ("twenty-one" -> "twenty-first")."""
    head, sep, last = words.rpartition("-") if "-" in words else ("", "", words)
    if " " in last:
        head, sep, last = words.rpartition(" ")
    if last in _ORDINAL_ENDINGS:
        last = _ORDINAL_ENDINGS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + sep + last


def _speak_en_number(match: re.Match[str]) -> str:
    """Spell one English number, with its decimals or ordinal suffix."""
    whole, decimals, suffix = match.group(1), match.group(2), match.group(3)
    value = int(whole.replace(",", ""))
    if value >= 10**15:
        return " ".join(_ONES[int(d)] for d in whole if d.isdigit())
    words = english_number(value)
    if suffix:
        return _english_ordinal(words)
    if decimals:
        words += " point " + " ".join(_ONES[int(d)] for d in decimals)
    return words


def _speak_en_money(match: re.Match[str]) -> str:
    """Put the currency word after the amount ("$20" -> "20 dollars"), to be spelled next."""
    return f"{match.group(2)} {_CURRENCIES[match.group(1)]}"


def split_sentences(text: str, language: str, limit: int | None = None) -> list[str]:
    """Split text into sentences of at most `limit` characters, never cutting inside a word.

    The limit defaults to the language's XTTS guidance. A single word longer than the limit
    stays whole, except in languages written without spaces.
    """
    lang = language_code(language)
    limit = limit or CHAR_LIMITS[lang]
    chunks: list[str] = []
    for sentence in _sentences(text):
        chunks.extend(_fit(sentence, limit, lang))
    return chunks


def _sentences(text: str) -> list[str]:
    """Cut text after sentence-ending punctuation, keeping abbreviations and decimals together."""
    text = _SPACES.sub(" ", text).strip()
    sentences: list[str] = []
    start = 0
    for index, char in enumerate(text):
        if index >= start and char in _TERMINATORS and _ends_sentence(text, index):
            end = index + 1
            while end < len(text) and text[end] in _TERMINATORS + _CLOSERS:
                end += 1
            sentences.append(text[start:end].strip())
            start = end
    sentences.append(text[start:].strip())
    return [s for s in sentences if s and not all(c in _TERMINATORS for c in s)]


def _ends_sentence(text: str, index: int) -> bool:
    """Tell whether the mark at `index` ends a sentence."""
    char = text[index]
    if char in "。！？":
        return True
    rest = text[index + 1 :].lstrip(_CLOSERS)
    if rest[:1] in tuple(_TERMINATORS):
        return False  # "?!" and "...": the last mark decides
    if rest and not rest[0].isspace():
        return False  # "3.14", "e.g.x", "example.com"
    if char != ".":
        return True
    word = text[:index].rsplit(" ", 1)[-1].lower().lstrip("(\"'")
    if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
        return False
    following = text[index + 1 :].lstrip()[:1]
    return not (following and following.islower())


def _fit(sentence: str, limit: int, lang: str) -> list[str]:
    """Break an over-long sentence at clause marks, then between words, packing greedily."""
    if len(sentence) <= limit:
        return [sentence]
    pieces = re.split(f"(?<=[{re.escape(_CLAUSE_MARKS)}])\\s*", sentence)
    if len(pieces) == 1:
        pieces = list(sentence) if lang in _NO_SPACES else sentence.split(" ")
    joiner = "" if lang in _NO_SPACES else " "
    out: list[str] = []
    current = ""
    for piece in pieces:
        if len(piece) > limit:
            if current:
                out.append(current)
                current = ""
            out.extend(_fit_words(piece, limit, lang))
            continue
        candidate = f"{current}{joiner}{piece}" if current else piece
        if len(candidate) <= limit:
            current = candidate
        else:
            out.append(current)
            current = piece
    if current:
        out.append(current)
    return [p.strip() for p in out if p.strip()]


def _fit_words(piece: str, limit: int, lang: str) -> list[str]:
    """Pack the words (or characters, for zh/ja) of a clause into chunks within the limit."""
    units = list(piece) if lang in _NO_SPACES else piece.split(" ")
    joiner = "" if lang in _NO_SPACES else " "
    out: list[str] = []
    current = ""
    for unit in units:
        candidate = f"{current}{joiner}{unit}" if current else unit
        if len(candidate) <= limit or not current:
            current = candidate
        else:
            out.append(current)
            current = unit
    if current:
        out.append(current)
    return out
