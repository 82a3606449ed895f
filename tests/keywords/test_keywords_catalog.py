"""Tests for keywords.catalog and keywords.schema: loading, indexing and load errors."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from keywords.catalog import SenderCatalog
from keywords.errors import CatalogError, KeywordsError
from keywords.loading import load_catalogs, load_sender, load_sender_file
from keywords.model import Channel, SenderKind

CONFIG = Path(__file__).resolve().parents[2] / "config" / "senders"

MINIMAL: dict[str, Any] = {
    "sender": "55555",
    "kind": "short_code",
    "channel": "sms",
    "brand": "Test Co",
    "default_language": "en",
    "programs": {
        "alerts": {
            "title": "Test Alerts",
            "description": "alerts",
            "frequency": "Up to 2 msgs/mo",
            "help_contact": "800-555-0199",
            "privacy_url": "test.example/privacy",
            "terms_url": "test.example/terms",
            "default": True,
            "keywords": ["ALERTS"],
        }
    },
    "templates": {
        "en": {
            "help": "{program}: help at {help_contact}.",
            "opt_in": "{program}: joined.",
            "opt_out": "{program}: no more msgs.",
            "already_opted_in": "{program}: already in.",
        }
    },
}


def minimal(**changes: Any) -> dict[str, Any]:
    """MINIMAL with dotted-path changes applied (a value of None deletes the key)."""
    data = copy.deepcopy(MINIMAL)
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        table = data
        for part in path:
            table = table.setdefault(part, {})
        if value is None:
            del table[last]
        else:
            table[last] = value
    return data


def test_example_configs_load() -> None:
    """Both example sender files load, keyed by sender."""
    catalogs = load_catalogs(CONFIG)
    assert {"12345", "news@lists.acme-health.example"} == set(catalogs)
    news = catalogs["news@lists.acme-health.example"]
    assert (SenderKind.EMAIL_LIST, Channel.EMAIL) == (news.kind, news.channel)


def test_catalog_is_frozen_and_hashable() -> None:
    """A catalog is hashable and equal to a reload of the same data."""
    a = load_sender(MINIMAL, "mem")
    b = load_sender(copy.deepcopy(MINIMAL), "mem")
    assert a == b
    assert hash(a) == hash(b)
    with pytest.raises(AttributeError):
        a.brand = "x"  # type: ignore[misc]


def test_reserved_words_are_always_present() -> None:
    """A sender that lists no keywords still has the reserved families."""
    catalog = load_sender(MINIMAL, "mem")
    assert {"stop", "stop all", "opt out", "arret", "alto", "help", "aide", "start", "yes"} <= set(
        catalog.index.exact
    )


def test_program_lookup() -> None:
    """program() finds a program by name; default_programs lists the defaults."""
    catalog = load_sender(MINIMAL, "mem")
    assert "Test Alerts" == catalog.program("alerts").title
    assert ("alerts",) == tuple(p.name for p in catalog.default_programs)
    with pytest.raises(KeyError):
        catalog.program("nope")


@pytest.mark.parametrize(
    ("changes", "key", "fragment"),
    [
        ({"colour": "red"}, "colour", "unknown key"),
        ({"programs__alerts__colour": "red"}, "programs.alerts.colour", "unknown key"),
        ({"brand": None}, "brand", "is required"),
        ({"programs__alerts__title": None}, "programs.alerts.title", "is required"),
        ({"programs__alerts__default": "yes"}, "programs.alerts.default", "true or false"),
        ({"programs__alerts__default": False}, "programs", "no program has default"),
        ({"programs": {}}, "programs", "at least one program"),
        ({"kind": "pager"}, "kind", "must be one of"),
        ({"sender": "12-34"}, "sender", "is not a short_code"),
        ({"channel": "email"}, "channel", 'uses channel "sms"'),
        ({"default_language": "English"}, "default_language", "language code"),
        ({"programs__Bad Name": {}}, "programs.Bad Name", "slug"),
        (
            {"keywords__en__opt_in": ["STOP"]},
            "keywords.en.opt_in",
            '"STOP" is reserved for opt_out',
        ),
        ({"keywords__en__help": ["START"]}, "keywords.en.help", '"START" is reserved for opt_in'),
        (
            {"keywords__en__opt_in": ["PLEASE STOP"]},
            "keywords.en.opt_in",
            "would read as the opt-out",
        ),
        ({"keywords__en__opt_in": ["STOPPER"]}, "keywords.en.opt_in", "would read as the opt-out"),
        (
            {"keywords__en__confirm": ["REMOVE ME"]},
            "keywords.en.confirm",
            "would read as the opt-out",
        ),
        (
            {"keywords__en__opt_in": ["JOIN", "JOIN!"], "keywords__en__help": ["join"]},
            "keywords.en.help",
            "already a keyword",
        ),
        ({"keywords__en__maybe": ["X"]}, "keywords.en.maybe", "unknown key"),
        ({"keywords__en__opt_in": "JOIN"}, "keywords.en.opt_in", "list of strings"),
        ({"keywords__en__opt_in": ["!!"]}, "keywords.en.opt_in", "no letters or digits"),
        ({"programs__alerts__keywords": ["HELP"]}, "programs.alerts.keywords", "reserved for help"),
        (
            {"programs__alerts__keywords": ["QUIT"]},
            "programs.alerts.keywords",
            "reserved for opt_out",
        ),
        (
            {"programs__all": dict(MINIMAL["programs"]["alerts"], keywords=[])},
            "programs.all",
            'makes the keyword "stop all" ambiguous',
        ),
        (
            {"templates__en__opt_out": None},
            "templates.en.opt_out",
            "required in the default language",
        ),
        ({"programs__alerts__double_opt_in": True}, "templates.en.pending", "required"),
        (
            {"templates__en__help": "{program} {phone}"},
            "templates.en.help",
            "unknown placeholder {phone}",
        ),
        ({"templates__en__help": "{brand!r}"}, "templates.en.help", "format spec or conversion"),
        ({"templates__en__help": "{brand"}, "templates.en.help", "expected '}'"),
        ({"templates__en__help": "{}"}, "templates.en.help", "unknown placeholder"),
        ({"templates__en__bye": "x"}, "templates.en.bye", "unknown key"),
        ({"programs__alerts__categories": ["ads"]}, "programs.alerts.categories", "not one of"),
        ({"programs__alerts__categories": []}, "programs.alerts.categories", "at least one"),
        (
            {"programs__alerts__categories": ["marketing", "marketing"]},
            "programs.alerts.categories",
            "twice",
        ),
        ({"programs__alerts__basis": "verbal"}, "programs.alerts.basis", "must be one of"),
    ],
)
def test_load_errors_name_the_key(changes: dict[str, Any], key: str, fragment: str) -> None:
    """Each invalid catalog raises CatalogError naming the source, the dotted key and why."""
    with pytest.raises(CatalogError) as caught:
        load_sender(minimal(**changes), "senders/bad.toml")
    error = caught.value
    assert ("senders/bad.toml", key) == (error.source, error.key)
    assert fragment in error.message
    assert str(error).startswith(f"senders/bad.toml: {key}: ")


def test_program_category_and_basis_default_and_parse() -> None:
    """Without the keys a program sends ``informational`` on ``express`` consent; with them,
    what it names, the first category being a send's default."""
    plain = load_sender(minimal(), "senders/x.toml").program("alerts")
    assert (plain.categories, plain.basis) == (("informational",), "express")
    named = load_sender(
        minimal(
            programs__alerts__categories=["marketing", "informational"],
            programs__alerts__basis="express_written",
        ),
        "senders/x.toml",
    ).program("alerts")
    assert (named.categories, named.basis) == (("marketing", "informational"), "express_written")


def test_error_str_format() -> None:
    """str() reads `file: key: message`, the form operators grep for."""
    with pytest.raises(CatalogError) as caught:
        load_sender(minimal(keywords__en__opt_in=["STOP"]), "config/senders/12345.toml")
    assert (
        'config/senders/12345.toml: keywords.en.opt_in: "STOP" is reserved for opt_out (en)'
        == str(caught.value)
    )


def test_bad_toml_file_names_the_file(tmp_path: Path) -> None:
    """Unparseable TOML is a CatalogError naming the file."""
    path = tmp_path / "broken.toml"
    path.write_text('sender = "12345\n')
    with pytest.raises(CatalogError) as caught:
        load_sender_file(path)
    assert str(path) == caught.value.source
    assert "invalid TOML" in str(caught.value)


def test_missing_file_is_a_catalog_error(tmp_path: Path) -> None:
    """A missing file is a CatalogError (a KeywordsError), not an OSError."""
    with pytest.raises(KeywordsError):
        load_sender_file(tmp_path / "nope.toml")


def test_bad_key_in_file_names_file_and_key(tmp_path: Path) -> None:
    """A file with a reserved word in an operator list names the file and the key."""
    text = (CONFIG / "12345.toml").read_text().replace('opt_in = ["SUBSCRIBE"]', 'opt_in = ["END"]')
    path = tmp_path / "12345.toml"
    path.write_text(text)
    with pytest.raises(CatalogError) as caught:
        load_sender_file(path)
    assert f'{path}: keywords.en.opt_in: "END" is reserved for opt_out (en)' == str(caught.value)


def test_duplicate_sender_across_files(tmp_path: Path) -> None:
    """Two files for one sender are refused, naming the second file and the first."""
    text = (CONFIG / "12345.toml").read_text()
    (tmp_path / "a.toml").write_text(text)
    (tmp_path / "b.toml").write_text(text)
    with pytest.raises(CatalogError) as caught:
        load_catalogs(tmp_path)
    assert (str(tmp_path / "b.toml"), "sender") == (caught.value.source, caught.value.key)
    assert str(tmp_path / "a.toml") in caught.value.message


def test_relisting_a_reserved_word_in_its_family_is_harmless() -> None:
    """An operator may repeat STOP under opt_out; ARRET and ARRÊT are one word."""
    catalog: SenderCatalog = load_sender(minimal(keywords__en__opt_out=["STOP", "Stop"]), "mem")
    assert 1 == sum(1 for k in catalog.keywords if k.normalized == "stop")
    assert 1 == sum(1 for k in catalog.keywords if k.normalized == "arret")
