"""Text normalization (pure layer): fold what a subscriber typed into the form keywords match on.

CTIA Messaging Principles 5.1.3: the validity of an opt-out must not depend on letter case,
punctuation or spacing, so ``Stop!``, ``ＳＴＯＰ``, `` stop `` and ``STOP.`` are one keyword.

The pipeline, in order:

1. NFKC: compatibility forms become plain ones (full-width ``ＳＴＯＰ`` -> ``STOP``, ligatures).
2. Smart quotes and dashes become ASCII (``’`` -> ``'``, ``–`` -> ``-``).
3. Case-fold (``ß`` -> ``ss``), then NFKD and drop every combining mark, so accents fold:
   ``ARRÊT`` == ``ARRET``, ``NO MÁS`` == ``NO MAS``.
4. Apostrophes are deleted (``don't`` -> ``dont``): they sit inside words, not between them.
5. Every other character that is not a letter or digit (punctuation, hyphens, emoji, control
   characters, lone surrogates, whitespace) separates words; runs collapse to one space and
   the ends are trimmed.

Decision on hyphens: a hyphen is a separator, so ``OPT-OUT`` normalizes to ``opt out``, the
same as ``OPT OUT``; ``OPTOUT`` stays one word and is a reserved keyword of its own. Matching
therefore needs no special hyphen rule and the three spellings all reach the opt-out family.

The result is lower case, words of letters/digits joined by single spaces, and the function is
idempotent: ``normalize(normalize(x)) == normalize(x)``. It never raises on any ``str``.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalize", "words"]

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

_MARKS = frozenset({"Mn", "Mc", "Me"})
_APOSTROPHE = re.compile("'")
# \w in a str pattern is exactly str.isalnum() plus "_"; "_" is punctuation for us.
_SEPARATORS = re.compile(r"[\W_]+")


def _fold(text: str) -> str:
    """Case- and accent-fold a non-ASCII text (steps 1-3 of the module docstring)."""
    text = unicodedata.normalize("NFKC", text).translate(_SMART).casefold()
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if unicodedata.category(c) not in _MARKS)
    # Recompose what NFKD split apart without marks (Hangul jamo), so a second pass is a no-op.
    return unicodedata.normalize("NFC", stripped)


def normalize(text: str) -> str:
    """Return ``text`` folded for keyword matching (see the module docstring)."""
    # Fast path: nearly every keyword SMS is ASCII, where lower() is the whole case fold.
    folded = text.lower() if text.isascii() else _fold(text)
    joined = _APOSTROPHE.sub("", folded)
    return " ".join(_SEPARATORS.sub(" ", joined).split())


def words(text: str) -> list[str]:
    """Return the normalized words of ``text`` (an empty list for a text of only punctuation)."""
    normalized = normalize(text)
    return normalized.split(" ") if normalized else []
