"""Loading rule files: every error names its file and dotted key; operators only tighten."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rules_cases import NY, SHIPPED, WRITTEN, local, shipped

from rules.errors import RulesError
from rules.evaluate import CompiledRules
from rules.loading import load_rules
from rules.model import Basis, Category, Channel, Verdict

SOURCE = 'sources = [{ citation = "House policy", url = "https://example.org/p", checked = "x" }]'


def rule(name: str = "house_extra", body: str = 'daily = "09:00-17:00"', head: str = "") -> str:
    """A minimal valid rule file with ``body`` as its windows table."""
    return f"""
[rules.{name}]
title = "Test rule"
jurisdiction = "US"
channels = ["sms"]
categories = ["marketing"]
{SOURCE}
{head}

[rules.{name}.windows]
{body}
"""


def operator(tmp_path: Path, text: str, name: str = "mine.toml") -> Path:
    directory = tmp_path / "operator"
    directory.mkdir(exist_ok=True)
    (directory / name).write_text(text, encoding="utf-8")
    return directory


def error(tmp_path: Path, text: str) -> RulesError:
    with pytest.raises(RulesError) as caught:
        load_rules(SHIPPED, operator(tmp_path, text))
    assert caught.value.source.endswith("mine.toml")
    return caught.value


def test_shipped_table_loads_and_cites_every_rule() -> None:
    """Every shipped rule has a citation, an https URL and a note of what was checked."""
    rules = shipped()
    assert {r.id for r in rules.rules} >= {
        "us_tcpa_hours",
        "us_fcc_healthcare",
        "us_fl_telemarketing",
        "us_ok_otsa",
        "us_md_spam_calls",
        "us_tx_solicitation",
        "us_ct_telemarketing",
        "us_ri_solicitation",
        "us_wa_solicitation",
    }
    for r in rules.rules:
        assert r.sources, r.id
        for source in r.sources:
            assert source.url.startswith("https://")
            assert source.checked.startswith(("2026-", "unverified"))
    assert set(Category) == set(rules.categories)


CASES = [
    ("unknown key", rule(head='colour = "red"'), "rules.house_extra.colour", "unknown key"),
    ("unknown top-level table", "[settings]\nx = 1\n", "settings", "unknown key"),
    (
        "bad weekday",
        rule(body='tues = "09:00-17:00"'),
        "rules.house_extra.windows.tues",
        "not a weekday",
    ),
    (
        "end before start",
        rule(body='mon = "20:00-08:00"'),
        "rules.house_extra.windows.mon",
        "ends before it starts",
    ),
    (
        "empty window",
        rule(body='mon = "09:00-09:00"'),
        "rules.house_extra.windows.mon",
        "ends before it starts",
    ),
    (
        "not a time",
        rule(body='mon = "25:00-26:00"'),
        "rules.house_extra.windows.mon",
        "not a time of day",
    ),
    ("bad format", rule(body='mon = "9-17"'), "rules.house_extra.windows.mon", "HH:MM-HH:MM"),
    ("never opens", rule(body='daily = "closed"'), "rules.house_extra.windows", "never opens"),
    (
        "day set twice",
        rule(body='weekdays = "09:00-17:00"\nmon = "10:00-17:00"'),
        "rules.house_extra.windows.mon",
        "sets mon again",
    ),
    (
        "bad jurisdiction",
        rule().replace('"US"', '"Florida"'),
        "rules.house_extra.jurisdiction",
        "not like",
    ),
    (
        "unknown category",
        rule().replace('["marketing"]', '["promo"]'),
        "rules.house_extra.categories",
        '"promo" is not a category',
    ),
    ("no source", rule().replace(SOURCE, ""), "rules.house_extra.sources", "cite at least one"),
    (
        "http source",
        rule().replace("https://", "http://"),
        "rules.house_extra.sources[0].url",
        "https",
    ),
    (
        "until before from",
        rule(head="effective = { from = 2027-01-01, until = 2026-01-01 }"),
        "rules.house_extra.effective.until",
        "before it starts",
    ),
    (
        "unknown calendar",
        rule(head='closed_on = ["us_moon"]'),
        "rules.house_extra.closed_on",
        'no holiday calendar "us_moon"',
    ),
    ("bad rule id", rule(name="House-Extra"), "rules.House-Extra", "lower-case"),
    ("invalid TOML", "[rules.x\n", "", "invalid TOML"),
    (
        "two caps of one kind",
        rule()
        + '[[rules.house_extra.caps]]\ncount = 2\nperiod = "rolling_24h"\nscope = "subject"\n'
        '[[rules.house_extra.caps]]\ncount = 1\nperiod = "rolling_24h"\nscope = "subject"\n',
        "rules.house_extra.caps[1]",
        "conflicts with rules.house_extra.caps[0]",
    ),
    (
        "bad cap period",
        rule() + '[[rules.house_extra.caps]]\ncount = 2\nperiod = "fortnight"\nscope = "subject"\n',
        "rules.house_extra.caps[0].period",
        "not a period",
    ),
    (
        "zero cap",
        rule()
        + '[[rules.house_extra.caps]]\ncount = 0\nperiod = "rolling_24h"\nscope = "subject"\n',
        "rules.house_extra.caps[0].count",
        "whole number from 1",
    ),
    (
        "rule that does nothing",
        rule("idle").split("[rules.idle.windows]")[0],
        "rules.idle",
        "would do nothing",
    ),
    (
        "redefined calendar",
        '[holidays.us_federal]\ntitle = "x"\nobserved = "none"\n'
        + SOURCE
        + "\nextra = [2027-01-02]\n",
        "holidays.us_federal",
        "already defined",
    ),
    (
        "bad consent level",
        '[categories.marketing]\nconsent = { sms = "maybe" }\n',
        "categories.marketing.consent.sms",
        "must be one of",
    ),
    ("unknown basis", "[consent.verbal]\nmonths = 1\n", "consent.verbal", "not a consent basis"),
]


@pytest.mark.parametrize(("text", "key", "message"), [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_load_error_names_file_and_key(tmp_path: Path, text: str, key: str, message: str) -> None:
    """Each invalid file fails with its own name, the dotted key and what is wrong."""
    found = error(tmp_path, text)
    assert key == found.key
    assert message in found.message
    assert str(found).startswith(found.source)


def test_same_rule_in_two_operator_files_conflicts(tmp_path: Path) -> None:
    """A rule id defined twice in one layer names the second file and the first."""
    directory = operator(tmp_path, rule(), "a.toml")
    operator(tmp_path, rule(), "b.toml")
    with pytest.raises(RulesError) as caught:
        load_rules(SHIPPED, directory)
    assert caught.value.source.endswith("b.toml")
    assert "rules.house_extra" == caught.value.key
    assert "a.toml" in caught.value.message


def test_shipped_table_must_cover_every_category(tmp_path: Path) -> None:
    """A shipped directory missing a category fails on that key."""
    copy = tmp_path / "shipped"
    shutil.copytree(SHIPPED, copy)
    text = (copy / "categories.toml").read_text(encoding="utf-8")
    cut = text.index("[categories.transactional]")
    (copy / "categories.toml").write_text(text[:cut], encoding="utf-8")
    with pytest.raises(RulesError) as caught:
        load_rules(copy)
    assert "categories.transactional" == caught.value.key


# Replacing a shipped definition: allowed when no weaker, refused (with the key) otherwise.
FEDERAL = """
[rules.us_tcpa_hours]
title = "TCPA calling hours, narrowed"
jurisdiction = "US"
channels = ["sms"]
categories = ["marketing"]
{SOURCE}

[rules.us_tcpa_hours.windows]
{windows}
"""
FLORIDA = """
[rules.us_fl_telemarketing]
title = "Florida"
jurisdiction = "US-FL"
presume_by_area_code = {presume}
channels = ["sms"]
categories = ["marketing"]
effective = {{ from = 2021-07-01 }}
{SOURCE}

[rules.us_fl_telemarketing.windows]
daily = "08:00-20:00"

[[rules.us_fl_telemarketing.caps]]
count = {count}
period = "rolling_24h"
scope = "{scope}"
"""

WEAKER = [
    (
        "widens the federal window",
        FEDERAL.format(SOURCE=SOURCE, windows='daily = "07:00-21:00"'),
        "rules.us_tcpa_hours.windows.mon",
        "wider than 08:00-21:00",
    ),
    (
        "closes later on sunday",
        FEDERAL.format(
            SOURCE=SOURCE,
            windows='weekdays = "08:00-21:00"\nsat = "08:00-21:00"\nsun = "08:00-21:30"',
        ),
        "rules.us_tcpa_hours.windows.sun",
        "wider",
    ),
    (
        "raises the florida cap",
        FLORIDA.format(SOURCE=SOURCE, presume="true", count=4, scope="subject"),
        "rules.us_fl_telemarketing.caps",
        "no cap at least as strict",
    ),
    (
        "drops the presumption",
        FLORIDA.format(SOURCE=SOURCE, presume="false", count=3, scope="subject"),
        "rules.us_fl_telemarketing.presume_by_area_code",
        "drops",
    ),
    (
        "stops covering a category",
        FEDERAL.format(SOURCE=SOURCE, windows='daily = "08:00-21:00"').replace(
            'categories = ["marketing"]', 'categories = ["informational"]'
        ),
        "rules.us_tcpa_hours.categories",
        "drops marketing",
    ),
    (
        "ends early",
        FEDERAL.format(SOURCE=SOURCE, windows='daily = "08:00-21:00"').replace(
            SOURCE, SOURCE + "\neffective = { until = 2027-06-30 }"
        ),
        "rules.us_tcpa_hours.effective.until",
        "ends 2027-06-30",
    ),
    (
        "moves to another jurisdiction",
        FEDERAL.format(SOURCE=SOURCE, windows='daily = "08:00-21:00"').replace('"US"', '"US-NY"'),
        "rules.us_tcpa_hours.jurisdiction",
        "replaces",
    ),
    (
        "marketing texts on less consent",
        '[categories.marketing]\nconsent = { sms = "express", email = "implied" }\n',
        "categories.marketing.consent.sms",
        "less than the shipped express_written",
    ),
    (
        "healthcare anywhere",
        '[categories.healthcare_exempt]\nconsent = { sms = "none" }\n',
        "categories.healthcare_exempt.jurisdictions",
        "unlimited",
    ),
    (
        "inquiry consent lasts a year",
        "[consent.implied_inquiry]\nmonths = 12\n",
        "consent.implied_inquiry.months",
        "longer than the shipped 6 months",
    ),
]


@pytest.mark.parametrize(
    ("text", "key", "message"), [pytest.param(*c[1:], id=c[0]) for c in WEAKER]
)
def test_weaker_replacement_is_refused(tmp_path: Path, text: str, key: str, message: str) -> None:
    """A replacement that would let some send through that the shipped one holds back fails."""
    found = error(tmp_path, text)
    assert key == found.key
    assert message in found.message
    assert "weaker than the shipped" in found.message


def test_stricter_replacements_load_and_bind(tmp_path: Path) -> None:
    """Narrower federal hours, a lower and wider Florida cap, shorter consent all load."""
    text = (
        FEDERAL.format(SOURCE=SOURCE, windows='daily = "09:00-20:00"')
        + FLORIDA.format(SOURCE=SOURCE, presume="true", count=2, scope="sender")
        + "\n[consent.implied_purchase]\nmonths = 12\n"
        + '\n[categories.marketing]\nconsent = { sms = "express_written" }\n'
    )
    rules = CompiledRules(load_rules(SHIPPED, operator(tmp_path, text)))
    at = local(NY, 2027, 3, 10, 8, 30)
    answer = rules.evaluate(rules.location("+1212"), at, Category.MARKETING, Channel.SMS, WRITTEN)
    assert (Verdict.DEFERRED, local(NY, 2027, 3, 10, 9, 0)) == (answer.verdict, answer.not_before)
    assert 12 == rules.rules.durations[Basis.IMPLIED_PURCHASE].months
    mail = rules.evaluate(rules.location("@"), at, Category.MARKETING, Channel.EMAIL, WRITTEN)
    assert Verdict.REFUSED == mail.verdict  # the operator closed marketing email


def test_added_rule_narrows_and_cannot_widen(tmp_path: Path) -> None:
    """An added rule with wide hours changes nothing; one with narrow hours binds."""
    wide = rule("house_wide", 'daily = "00:00-24:00"')
    narrow = rule("house_narrow", 'weekdays = "10:00-16:00"')
    rules = CompiledRules(load_rules(SHIPPED, operator(tmp_path, wide + narrow)))
    night = datetime(2027, 3, 10, 3, 0, tzinfo=UTC)
    answer = rules.evaluate(
        rules.location("+1212"), night, Category.MARKETING, Channel.SMS, WRITTEN
    )
    assert local(NY, 2027, 3, 10, 10, 0) == answer.not_before


def test_a_document_given_as_text_is_checked_as_an_operator_file(tmp_path: Path) -> None:
    """An operator document handed over as TOML text (the admin API's) joins the operator
    layer: an addition loads; a replacement weaker than the shipped rule, a definition
    already in an operator file, and text that is not TOML are refused naming the
    document and the key."""
    added = load_rules(SHIPPED, None, [("stored:extra", rule())])
    assert "stored:extra" in {r.file for r in added.rules}
    florida = (SHIPPED / "florida.toml").read_text(encoding="utf-8")
    stricter = load_rules(SHIPPED, None, [("stored:fl", florida.replace("08:00-20", "09:00-20"))])
    assert {"stored:fl"} == {r.file for r in stricter.rules if r.id == "us_fl_telemarketing"}
    cases = [
        (None, florida.replace("08:00-20", "07:00-20"), "rules.us_fl_telemarketing.windows.mon"),
        (operator(tmp_path, rule()), rule(), "rules.house_extra"),
        (None, "[rules", ""),
    ]
    for directory, text, key in cases:
        with pytest.raises(RulesError) as caught:
            load_rules(SHIPPED, directory, [("stored:doc", text)])
        assert ("stored:doc", key) == (caught.value.source, caught.value.key)
