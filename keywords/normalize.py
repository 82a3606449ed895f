"""Text normalization (pure layer): fold what a subscriber typed into the form keywords match on.

CTIA Messaging Principles 5.1.3: the validity of an opt-out must not depend on letter case,
punctuation or spacing, so ``Stop!``, ``ＳＴＯＰ``, `` stop `` and ``STOP.`` are one keyword.

The pipeline, in order:

1. NFKC: compatibility forms become plain ones (full-width ``ＳＴＯＰ`` -> ``STOP``, ligatures).
2. Smart quotes and dashes become ASCII (``’`` -> ``'``, ``–`` -> ``-``).
3. Case-fold (``ß`` -> ``ss``), then NFKD and drop every combining mark, so accents fold:
   ``ARRÊT`` == ``ARRET``, ``NO MÁS`` == ``NO MAS``.
4. Invisible characters are dropped: every format character (Unicode category Cf: zero-width
   space U+200B, zero-width (non-)joiners U+200C/D, word joiner U+2060, the byte-order mark
   U+FEFF, soft hyphen U+00AD, bidi controls, tag characters) and the Hangul fillers U+115F
   and U+1160 (letters by category, drawn as nothing; both are Default_Ignorable_Code_Point
   in Unicode's DerivedCoreProperties.txt). ``S``, U+200B, ``TOP`` is ``stop``, not
   ``s top``.
5. Apostrophes are deleted (``don't`` -> ``dont``): they sit inside words, not between them.
6. Every other character that is not a letter or digit (punctuation, hyphens, emoji, control
   characters, lone surrogates, whitespace) separates words; runs collapse to one space and
   the ends are trimmed.

Decision on hyphens: a hyphen is a separator, so ``OPT-OUT`` normalizes to ``opt out``, the
same as ``OPT OUT``; ``OPTOUT`` stays one word and is a reserved keyword of its own. Matching
therefore needs no special hyphen rule and the three spellings all reach the opt-out family.

The result is lower case, words of letters/digits joined by single spaces, and the function is
idempotent: ``normalize(normalize(x)) == normalize(x)``. It never raises on any ``str``.

Look-alikes (``lookalikes``): ``ЅТОР`` in Cyrillic letters, or ``SТОP`` with two of them, is
``ѕтор`` or ``sтоp`` to ``normalize``, which keeps every script's letters as they are (a
Russian ``да`` must stay ``да``). ``lookalikes`` gives the other readings of a text: each
character that Unicode's confusables data (UTS #39, ``keywords.confusables``) draws like a
letter of the reserved words is replaced by that letter, before case folding as the data is
case-sensitive. The readings are only for finding opt-out and help words
(``keywords.classify``); they are not a normal form.
"""

from __future__ import annotations

import re
import unicodedata

from keywords.confusables import PROTOTYPES

__all__ = ["lookalikes", "normalize", "words"]

# Typographic punctuation that phones and mail clients substitute for ASCII ("smart quotes").
_SMART = str.maketrans(
    {
        "\u2018": "'",  # left single quotation mark
        "\u2019": "'",  # right single quotation mark (iOS autocorrects don't -> don’t)
        "\u201a": "'",
        "\u201b": "'",
        "\u02bc": "'",  # modifier letter apostrophe
        "\u2032": "'",  # prime
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
        "\u2033": '"',
        "\u2010": "-",  # hyphen
        "\u2011": "-",  # non-breaking hyphen
        "\u2012": "-",  # figure dash
        "\u2013": "-",  # en dash
        "\u2014": "-",  # em dash
        "\u2015": "-",  # horizontal bar
        "\u2212": "-",  # minus sign
    }
)

# Combining marks (step 3) and format characters (step 4) are dropped, not turned into spaces.
_DROPPED = frozenset({"Mn", "Mc", "Me", "Cf"})
# U+3164 and U+FFA0, the other Hangul fillers, are U+1160 after NFKC.
_FILLERS = frozenset({"\u115f", "\u1160"})
_APOSTROPHE = re.compile("'")
# \w in a str pattern is exactly str.isalnum() plus "_"; "_" is punctuation for us.
_SEPARATORS = re.compile(r"[\W_]+")

# Look-alike readings. TR39 gives the look-alikes of capital I the prototype "l";
# case-insensitively they are as much an "i" (INFO, QUIT) as an "l" (CANCEL, HELP), and no
# reserved word has both letters, so such a text is read once each way.
_AS_L = str.maketrans(dict(PROTOTYPES))
_AS_I = str.maketrans({c: "i" if p == "l" else p for c, p in PROTOTYPES.items()})
_I_OR_L = frozenset(c for c, p in PROTOTYPES.items() if p == "l")


def _strip(text: str) -> str:
    """NFKD, drop marks and invisible characters, recompose (steps 3 and 4)."""
    decomposed = unicodedata.normalize("NFKD", text)
    kept = "".join(
        c for c in decomposed if c not in _FILLERS and unicodedata.category(c) not in _DROPPED
    )
    # Recompose what NFKD split apart without marks (Hangul jamo), so a second pass is a no-op.
    return unicodedata.normalize("NFC", kept)


def _words(folded: str) -> str:
    """Steps 5 and 6: delete apostrophes, then single spaces between letter/digit runs."""
    return " ".join(_SEPARATORS.sub(" ", _APOSTROPHE.sub("", folded)).split())


def normalize(text: str) -> str:
    """Return ``text`` folded for keyword matching (see the module docstring)."""
    # Fast path: nearly every keyword SMS is ASCII, where lower() is the whole case fold.
    if text.isascii():
        return _words(text.lower())
    return _words(_strip(unicodedata.normalize("NFKC", text).translate(_SMART).casefold()))


def lookalikes(text: str) -> tuple[str, ...]:
    """Other normalized readings of ``text``, with look-alike letters read as the reserved ones.

    Each reading is shaped like ``normalize``'s result, and none equals it. Besides the
    confusables, a format character is also read as a space: a zero-width space is a
    word-break opportunity (UAX #14), so ``yes``, U+200B, ``stop`` may be ``yes stop``.
    """
    if text.isascii():
        return ()  # the table has no ASCII character: an ASCII text is read as written
    composed = unicodedata.normalize("NFKC", text).translate(_SMART)
    variants = [composed]
    if any(unicodedata.category(c) == "Cf" for c in composed):
        variants.append("".join(" " if unicodedata.category(c) == "Cf" else c for c in composed))
    found: dict[str, None] = {}
    for variant in variants:
        # TR39's skeleton maps the characters of the NFD form (UTS #39 section 4).
        decomposed = unicodedata.normalize("NFD", variant)
        tables = (_AS_L, _AS_I) if not _I_OR_L.isdisjoint(decomposed) else (_AS_L,)
        for table in tables:
            found[_words(_strip(decomposed.translate(table).casefold()))] = None
    found.pop(normalize(text), None)
    return tuple(found)


def words(text: str) -> list[str]:
    """Return the normalized words of ``text`` (an empty list for a text of only punctuation)."""
    normalized = normalize(text)
    return normalized.split(" ") if normalized else []
