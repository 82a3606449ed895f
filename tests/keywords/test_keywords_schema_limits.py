"""Sender schema limits: lengths, counts and control characters, each error naming the key."""

from __future__ import annotations

import copy
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from keywords.errors import CatalogError
from keywords.loading import load_sender, load_sender_file

CONFIG = Path(__file__).resolve().parents[2] / "config" / "senders"


def _definition() -> dict[str, Any]:
    return copy.deepcopy(tomllib.loads((CONFIG / "12345.toml").read_text(encoding="utf-8")))


def _with(path: str, value: object) -> dict[str, Any]:
    data = _definition()
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node[part]
    node[last] = value
    return data


# (dotted key, value, what the error says)
TOO_LONG = [
    ("programs.reminders.title", "T" * 100_000, "at most 100 characters, got 100000"),
    ("brand", "B" * 65, "at most 64 characters"),
    ("programs.reminders.description", "d" * 301, "at most 300 characters"),
    ("programs.reminders.frequency", "f" * 101, "at most 100 characters"),
    ("programs.reminders.help_contact", "h" * 255, "at most 254 characters"),
    ("programs.reminders.privacy_url", "https://x.example/" + "p" * 2_100, "at most 2048"),
    ("programs.reminders.terms_url", "https://x.example/" + "t" * 2_100, "at most 2048"),
    ("programs.flu.translations.es.title", "T" * 101, "at most 100 characters"),
    ("templates.en.help", "{program} help " * 200, "at most 1600 characters"),
    ("programs.flu.keywords", ["F" * 41], "at most 40 characters"),
    ("keywords.en.opt_in", ["JOIN" + "X" * 40], "at most 40 characters"),
    ("programs.flu.keywords", [f"FLU{n}" for n in range(101)], "at most 100 keywords"),
]
CONTROLS = [
    ("brand", "Acme\r\nBcc: victim@example.org", "U+000D"),
    ("brand", "Acme\nHealth", "U+000A"),
    ("programs.reminders.title", "Acme\u202eslaeD", "U+202E"),
    ("programs.reminders.title", "Acme\u2066Deals", "U+2066"),
    ("programs.reminders.description", "tips\x00", "U+0000"),
    ("programs.reminders.frequency", "Up to 4\x1b[2J", "U+001B"),
    ("programs.reminders.help_contact", "800\u2028555", "U+2028"),
    ("programs.reminders.privacy_url", "https://x.\x85example/", "U+0085"),
    ("keywords.en.opt_in", ["JO\u200fIN"], "U+200F"),
    ("templates.en.opt_out", "{program}: no more msgs.\r\nReply START", "U+000D"),
    ("templates.en.opt_out", "{program}: no more msgs.\x7f", "U+007F"),
]


@pytest.mark.parametrize(("key", "value", "says"), TOO_LONG + CONTROLS)
def test_a_long_or_unprintable_field_is_refused_naming_the_key(
    key: str, value: object, says: str
) -> None:
    """Every text field has a length limit and refuses control and bidi characters; the
    error names the file and the dotted key."""
    with pytest.raises(CatalogError) as caught:
        load_sender(_with(key, value), "12345.toml")
    assert caught.value.key.startswith(key)
    assert says in caught.value.message
    assert str(caught.value).startswith(f"12345.toml: {key}")


def test_counts_are_bounded() -> None:
    """More than 50 programs, or more than 20 languages in a table, are refused quickly,
    before each keyword is checked against every opt-out."""
    many = _definition()
    base = many["programs"]["reminders"]
    many["programs"] = {f"p{n}": {**base, "default": n == 0} for n in range(51)}
    with pytest.raises(CatalogError, match="programs: at most 50 programs"):
        load_sender(many, "12345.toml")
    langs = _definition()
    langs["keywords"] = {f"x{chr(97 + n // 26)}{chr(97 + n % 26)}": {} for n in range(21)}
    with pytest.raises(CatalogError, match="keywords: at most 20 languages"):
        load_sender(langs, "12345.toml")
    huge = _definition()
    huge["keywords"]["en"]["opt_in"] = [f"WORD{n} " * 3 for n in range(30_000)]
    started = time.perf_counter()
    with pytest.raises(CatalogError, match="at most 100 keywords"):
        load_sender(huge, "12345.toml")
    assert time.perf_counter() - started < 1.0


def test_a_template_keeps_line_feeds_and_the_example_files_load() -> None:
    """A template may break lines with LF (GSM 03.38 has it; mail bodies take it); the
    senders shipped in config/senders stay within every limit."""
    catalog = load_sender(
        _with("templates.en.opt_out", "{program}: no more msgs.\nReply START to rejoin."),
        "12345.toml",
    )
    assert any("\n" in t.text for t in catalog.templates)
    for path in CONFIG.glob("*.toml"):
        load_sender_file(path)


def test_a_sender_file_with_crlf_in_its_brand_fails_check_config_naming_it(
    tmp_path: Path,
) -> None:
    """In a file too: a TOML brand with an escaped CR LF is a load error naming the file."""
    text = (CONFIG / "12345.toml").read_text(encoding="utf-8")
    path = tmp_path / "12345.toml"
    path.write_text(
        text.replace('brand = "Acme Health"', 'brand = "Acme\\r\\nHealth"'), encoding="utf-8"
    )
    with pytest.raises(CatalogError, match=r"12345\.toml: brand: holds U\+000D"):
        load_sender_file(path)
