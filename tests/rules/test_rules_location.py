"""Where the person is: area codes to states and zones from phonenumbers' data, records."""

from __future__ import annotations

import pytest

from rules.location import area_info, email_key, locate, sms_key, state_zones


@pytest.mark.parametrize(
    ("npa", "states", "zones"),
    [
        ("212", {"US-NY"}, ("America/New_York",)),
        ("305", {"US-FL"}, ("America/New_York",)),
        ("850", {"US-FL"}, ("America/Chicago", "America/New_York")),  # panhandle: two zones
        ("812", {"US-IN"}, ("America/Chicago", "America/New_York")),
        ("423", {"US-TN"}, ("America/Chicago", "America/New_York")),
        ("405", {"US-OK"}, ("America/Chicago",)),
        ("915", {"US-TX"}, ("America/Denver",)),  # El Paso is on Mountain time
        ("401", {"US-RI"}, ("America/New_York",)),
        ("787", {"US-PR"}, ("America/Puerto_Rico",)),
    ],
)
def test_area_code_states_and_zones(npa: str, states: set[str], zones: tuple[str, ...]) -> None:
    """The union of every prefix under the area code in the geocoding and zone data."""
    info = area_info(npa)
    assert info is not None
    assert "US" == info.country
    assert states == set(info.states)
    assert zones == info.zones


def test_canadian_and_caribbean_area_codes() -> None:
    """NANP codes outside the US keep their own country and get no US state."""
    toronto = area_info("416")
    jamaica = area_info("876")
    assert toronto is not None
    assert ("CA", {"CA-ON"}) == (toronto.country, set(toronto.states))
    assert jamaica is not None
    assert ("JM", set()) == (jamaica.country, set(jamaica.states))


def test_unplaced_us_area_code_gets_every_state() -> None:
    """Toll-free 800 could be anywhere: every state's rules and every zone of the 50 + DC."""
    where = locate("+1800", default_zone="UTC")
    assert {"US-FL", "US-RI", "US-TX", "US-WA"} <= where.states
    assert {"America/New_York", "Pacific/Honolulu"} <= set(where.zones)
    assert "US-PR" not in where.states


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (("+18505550100",), "+1850"),
        (("+18505550100", "US-NY", None), "+1850|US-NY|"),
        (("+18505550100", None, "America/Chicago"), "+1850||America/Chicago"),
        (("+442071838750",), "+44"),
        (("+4930901820",), "+49"),
        (("+353123456",), "+353"),
    ],
)
def test_sms_key(args: tuple[str, ...], key: str) -> None:
    """Keys are cheap slices: the area code for +1, the country code elsewhere."""
    assert key == sms_key(*args)


def test_records_override_the_area_code() -> None:
    """A recorded state brings its zones; a recorded zone wins; presumption states stay."""
    state = locate("+1850|US-NY|", default_zone="UTC")
    assert ({"US-NY"}, {"US-FL"}) == (set(state.states), set(state.area_code_states))
    assert ("America/New_York",) == state.zones
    zone = locate("+1512||America/New_York", default_zone="UTC")
    assert ("America/New_York",) == zone.zones
    assert {"US-TX"} == set(zone.states)
    assert ("America/Chicago", "America/Denver") == state_zones("US-TX")


def test_email_location_is_the_record_or_the_sender_default() -> None:
    """No area code for email: a recorded zone, a recorded state's zones, else the default."""
    assert ("America/Denver",) == locate(email_key(), default_zone="America/Denver").zones
    assert ("Europe/Paris",) == locate(email_key(zone="Europe/Paris"), default_zone="UTC").zones
    texan = locate(email_key(state="US-TX"), default_zone="UTC")
    assert ("US", ("America/Chicago", "America/Denver")) == (texan.country, texan.zones)


def test_presumption_only_for_rules_that_say_so() -> None:
    """``within`` reaches area-code states only for presuming rules."""
    where = locate("+1305|US-NY|", default_zone="UTC")
    assert where.within("US-FL", presume_by_area_code=True)
    assert not where.within("US-FL", presume_by_area_code=False)
    assert where.within("US", presume_by_area_code=False)


@pytest.mark.parametrize("key", ["+1850||Mars/Olympus", "+1850|Florida|", "1850", "+18x5"])
def test_bad_keys_raise(key: str) -> None:
    """An unknown zone, a malformed state or key is an error, not a guess."""
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies by fault
        locate(key, default_zone="UTC")
