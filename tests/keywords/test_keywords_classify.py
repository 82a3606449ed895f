"""Tests for keywords.classify against the example short code 12345 (config/senders)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keywords.catalog import SenderCatalog
from keywords.classify import classify
from keywords.loading import load_sender_file
from keywords.model import Intent, IntentKind, MatchKind
from keywords.reserved import RESERVED

CONFIG = Path(__file__).resolve().parents[2] / "config" / "senders"
CATALOG: SenderCatalog = load_sender_file(CONFIG / "12345.toml")

K, M = IntentKind, MatchKind
OPT_IN_FAMILY = frozenset({K.OPT_IN, K.JOIN, K.CONFIRM})
RESERVED_CASES = [(word, lang, family) for lang, family, ws in RESERVED for word in ws]
FAMILY_KIND = {
    "opt_out": K.OPT_OUT_ALL,
    "opt_in": K.OPT_IN,
    "confirm": K.CONFIRM,
    "help": K.HELP,
}
OPT_OUT_WORDS = [k.text for k in CATALOG.keywords if k.kind is K.OPT_OUT_ALL]
ALL_WORDS = [k.text for k in CATALOG.keywords]


def summary(intent: Intent) -> tuple[IntentKind, MatchKind, str | None, bool]:
    return intent.kind, intent.match, intent.program, intent.needs_review


@pytest.mark.parametrize(("word", "language", "family"), RESERVED_CASES)
def test_every_reserved_keyword_matches_exactly(word: str, language: str, family: str) -> None:
    """Each reserved word is an EXACT match of its family, in its language."""
    intent = classify(word, CATALOG)
    assert (FAMILY_KIND[family], M.EXACT, language) == (intent.kind, intent.match, intent.language)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("stop", (K.OPT_OUT_ALL, M.EXACT, None, False)),
        ("ＳＴＯＰ", (K.OPT_OUT_ALL, M.EXACT, None, False)),
        ("“Stop.”", (K.OPT_OUT_ALL, M.EXACT, None, False)),
        ("Arrêt", (K.OPT_OUT_ALL, M.EXACT, None, False)),
        ("OPT-OUT", (K.OPT_OUT_ALL, M.EXACT, None, False)),
        ("opt out", (K.OPT_OUT_ALL, M.EXACT, None, False)),
        ("OptOut", (K.OPT_OUT_ALL, M.EXACT, None, False)),
        ("Stop All", (K.OPT_OUT_ALL, M.EXACT, None, False)),
        # Emoji are stripped by normalization, so this is the whole keyword: EXACT, no review.
        ("Stop 🙏", (K.OPT_OUT_ALL, M.EXACT, None, False)),
        ("BAJA", (K.OPT_OUT_ALL, M.EXACT, None, False)),  # operator-added Spanish word
        ("STOP FLU", (K.OPT_OUT, M.EXACT, "flu", False)),
        ("stop reminders", (K.OPT_OUT, M.EXACT, "reminders", False)),
        ("Alto gripe", (K.OPT_OUT, M.EXACT, "flu", False)),
        ("STOP please", (K.OPT_OUT_ALL, M.LEADING_WORD, None, True)),
        ("Cancel my appointment", (K.OPT_OUT_ALL, M.LEADING_WORD, None, True)),
        ("opt out now!", (K.OPT_OUT_ALL, M.LEADING_WORD, None, True)),
        ("stop flu please", (K.OPT_OUT, M.LEADING_WORD, "flu", True)),
        ("unsubscribe me", (K.OPT_OUT_ALL, M.LEADING_WORD, None, True)),
        ("STOPNEWS", (K.OPT_OUT_ALL, M.LEADING_WORD, None, True)),
        ("STOPFLU", (K.OPT_OUT, M.LEADING_WORD, "flu", True)),
        ("stopallthings", (K.OPT_OUT_ALL, M.LEADING_WORD, None, True)),
        ("please stop texting me", (K.OPT_OUT_ALL, M.PHRASE, None, True)),
        ("no more texts", (K.OPT_OUT_ALL, M.PHRASE, None, True)),
        ("Opt me out", (K.OPT_OUT_ALL, M.PHRASE, None, True)),
        ("please take me off your list", (K.OPT_OUT_ALL, M.PHRASE, None, True)),
        ("Don’t text me", (K.OPT_OUT_ALL, M.PHRASE, None, True)),
        ("do not message me again", (K.OPT_OUT_ALL, M.PHRASE, None, True)),
        ("remove me", (K.OPT_OUT_ALL, M.PHRASE, None, True)),
        ("I want to unsubscribe", (K.OPT_OUT_ALL, M.PHRASE, None, True)),
        ("quiero darme de baja", (K.OPT_OUT_ALL, M.PHRASE, None, True)),
        ("No más mensajes", (K.OPT_OUT_ALL, M.PHRASE, None, True)),
        ("Désabonnez-moi", (K.OPT_OUT_ALL, M.PHRASE, None, True)),
        ("ne m'envoyez plus rien", (K.OPT_OUT_ALL, M.PHRASE, None, True)),
        ("START STOP", (K.OPT_OUT_ALL, M.PHRASE, None, True)),
        ("yes stop", (K.OPT_OUT_ALL, M.PHRASE, None, True)),
        ("yes cancel", (K.OPT_OUT_ALL, M.PHRASE, None, True)),
        ("start", (K.OPT_IN, M.EXACT, None, False)),
        ("Unstop!", (K.OPT_IN, M.EXACT, None, False)),
        ("YES", (K.CONFIRM, M.EXACT, None, False)),
        ("Sí", (K.CONFIRM, M.EXACT, None, False)),
        ("flu", (K.JOIN, M.EXACT, "flu", False)),
        ("Grippe", (K.JOIN, M.EXACT, "flu", False)),
        ("help", (K.HELP, M.EXACT, None, False)),
        ("help me", (K.HELP, M.LEADING_WORD, None, False)),
        ("help me unsubscribe", (K.OPT_OUT_ALL, M.PHRASE, None, True)),
        ("start please", (K.UNKNOWN, M.NONE, None, False)),  # never an inexact opt-in
        ("yes please", (K.UNKNOWN, M.NONE, None, False)),
        ("quite nice, thanks", (K.UNKNOWN, M.NONE, None, False)),
        ("Endocrinology appt?", (K.UNKNOWN, M.NONE, None, False)),
        ("hello", (K.UNKNOWN, M.NONE, None, False)),
        ("🙏", (K.UNKNOWN, M.NONE, None, False)),
        ("", (K.UNKNOWN, M.NONE, None, False)),
    ],
)
def test_classify_table(
    text: str, expected: tuple[IntentKind, MatchKind, str | None, bool]
) -> None:
    """Exact words, STOP <program>, leading words, glued prefixes, phrases and the rest."""
    assert expected == summary(classify(text, CATALOG))


@pytest.mark.parametrize(
    ("text", "language"),
    [("ALTO", "es"), ("ayuda", "es"), ("AIDE", "fr"), ("arret svp", "fr"), ("STOP", "en")],
)
def test_language_is_the_matched_keyword_language(text: str, language: str) -> None:
    """The intent carries the language of the word matched, for the reply."""
    assert language == classify(text, CATALOG).language


def variant(draw: st.DrawFn, word: str) -> str:
    """The word with random letter case, padding and separators between its parts."""
    cased = "".join(c.upper() if draw(st.booleans()) else c.lower() for c in word)
    seps = st.sampled_from([" ", "  ", "\t", "-", ".", " - ", "_"])
    parts = cased.replace("-", " ").split(" ")
    joined = parts[0] + "".join(draw(seps) + p for p in parts[1:])
    pad = st.text(alphabet=" \t\n.,!?¡¿\"'()*…🙏🛑", max_size=4)
    return draw(pad) + joined + draw(pad)


@st.composite
def keyword_variants(draw: st.DrawFn) -> tuple[str, str]:
    word = draw(st.sampled_from(ALL_WORDS))
    return word, variant(draw, word)


@given(keyword_variants())
def test_variants_classify_alike(pair: tuple[str, str]) -> None:
    """Case, spacing and punctuation variants of every keyword classify as the keyword does."""
    word, text = pair
    assert classify(word, CATALOG) == classify(text, CATALOG)


@given(
    st.sampled_from(OPT_OUT_WORDS),
    st.text(max_size=30),
    st.text(max_size=30),
    st.sampled_from([" ", ". ", "\n", "! "]),
)
def test_opt_out_word_is_never_an_opt_in(word: str, prefix: str, suffix: str, sep: str) -> None:
    """An opt-out word with any text around it never reads as opt-in, join or confirm."""
    intent = classify(prefix + sep + word + sep + suffix, CATALOG)
    assert intent.kind not in OPT_IN_FAMILY


@given(st.sampled_from(OPT_OUT_WORDS), st.text(max_size=30))
def test_leading_opt_out_word_is_always_an_opt_out(word: str, suffix: str) -> None:
    """A text that begins with an opt-out word is an opt-out (Twilio's short-code rule)."""
    intent = classify(word + " " + suffix, CATALOG)
    assert intent.kind in (K.OPT_OUT_ALL, K.OPT_OUT)


@given(st.text(st.characters(exclude_categories=())))
def test_classify_never_raises(text: str) -> None:
    """Any str, surrogates included, classifies without error."""
    assert isinstance(classify(text, CATALOG), Intent)


def test_long_text_classifies() -> None:
    """A 10k-character text is classified (and is not an opt-in)."""
    assert K.UNKNOWN == classify("hello " * 2000, CATALOG).kind
