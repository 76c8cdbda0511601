"""Sentence splitting, normalisation and language detection on real multi-language text."""

from __future__ import annotations

import pytest

from engines.voice.text import (
    CHAR_LIMITS,
    LANGUAGES,
    detect_language,
    english_number,
    language_code,
    normalize,
    split_sentences,
)
from jayavatar.errors import BadInput

# Real prose in several scripts, long enough to need splitting at the XTTS limits.
PROSE = {
    "en": (
        "Dr. Watson arrived at 221B Baker Street at 3.30 in the afternoon. He rang the bell "
        "twice, waited, and rang again; nobody answered, so he walked round to the back door, "
        "which was open, as it always was when Mrs. Hudson was out shopping for the week. "
        "Was anyone home? He called out, but the house stayed silent!"
    ),
    "de": (
        "Der Zug nach München fährt heute später ab, weil ein Stellwerk gestört ist. Die "
        "Reisenden warten geduldig auf dem Bahnsteig, trinken Kaffee aus Pappbechern, lesen "
        "Zeitung und schauen immer wieder auf die Anzeigetafel, die jedoch seit einer halben "
        "Stunde dieselbe Meldung zeigt, ohne neue Informationen über die Weiterfahrt zu geben."
    ),
    "fr": (
        "Le marché ouvre à sept heures. Les marchands installent leurs étals de fruits, de "
        "légumes et de fromages, tandis que les premiers clients, souvent des habitués du "
        "quartier, discutent du temps qu'il fera cet après-midi et des nouvelles de la veille."
    ),
    "ru": (
        "Утром пошёл сильный дождь. Мы долго стояли на остановке, ждали автобус, который "
        "опаздывал уже на двадцать минут, и обсуждали, стоит ли идти пешком через парк, "
        "где дорожки наверняка превратились в настоящие ручьи."
    ),
    "zh": (
        "今天早上下了很大的雨。我们在车站等了很久，公共汽车一直没有来，大家都在讨论要不要走路去公司，"
        "因为公园里的小路可能已经变成了小河，而且天气预报说下午还会继续下雨，所以很多人决定打车。"
    ),
    "ja": (
        "今朝は大雨が降りました。私たちはバス停で長い間待っていましたが、バスはなかなか来ませんでした。"
        "公園の道は川のようになっているかもしれないので、歩いて行くかどうかみんなで相談しました。"
    ),
}


def words(text: str) -> list[str]:
    """Split text into words, ignoring the spacing that splitting may change."""
    return text.split()


@pytest.mark.parametrize("lang", sorted(PROSE))
def test_split_respects_limit_and_keeps_every_word(lang: str) -> None:
    """Each chunk fits the language's limit and the chunks rejoin into the original words."""
    limit = CHAR_LIMITS[lang] // 2 if lang not in ("zh", "ja") else 40
    chunks = split_sentences(PROSE[lang], lang, limit)
    assert len(chunks) >= 2
    assert all(0 < len(c) <= limit for c in chunks), chunks
    if lang in ("zh", "ja"):
        assert "".join(chunks) == PROSE[lang]
    else:
        assert words(" ".join(chunks)) == words(PROSE[lang])
        original = set(words(PROSE[lang]))
        assert all(set(words(c)) <= original for c in chunks)  # no word cut in two


def test_english_sentences_keep_abbreviations_and_decimals() -> None:
    """Abbreviations, initials and decimals do not end sentences; ?! and quotes do."""
    text = 'Dr. Smith met J. Doe at 3.30 today. He said "Stop." Then... Really?! Yes.'
    assert split_sentences(text, "en", 500) == [
        "Dr. Smith met J. Doe at 3.30 today.",
        'He said "Stop."',
        "Then...",
        "Really?!",
        "Yes.",
    ]


def test_cjk_sentences_split_without_spaces() -> None:
    """Chinese and Japanese full stops end sentences though no space follows."""
    assert split_sentences("你好。我很好！你呢？", "zh") == ["你好。", "我很好！", "你呢？"]
    assert split_sentences("雨です。寒いです。", "ja") == ["雨です。", "寒いです。"]


def test_overlong_word_stays_whole() -> None:
    """A single word longer than the limit is never cut."""
    word = "Donaudampfschifffahrtsgesellschaftskapitän"
    assert split_sentences(f"Der {word} kommt.", "de", 20) == ["Der", word, "kommt."]


def test_clause_marks_are_preferred_cut_points() -> None:
    """An over-long sentence breaks after commas before it breaks between plain words."""
    chunks = split_sentences("one two three four, five six seven eight, nine ten", "en", 25)
    assert chunks == ["one two three four,", "five six seven eight,", "nine ten"]


def test_default_limit_is_the_language_guidance() -> None:
    """Without an explicit limit, the XTTS per-language character limit applies."""
    long_text = " ".join(["palabra"] * 200) + "."
    assert max(len(c) for c in split_sentences(long_text, "es")) <= CHAR_LIMITS["es"]


def test_english_numbers_money_ordinals_and_symbols() -> None:
    """English digits are spelled out, with currency, ordinals, decimals and symbols."""
    text = "I paid $20 & got 15% off on the 21st, 3.5 kg at 20°C, 1,250 in all."
    assert normalize(text, "en") == (
        "I paid twenty dollars and got fifteen percent off on the twenty-first, "
        "three point five kg at twenty degrees C, one thousand two hundred and fifty in all."
    )


@pytest.mark.parametrize(
    ("value", "spoken"),
    [
        (0, "zero"),
        (13, "thirteen"),
        (40, "forty"),
        (99, "ninety-nine"),
        (105, "one hundred and five"),
        (2024, "two thousand and twenty-four"),
        (1_000_001, "one million and one"),
    ],
)
def test_english_number(value: int, spoken: str) -> None:
    """Integers are spelled in British-style English."""
    assert english_number(value) == spoken


def test_urls_and_emails_are_spoken_per_language() -> None:
    """Links become their host name; e-mail addresses use the language's words."""
    assert normalize("See https://www.example.com/a/b?c=1 now.", "en") == "See example dot com now."
    assert normalize("Écrivez à marie.dupont@exemple.fr.", "fr") == (
        "Écrivez à marie point dupont arobase exemple point fr."
    )
    assert normalize("Siehe www.beispiel.de!", "de") == "Siehe beispiel Punkt de!"


def test_emoji_and_invisible_characters_are_removed() -> None:
    """Emoji (with skin tones and joiners) and control characters vanish; text stays."""
    assert normalize("Great job 👍🏽👨‍👩‍👧 team!\u200b\x07", "en") == "Great job team!"
    assert normalize("Привет 😀 мир", "ru") == "Привет мир"


def test_other_languages_keep_digits_for_the_engine() -> None:
    """Only English numbers are spelled here; the engine's own cleaners handle the others."""
    assert normalize("Es sind 20 % mehr.", "de") == "Es sind 20 Prozent mehr."


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("The weather is nice and it is warm today.", "en"),
        ("El tiempo es bueno y hace calor en la ciudad.", "es"),
        ("Le temps est beau et il fait chaud dans la ville.", "fr"),
        ("Das Wetter ist schön und es ist warm in der Stadt.", "de"),
        ("Il tempo è bello e fa caldo in città, non piove.", "it"),
        ("O tempo está bom e não faz frio na cidade.", "pt"),
        ("Dziś nie jest zimno i to jest dobry dzień.", "pl"),
        ("Bugün hava çok güzel ve bu şehir sıcak.", "tr"),
        ("Het weer is mooi en het is warm in de stad.", "nl"),
        ("Dnes je hezky a není zima, to je dobře.", "cs"),
        ("Ma szép az idő és nem hideg, ez jó.", "hu"),
        (PROSE["ru"], "ru"),
        (PROSE["zh"], "zh"),
        (PROSE["ja"], "ja"),
        ("오늘은 날씨가 아주 좋습니다.", "ko"),
        ("الطقس جميل اليوم في المدينة.", "ar"),
        ("आज मौसम बहुत अच्छा है।", "hi"),
    ],
)
def test_detect_language(text: str, lang: str) -> None:
    """Each of the 17 languages is recognised from a plain sentence."""
    assert detect_language(text) == lang


def test_language_codes() -> None:
    """Region suffixes are dropped; unknown languages are refused clearly."""
    assert language_code("zh-cn") == "zh"
    assert language_code("en_US") == "en"
    assert len(LANGUAGES) == 17
    with pytest.raises(BadInput, match="not supported"):
        language_code("xx")
