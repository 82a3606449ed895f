"""Tests for keywords.replies and keywords.audit: rendering and the carrier-audit findings."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from keywords.audit import Finding, audit
from keywords.loading import load_catalogs, load_sender, load_sender_file
from keywords.model import ReplyKind
from keywords.replies import placeholders, render
from keywords.segments import segments

CONFIG = Path(__file__).resolve().parents[2] / "config" / "senders"
CATALOG = load_sender_file(CONFIG / "12345.toml")

BAD: dict[str, Any] = {
    "sender": "+14155550100",
    "kind": "long_code",
    "channel": "sms",
    "brand": "Shady Co",
    "default_language": "en",
    "programs": {
        "deals": {
            "title": "Shady Deals",
            "description": "deals",
            "frequency": "Up to 10 msgs/wk",
            "help_contact": "help@shady.example",
            "privacy_url": "shady.example/privacy",
            "terms_url": "shady.example/terms",
            "default": True,
        }
    },
    "templates": {
        "en": {
            "help": "We can't help, sorry.",
            "opt_in": "Welcome! Reply STOP to cancel.",
            "opt_out": "Sad to see you go.",
            "already_opted_in": "You're in. " + "Great deals every day! " * 8,
        }
    },
}


def findings(data: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(f.severity, f.key, f.message) for f in audit(load_sender(data, "bad.toml"))}


def test_example_configs_pass_audit() -> None:
    """The checked-in example senders have no findings at all."""
    assert {} == {s: audit(c) for s, c in load_catalogs(CONFIG).items() if audit(c)}


def test_example_replies_fit_one_segment() -> None:
    """Every reply of the example short code, in every language, is one SMS."""
    lengths = {
        (lang, kind, p.name): segments(render(CATALOG, kind, lang, p).text)
        for lang in CATALOG.languages
        for kind in ReplyKind
        for p in CATALOG.programs
    }
    assert {} == {k: n for k, n in lengths.items() if n != 1}


def test_bad_config_findings() -> None:
    """A non-compliant sender gets the errors a carrier audit would raise."""
    expected = {
        ("error", "templates.en.help", "does not name the program or brand"),
        ("error", "templates.en.help", "gives no contact (phone, email or URL)"),
        ("warning", "templates.en.help", "does not state the message frequency"),
        ("warning", "templates.en.help", 'does not say "Msg & data rates may apply"'),
        ("warning", "templates.en.help", "has no STOP instructions"),
        ("error", "templates.en.opt_in", "does not state the message frequency (program deals)"),
        (
            "error",
            "templates.en.opt_in",
            'does not say "Msg & data rates may apply" (program deals)',
        ),
        ("error", "templates.en.opt_in", "has no HELP instructions (program deals)"),
        (
            "error",
            "templates.en.opt_in",
            "has no link to the privacy policy (shady.example/privacy) (program deals)",
        ),
        (
            "error",
            "templates.en.opt_in",
            "has no link to the terms (shady.example/terms) (program deals)",
        ),
        ("error", "templates.en.opt_out", "does not say that no more messages will be sent"),
        (
            "error",
            "templates.en.opt_out",
            "does not say that no more messages will be sent (program deals)",
        ),
        ("warning", "templates.en.opt_out", "does not name the program or brand"),
        ("warning", "templates.en.opt_out", "does not name the program or brand (program deals)"),
        ("warning", "templates.en.opt_out", "does not say how to resume (START)"),
        ("warning", "templates.en.opt_out", "does not say how to resume (START) (program deals)"),
        (
            "warning",
            "templates.en.already_opted_in",
            "is 2 SMS segments (program deals); one is billed per segment",
        ),
    }
    assert expected == findings(BAD)


def test_findings_name_sender_and_source_errors_first() -> None:
    """Findings carry sender and source, and errors sort before warnings."""
    found = audit(load_sender(BAD, "bad.toml"))
    assert all(isinstance(f, Finding) for f in found)
    assert {("+14155550100", "bad.toml")} == {(f.sender, f.source) for f in found}
    severities = [f.severity for f in found]
    assert sorted(severities, key=lambda s: s != "error") == severities


@pytest.mark.parametrize(
    "rates",
    [
        "Msg & data rates may apply",
        "Msg&data rates may apply",
        "MSG AND DATA RATES MAY APPLY",
        "Message and data rates may apply",
    ],
)
def test_rates_phrase_variants_accepted(rates: str) -> None:
    """The rates disclosure is recognised in its usual spellings."""
    data = copy.deepcopy(BAD)
    data["templates"]["en"]["opt_in"] = (
        "{program}: {frequency}. " + rates + ". Reply HELP for help, STOP to cancel. "
        "{privacy_url} {terms_url}"
    )
    opt_in = {f for f in findings(data) if f[1] == "templates.en.opt_in"}
    assert set() == opt_in


def test_email_sender_skips_sms_rules() -> None:
    """An email list is not told about segments, rates or STOP keywords."""
    data = copy.deepcopy(BAD)
    data.update(sender="deals@lists.shady.example", kind="email_list", channel="email")
    messages = {m for _, _, m in findings(data)}
    assert not any("segment" in m or "rates" in m or "STOP" in m for m in messages)
    assert "does not say that no more messages will be sent" in messages


def test_render_fills_placeholders_and_falls_back() -> None:
    """render() fills fields; a language without templates uses the default language."""
    reply = render(CATALOG, ReplyKind.OPT_OUT, "de", CATALOG.program("flu"))
    assert ("en", "flu") == (reply.language, reply.program)
    assert reply.text.startswith("Acme Flu Shot Alerts: ")


def test_render_uses_program_translations() -> None:
    """Spanish replies show the program's Spanish title and frequency."""
    reply = render(CATALOG, ReplyKind.OPT_IN, "es", CATALOG.program("flu"))
    assert reply.text.startswith("Alertas de Vacuna Acme: ")
    assert "Hasta 3 msj/mes" in reply.text


def test_sender_wide_reply_uses_brand() -> None:
    """With no program, {program} is the brand."""
    assert render(CATALOG, ReplyKind.OPT_OUT, "en", None).text.startswith("Acme Health: ")


def test_placeholders_lists_names() -> None:
    """placeholders() returns the names used in a template."""
    assert frozenset({"brand", "program"}) == placeholders("{brand} / {program} {{literal}}")
