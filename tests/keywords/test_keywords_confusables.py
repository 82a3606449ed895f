"""Tests for keywords.confusables, the shipped excerpt of Unicode's confusables data (TR39)."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from build_confusables import build, letters, parse, select

import keywords.confusables
from keywords.confusables import LETTERS, PROTOTYPES, UNICODE_VERSION

MODULE = Path(keywords.confusables.__file__)


def test_table_covers_every_letter_of_the_reserved_words() -> None:
    """The table is built for the letters the reserved words use, and has look-alikes of each."""
    assert letters() == LETTERS
    assert set(LETTERS) == {p.casefold() for p in PROTOTYPES.values()}


def test_every_entry_passes_the_generators_filter() -> None:
    """Each source is a non-ASCII, NFKD-stable letter or digit; each prototype a reserved letter."""
    assert dict(PROTOTYPES) == select(dict(PROTOTYPES), LETTERS)
    for source in PROTOTYPES:
        assert source == unicodedata.normalize("NFKC", source)


def test_shipped_module_is_the_generators_output() -> None:
    """Rebuilt from its own entries, the module is byte for byte what is shipped (no hand edits)."""
    lines = [f"{ord(s):04X} ;\t{ord(p):04X} ;\tMA\t# x" for s, p in PROTOTYPES.items()]
    found = re.search(r"version ([\d.]+) \((\d{4}-\d\d-\d\d)\)", keywords.confusables.__doc__ or "")
    assert found is not None
    assert UNICODE_VERSION == found.group(1)
    assert MODULE.read_text(encoding="utf-8") == build(lines, found.group(1), found.group(2))


def test_generator_keeps_only_what_the_reserved_words_need() -> None:
    """ASCII, sequences, letters outside the reserved words, symbols and NFKC forms are left out."""
    data = """\ufeff# confusables.txt
# Version: 13.0.0
0405 ;\t0053 ;\tMA\t# ( \u0405 -> S ) CYRILLIC CAPITAL LETTER DZE -> LATIN CAPITAL LETTER S
0406 ;\t006C ;\tMA\t# ( \u0406 -> l ) CYRILLIC CAPITAL LETTER BYELORUSSIAN-UKRAINIAN I
0030 ;\t004F ;\tMA\t# ( 0 -> O ) DIGIT ZERO: ASCII
006D ;\t0072 006E ;\tMA\t# ( m -> rn ): ASCII, and two letters
04D4 ;\t0041 0045 ;\tMA\t# ( AE ): two letters
0445 ;\t0078 ;\tMA\t# ( x ): no reserved word has an x
1D412 ;\t0053 ;\tMA\t# MATHEMATICAL BOLD CAPITAL S: NFKC already makes it S
22A4 ;\t0054 ;\tMA\t# DOWN TACK: a symbol, which separates words
0419 ;\t0418 ;\tMA\t# prototype not Latin
""".splitlines()
    assert {"\u0405": "S", "\u0406": "l"} == select(parse(data), LETTERS)


def test_the_letters_of_the_issue_map_as_tr39_says() -> None:
    """Cyrillic Ѕ Т О Р are S T O P; small т (a small capital) and П have no Latin twin."""
    assert "STOP" == "".join(PROTOTYPES[c] for c in "ЅТОР")
    assert "sop" == "".join(PROTOTYPES[c] for c in "ѕор")
    assert set() == {"т", "П", "п"} & PROTOTYPES.keys()
