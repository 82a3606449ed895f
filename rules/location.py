"""Where the person is (pure layer): states and IANA time zones from a number or a record.

Calling hours are "local time at the called party's location" (47 CFR 64.1200(c)(1)). The
gateway does not know where a phone is, so it reads the area code: ``phonenumbers`` carries
libphonenumber's geocoding (place names per number prefix) and time zone data (zones per
prefix), both down to the exchange (NPA-NXX) for some area codes. An area code's states and
zones are the union over every prefix under it, so an area code that spans two zones (850 in
the Florida panhandle: Central and Eastern) gets both, and the evaluation then allows only
the instants every zone allows. An operator-recorded state or time zone replaces the area
code's (a zone alone, or the zones of the recorded state); Florida, Oklahoma and Connecticut
presume a person with one of their area codes is there whatever is recorded, so the area
code's states are kept beside the record for those rules.

Email has no area code: a recorded time zone, else the sender's default.

Lookups go through a *location key*, a short string the batch gate can build per recipient
without parsing (``sms_key``: ``"+1850"`` for any +1 850 number, ``"+44"`` for the UK, with
``"|US-NY|America/New_York"`` appended when a state or zone is recorded; ``email_key``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

import phonenumbers
from phonenumbers import PhoneMetadata
from phonenumbers.geodata import GEOCODE_DATA
from phonenumbers.tzdata import TIMEZONE_DATA

__all__ = [
    "AreaInfo",
    "Location",
    "area_info",
    "email_key",
    "known_state",
    "locate",
    "sms_key",
    "state_zones",
    "valid_zone",
]

# NANP regions that are US territories: federal US rules reach them (47 U.S.C. 227).
_US_TERRITORIES = frozenset({"PR", "VI", "GU", "MP", "AS"})

_US_STATES = {
    "Alabama": "AL", "Alaska": "AK", "Arizona": "AZ", "Arkansas": "AR", "California": "CA",
    "Colorado": "CO", "Connecticut": "CT", "Delaware": "DE", "Florida": "FL", "Georgia": "GA",
    "Hawaii": "HI", "Idaho": "ID", "Illinois": "IL", "Indiana": "IN", "Iowa": "IA",
    "Kansas": "KS", "Kentucky": "KY", "Louisiana": "LA", "Maine": "ME", "Maryland": "MD",
    "Massachusetts": "MA", "Michigan": "MI", "Minnesota": "MN", "Mississippi": "MS",
    "Missouri": "MO", "Montana": "MT", "Nebraska": "NE", "Nevada": "NV",
    "New Hampshire": "NH", "New Jersey": "NJ", "New Mexico": "NM", "New York": "NY",
    "North Carolina": "NC", "North Dakota": "ND", "Ohio": "OH", "Oklahoma": "OK",
    "Oregon": "OR", "Pennsylvania": "PA", "Rhode Island": "RI", "South Carolina": "SC",
    "South Dakota": "SD", "Tennessee": "TN", "Texas": "TX", "Utah": "UT", "Vermont": "VT",
    "Virginia": "VA", "Washington": "WA", "Washington State": "WA", "West Virginia": "WV",
    "Wisconsin": "WI", "Wyoming": "WY", "Washington D.C.": "DC",
}  # fmt: skip
_CA_PROVINCES = {
    "Alberta": "AB", "British Columbia": "BC", "British Colombia": "BC", "Manitoba": "MB",
    "New Brunswick": "NB", "Newfoundland and Labrador": "NL", "Nova Scotia": "NS",
    "Prince Edward Island": "PE", "Ontario": "ON", "Quebec": "QC", "Saskatchewan": "SK",
    "Northwest Territories": "NT", "Nunavut": "NU", "Yukon": "YT",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class AreaInfo:
    """What the numbering data says about one prefix (an area code, or a country code)."""

    country: str  # ISO 3166-1 alpha-2, territories folded into "US"
    states: frozenset[str]  # ISO 3166-2 ("US-FL"); empty when the data names none
    zones: tuple[str, ...]  # IANA zones, sorted


@dataclass(frozen=True, slots=True)
class Location:
    """Where rules look for a person: jurisdictions and the zones their local time is read in."""

    key: str
    country: str | None
    states: frozenset[str]  # recorded state, else the area code's
    area_code_states: frozenset[str]  # the area code's, for presumption rules
    zones: tuple[str, ...]

    def within(self, jurisdiction: str, *, presume_by_area_code: bool) -> bool:
        """Whether a rule of ``jurisdiction`` reaches this person."""
        if jurisdiction == self.country or jurisdiction in self.states:
            return True
        return presume_by_area_code and jurisdiction in self.area_code_states


def sms_key(e164: str, state: str | None = None, zone: str | None = None) -> str:
    """The location key of a phone number in E.164 (``+18505550100``), with any record."""
    nanp = e164.startswith("+1")
    if nanp and state is None and zone is None:
        return e164[:5]  # the common case: one slice
    base = e164[:5] if nanp else "+" + (_country_code(e164) or "")
    if state is None and zone is None:
        return base
    return f"{base}|{state or ''}|{zone or ''}"


def email_key(state: str | None = None, zone: str | None = None) -> str:
    """The location key of an email recipient: the record, else the sender's default."""
    if state is None and zone is None:
        return "@"
    return f"@|{state or ''}|{zone or ''}"


def _country_code(e164: str) -> str | None:
    for length in (1, 2, 3):
        code = e164[1 : 1 + length]
        if code.isdigit() and int(code) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return code
    return None


def locate(key: str, *, default_zone: str, default_country: str = "US") -> Location:
    """The ``Location`` behind a key; ``default_zone``/``default_country`` serve email.

    Raises ``ValueError`` for a key that is not one ``sms_key`` or ``email_key`` makes, or
    names an unknown time zone or state.
    """
    base, _, record = key.partition("|")
    state, _, zone = record.partition("|")
    if zone and not valid_zone(zone):
        raise ValueError(f"unknown time zone {zone!r}")
    if state and not _state_form(state):
        raise ValueError(f"not a state code like US-FL: {state!r}")
    if base == "@":
        country = state.partition("-")[0] if state else default_country
        zones = (zone,) if zone else (state_zones(state) if state else (default_zone,))
        states = frozenset({state}) if state else frozenset()
        return Location(key, country, states, frozenset(), zones or (default_zone,))
    if not base.startswith("+") or not base[1:].isdigit():
        raise ValueError(f"not a location key: {key!r}")
    if base.startswith("+1"):
        info = area_info(base[2:5]) or _nanp_table()["?"]
    else:
        info = _country_info(base[1:])
    if state:
        country, states = state.partition("-")[0], frozenset({state})
        zones = (zone,) if zone else (state_zones(state) or info.zones)
    else:
        country, states = info.country, info.states
        zones = (zone,) if zone else info.zones
    return Location(key, country or None, states, info.states, zones or ("UTC",))


def _state_form(state: str) -> bool:
    country, _, sub = state.partition("-")
    return len(country) == 2 and country.isupper() and 1 <= len(sub) <= 3 and sub.isalnum()


def valid_zone(zone: str) -> bool:
    """Whether ``zone`` is an IANA zone this machine's tz database has."""
    # The name is checked before anything is cached: API input reaches here, and a cache
    # keyed by it would grow with every distinct string sent.
    return zone in _zone_names() and _loads(zone)


@cache
def _loads(zone: str) -> bool:
    try:
        ZoneInfo(zone)
    except (ValueError, OSError):
        return False
    return True


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def area_info(npa: str) -> AreaInfo | None:
    """The numbering data for a +1 area code; None for one the data does not know."""
    return _nanp_table().get(npa)


def known_state(state: str) -> bool:
    """Whether ``state`` is a state, province or territory the numbering data places area
    codes in ("US-FL", "US-PR", "CA-ON"): the ones a recorded state can name."""
    return _state_form(state) and bool(state_zones(state))


def state_zones(state: str) -> tuple[str, ...]:
    """Every zone of every area code of ``state`` ("US-TX": Central and Mountain)."""
    return _state_table().get(state, ())


@cache
def _nanp_table() -> Mapping[str, AreaInfo]:
    return _nanp_tables()[0]


@cache
def _state_table() -> Mapping[str, tuple[str, ...]]:
    return _nanp_tables()[1]


@cache
def _nanp_tables() -> tuple[Mapping[str, AreaInfo], Mapping[str, tuple[str, ...]]]:
    """Area code -> states and zones (from every geocoding and zone prefix under it), and
    state -> the zones of its area codes."""
    places: dict[str, set[str]] = defaultdict(set)
    zones: dict[str, set[str]] = defaultdict(set)
    for prefix, names in GEOCODE_DATA.items():
        if prefix.startswith("1") and len(prefix) >= 4 and "en" in names:
            places[prefix[1:4]].add(names["en"])
    for prefix, found in TIMEZONE_DATA.items():
        if prefix.startswith("1") and len(prefix) >= 4:
            zones[prefix[1:4]].update(z for z in found if valid_zone(z))
    table: dict[str, AreaInfo] = {}
    by_state: dict[str, set[str]] = defaultdict(set)
    for npa in sorted(set(places) | set(zones)):
        region = _nanp_region(npa)
        country = "US" if region in _US_TERRITORIES else region
        if region in _US_TERRITORIES:
            states = frozenset({f"US-{region}"})
        elif region in ("US", "CA"):
            states = frozenset(s for name in places[npa] for s in _states_of(name, region))
        else:
            states = frozenset()
        table[npa] = AreaInfo(country, states, tuple(sorted(zones[npa])))
        for state in states:
            by_state[state].update(zones[npa])
    # An area code the data places in no state (toll-free, a new overlay) could be anywhere
    # in the fifty states or DC: it gets all their rules and zones, the strict side.
    # (Territories have area codes of their own, which the data does place.)
    territories = {f"US-{t}" for t in _US_TERRITORIES}
    all_us = frozenset(s for s in by_state if s.startswith("US-") and s not in territories)
    us_zones = tuple(sorted({z for s in all_us for z in by_state[s]}))
    for npa, info in list(table.items()):
        if info.country == "US" and not info.states:
            table[npa] = AreaInfo("US", all_us, us_zones)
    table["?"] = AreaInfo("US", all_us, us_zones)
    return table, {state: tuple(sorted(z)) for state, z in by_state.items()}


def _nanp_region(npa: str) -> str:
    """The NANP region an area code is assigned to (US unless the metadata says otherwise)."""
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[1]:
        metadata = PhoneMetadata.metadata_for_region(region)
        pattern = metadata.leading_digits if metadata is not None else None
        # Only whole area codes count: a longer pattern ("8001") splits one by exchange.
        if pattern and npa in _expand(pattern):
            return region
    for nxx in ("234", "555", "200", "300", "456", "789"):
        number = phonenumbers.parse(f"+1{npa}{nxx}0100")
        if phonenumbers.is_valid_number(number):
            return phonenumbers.region_code_for_number(number) or "US"
    return "US"


def _expand(pattern: str) -> list[str]:
    """The digit strings of a leading-digits pattern made of alternations and [classes]."""
    out: list[str] = []
    for alternative in pattern.split("|"):
        prefixes = [""]
        i = 0
        while i < len(alternative):
            ch = alternative[i]
            if ch == "[":
                j = alternative.index("]", i)
                choices = _class(alternative[i + 1 : j])
                prefixes = [p + c for p in prefixes for c in choices]
                i = j + 1
            else:
                prefixes = [p + ch for p in prefixes]
                i += 1
        out.extend(prefixes)
    return out


def _class(body: str) -> list[str]:
    chars: list[str] = []
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            chars.extend(chr(c) for c in range(ord(body[i]), ord(body[i + 2]) + 1))
            i += 3
        else:
            chars.append(body[i])
            i += 1
    return chars


def _states_of(place: str, region: str) -> list[str]:
    """ISO 3166-2 codes in a geocoder description: "Miami, FL", "Florida", "NS/PE"."""
    tail = place.rsplit(", ", 1)[-1]
    names = _US_STATES if region == "US" else _CA_PROVINCES
    found = []
    for part in tail.split("/"):
        code = part if len(part) == 2 and part.isupper() else names.get(part)
        if code is not None:
            found.append(f"{region}-{code}")
    return found


@cache
def _country_info(code: str) -> AreaInfo:
    """A non-NANP country code: its main region, no states, the country's zones."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(int(code)) if code else None
    if not regions:
        return AreaInfo("", frozenset(), ("UTC",))
    region = regions[0]
    zones = {z for prefix, found in TIMEZONE_DATA.items() if prefix == code for z in found}
    zones |= {
        z for prefix, found in TIMEZONE_DATA.items() if prefix.startswith(code) for z in found
    }
    usable = tuple(sorted(z for z in zones if valid_zone(z))) or ("UTC",)
    return AreaInfo(region, frozenset(), usable)
