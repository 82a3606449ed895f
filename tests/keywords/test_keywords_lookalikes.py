"""Tests for look-alike keywords: invisible characters, confusable letters, Russian revocations."""

from __future__ import annotations

import tomllib
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keywords.catalog import SenderCatalog
from keywords.classify import classify
from keywords.confusables import PROTOTYPES
from keywords.consent import decide
from keywords.errors import CatalogError
from keywords.loading import load_sender, load_sender_file
from keywords.model import ConsentState, Intent, IntentKind, MatchKind, ReplyKind
from keywords.normalize import lookalikes, normalize
from keywords.reserved import RESERVED

CONFIG = Path(__file__).resolve().parents[2] / "config" / "senders"
CATALOG: SenderCatalog = load_sender_file(CONFIG / "12345.toml")

K, M = IntentKind, MatchKind
OPT_OUTS = frozenset({K.OPT_OUT, K.OPT_OUT_ALL})
OPT_IN_FAMILY = frozenset({K.OPT_IN, K.JOIN, K.CONFIRM})


def words_of(family: str) -> list[str]:
    """The normalized reserved words of one family, every language."""
    return sorted({normalize(w) for _, fam, ws in RESERVED if fam == family for w in ws})


# A reserved letter -> the characters Unicode's confusables data draws like it. The look-alikes
# of capital I (prototype "l") stand for an "i" as well as an "l".
TWINS: dict[str, list[str]] = defaultdict(list)
for source, prototype in PROTOTYPES.items():
    TWINS[prototype.casefold()].append(source)
TWINS["i"] += [s for s, p in PROTOTYPES.items() if p == "l"]
INVISIBLE = st.one_of(
    st.characters(categories=["Cf"]), st.sampled_from(["\u115f", "\u1160", "\u3164", "\uffa0"])
)


def sender_data(**tables: Any) -> dict[str, Any]:
    """The parsed 12345.toml with top-level tables merged in (``keywords={...}``)."""
    data: dict[str, Any] = tomllib.loads((CONFIG / "12345.toml").read_text(encoding="utf-8"))
    for name, value in tables.items():
        data[name] = {**data.get(name, {}), **value}
    return data


def summary(intent: Intent) -> tuple[IntentKind, MatchKind, str | None, bool]:
    return intent.kind, intent.match, intent.program, intent.needs_review


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Invisible characters are dropped by normalization: this is STOP as typed.
        ("S\u200bTOP", (K.OPT_OUT_ALL, M.EXACT, None, False)),
        ("ST\ufeffOP", (K.OPT_OUT_ALL, M.EXACT, None, False)),  # byte-order mark
        ("ST\u00adOP", (K.OPT_OUT_ALL, M.EXACT, None, False)),  # soft hyphen
        ("S\u202eTOP\u202c", (K.OPT_OUT_ALL, M.EXACT, None, False)),  # bidi override
        ("S\u200cT\u200dO\u2060P", (K.OPT_OUT_ALL, M.EXACT, None, False)),
        ("S\u3164TOP", (K.OPT_OUT_ALL, M.EXACT, None, False)),  # Hangul filler
        ("STO\U000e0067\U000e007fP", (K.OPT_OUT_ALL, M.EXACT, None, False)),  # tag characters
        ("UN\u200bSUB\u200bSCRIBE", (K.OPT_OUT_ALL, M.EXACT, None, False)),
        ("STOP\u200bFLU", (K.OPT_OUT, M.LEADING_WORD, "flu", True)),
        # A zero-width space is also a word break: both readings count, the opt-out wins
        # (these were opt-outs when format characters separated words; they must stay so).
        ("yes\u200bstop", (K.OPT_OUT_ALL, M.PHRASE, None, True)),
        ("START\u200bSTOP", (K.OPT_OUT_ALL, M.PHRASE, None, True)),
        # Confusable letters: acted on as the opt-out they spell, flagged for a reviewer.
        ("ЅТОР", (K.OPT_OUT_ALL, M.EXACT, None, True)),  # all Cyrillic
        ("SТОP", (K.OPT_OUT_ALL, M.EXACT, None, True)),  # Latin S and P, Cyrillic Т and О
        ("ѕтoр", (K.UNKNOWN, M.NONE, None, False)),  # small т is drawn as a small capital
        ("ЅΤΟΡ", (K.OPT_OUT_ALL, M.EXACT, None, True)),  # Cyrillic Ѕ, Greek Τ Ο Ρ
        ("Ѕtop", (K.OPT_OUT_ALL, M.EXACT, None, True)),
        ("ЅТОР!", (K.OPT_OUT_ALL, M.EXACT, None, True)),
        ("Ѕ\u200bТОР", (K.OPT_OUT_ALL, M.EXACT, None, True)),  # both at once
        ("ЅТОРАLL", (K.OPT_OUT_ALL, M.EXACT, None, True)),
        ("ЅТОР АLL", (K.OPT_OUT_ALL, M.EXACT, None, True)),
        ("QUІT", (K.OPT_OUT_ALL, M.EXACT, None, True)),  # Ukrainian І read as I
        ("CANCEІ", (K.OPT_OUT_ALL, M.EXACT, None, True)),  # the same І read as l
        ("ЕND", (K.OPT_OUT_ALL, M.EXACT, None, True)),
        ("ОРТ-ОUТ", (K.OPT_OUT_ALL, M.EXACT, None, True)),
        ("unsubscrіbe", (K.OPT_OUT_ALL, M.EXACT, None, True)),
        ("АLТО", (K.OPT_OUT_ALL, M.EXACT, None, True)),
        ("ЅТОР FLU", (K.OPT_OUT, M.EXACT, "flu", True)),
        ("ЅТОР please", (K.OPT_OUT_ALL, M.LEADING_WORD, None, True)),
        ("ЅТОРNEWS", (K.OPT_OUT_ALL, M.LEADING_WORD, None, True)),
        ("please ѕtop texting me", (K.OPT_OUT_ALL, M.PHRASE, None, True)),
        ("yes ЅТОР", (K.OPT_OUT_ALL, M.PHRASE, None, True)),
        ("help me ЅТОР", (K.OPT_OUT_ALL, M.PHRASE, None, True)),  # not help: the opt-out wins
        ("ΗΕLΡ", (K.HELP, M.EXACT, None, False)),
        ("ІNFO", (K.HELP, M.EXACT, None, False)),
        ("НЕLР me", (K.HELP, M.LEADING_WORD, None, False)),
        # Look-alikes never make an opt-in, a join or a confirmation.
        ("ЅТАRТ", (K.UNKNOWN, M.NONE, None, False)),
        ("УЕЅ", (K.UNKNOWN, M.NONE, None, False)),
        ("ΥΕЅ", (K.UNKNOWN, M.NONE, None, False)),
        ("UNЅTOP", (K.UNKNOWN, M.NONE, None, False)),
        ("FLU\u0405", (K.UNKNOWN, M.NONE, None, False)),
        ("ЅI", (K.UNKNOWN, M.NONE, None, False)),
        # An invisible character does not hide what was typed, opt-ins included.
        ("STA\u200bRT", (K.OPT_IN, M.EXACT, None, False)),
        # Russian: a plain-language revocation of its own, also with Latin letters mixed in.
        ("СТОП", (K.OPT_OUT_ALL, M.PHRASE, None, True)),
        ("Стоп", (K.OPT_OUT_ALL, M.PHRASE, None, True)),
        ("стоп, пожалуйста", (K.OPT_OUT_ALL, M.PHRASE, None, True)),
        ("CTOП", (K.OPT_OUT_ALL, M.PHRASE, None, True)),  # Latin C, T, O
        ("СТOП", (K.OPT_OUT_ALL, M.PHRASE, None, True)),  # Latin O
        ("С\u200bТОП", (K.OPT_OUT_ALL, M.PHRASE, None, True)),
        ("Хочу отписаться", (K.OPT_OUT_ALL, M.PHRASE, None, True)),
        ("Отпишите меня", (K.OPT_OUT_ALL, M.PHRASE, None, True)),
    ],
)
def test_lookalike_table(
    text: str, expected: tuple[IntentKind, MatchKind, str | None, bool]
) -> None:
    """Invisible characters, confusable letters and Russian revocations classify as meant."""
    assert expected == summary(classify(text, CATALOG))


@pytest.mark.parametrize(
    "text",
    [
        "Да",
        "ДА",
        "Нет",
        "Привет, как дела?",
        "Спасибо, всё хорошо",
        "Стопка книг на столе",
        "Остановка автобуса",
        "Сто рублей",
        "Торт",
        "Так",  # Ukrainian yes
        "Дякую",
        "Хвала",  # Serbian thanks
        "ΝΑΙ",  # Greek yes
        "Ναι",
        "Ευχαριστώ πολύ",
        "ΟΧΙ",
        "Բարեւ",
        "כן, תודה",
        "نعم شكرا",
        "ᏌᏊ ᎢᏳᏍᏗ",  # Cherokee
        "Неllo there",  # Cyrillic Н and е in an English word that is no keyword
    ],
)
def test_real_words_in_other_scripts_are_not_keywords(text: str) -> None:
    """Texts in other scripts are not read as a reserved word through their look-alikes."""
    assert (K.UNKNOWN, M.NONE) == (classify(text, CATALOG).kind, classify(text, CATALOG).match)


def test_russian_stop_is_answered_in_the_default_language() -> None:
    """A Russian STOP keeps the language ru; with no Russian templates the reply is English."""
    intent = classify("СТОП", CATALOG)
    decision = decide(intent, {}, CATALOG)
    replies = [(r.kind, r.language) for r in decision.replies]

    assert ("ru", "стоп") == (intent.language, intent.keyword)
    assert [(ReplyKind.OPT_OUT, CATALOG.default_language)] == replies
    assert {ConsentState.OPTED_OUT} == {t.new for t in decision.transitions}


def test_russian_stop_uses_russian_templates_when_the_sender_has_them() -> None:
    """A sender that adds [templates.ru] answers a Russian STOP in Russian."""
    data = sender_data(templates={"ru": {"opt_out": "{program}: вы отписаны."}})
    catalog = load_sender(data, "ru.toml")
    reply = decide(classify("Стоп", catalog), {}, catalog).replies[0]
    assert ("ru", "Acme Health: вы отписаны.") == (reply.language, reply.text)


@pytest.mark.parametrize(
    ("family", "word"),
    [
        ("help", "ЅТОР"),
        ("opt_in", "ЅТОРРЕR"),
        ("confirm", "СТОП"),
        ("opt_in", "CTOП"),
    ],
)
def test_catalog_refuses_keywords_that_read_as_an_opt_out(family: str, word: str) -> None:
    """A non-opt-out keyword that is a look-alike of an opt-out could never match: refused."""
    with pytest.raises(CatalogError, match="would read as the opt-out") as caught:
        load_sender(sender_data(keywords={"ru": {family: [word]}}), "t.toml")
    assert f"keywords.ru.{family}" == caught.value.key


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ЅТОР", ("stop",)),
        ("S\u200bTOP", ("s top",)),
        ("QUІT", ("qult", "quit")),
        ("STOP", ()),  # ASCII is read as written
        ("стоп", ("cтoп",)),
        ("Да", ("дa",)),
        ("", ()),
    ],
)
def test_lookalike_readings(text: str, expected: tuple[str, ...]) -> None:
    """The readings map confusables before case folding, and never repeat normalize()."""
    assert expected == lookalikes(text)


@given(st.text(st.characters(exclude_categories=())))
def test_lookalike_readings_are_normalized_shape(text: str) -> None:
    """Every reading is single-spaced letters and digits, and differs from normalize()."""
    for reading in lookalikes(text):
        assert reading != normalize(text)
        assert reading == reading.strip()
        assert "  " not in reading
        assert all(c.isalnum() or c == " " for c in reading)


def disguise(draw: st.DrawFn, word: str, *, substitute: bool = True) -> str:
    """``word`` with letters swapped for confusables and invisible characters inserted."""
    out = []
    for letter in word:
        choices = [letter.lower(), letter.upper()]
        if substitute and letter in TWINS:
            choices += TWINS[letter]
        out.append(draw(st.sampled_from(choices)))
        out.extend(draw(st.lists(INVISIBLE, max_size=2)))
    return "".join(draw(st.lists(INVISIBLE, max_size=2))) + "".join(out)


@st.composite
def disguised(draw: st.DrawFn, family: str) -> str:
    return disguise(draw, draw(st.sampled_from(words_of(family))))


@given(disguised("opt_out"))
def test_disguised_opt_out_word_is_an_opt_out(text: str) -> None:
    """Every reserved opt-out word, under any confusables and format characters, opts out."""
    assert classify(text, CATALOG).kind in OPT_OUTS


@given(disguised("opt_out"), st.text(max_size=30))
def test_disguised_leading_opt_out_word_is_an_opt_out(word: str, suffix: str) -> None:
    """A disguised opt-out word followed by any text is still an opt-out."""
    assert classify(word + " " + suffix, CATALOG).kind in OPT_OUTS


@given(disguised("help"))
def test_disguised_help_word_is_help(text: str) -> None:
    """Every reserved help word, disguised the same way, is answered as help."""
    assert K.HELP == classify(text, CATALOG).kind


@st.composite
def substituted_opt_in(draw: st.DrawFn) -> str:
    """An opt-in or confirm word with at least one letter swapped for a confusable."""
    word = draw(st.sampled_from(words_of("opt_in") + words_of("confirm")))
    at = draw(st.sampled_from([i for i, c in enumerate(word) if c in TWINS]))
    twin = draw(st.sampled_from(TWINS[word[at]]))
    rest = disguise(draw, word[at + 1 :])
    return disguise(draw, word[:at]) + twin + rest


@given(substituted_opt_in(), st.text(max_size=20), st.text(max_size=20))
def test_lookalike_never_makes_an_opt_in(word: str, prefix: str, suffix: str) -> None:
    """A look-alike of START, UNSTOP or YES, with any text around it, is never an opt-in."""
    for text in (word, f"{prefix} {word} {suffix}"):
        assert classify(text, CATALOG).kind not in OPT_IN_FAMILY


@given(st.text(st.characters(exclude_categories=())))
def test_lookalikes_never_add_an_opt_in(text: str) -> None:
    """Whatever the text, a look-alike reading never turns it into an opt-in it was not."""
    intent = classify(text, CATALOG)
    if intent.kind in OPT_IN_FAMILY:
        assert intent.kind == CATALOG.index.exact[normalize(text)].kind
