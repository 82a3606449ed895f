"""Unsubscribe tokens: round trip, rotation, forgery, purpose binding, expiry, opacity."""

from __future__ import annotations

import time

import pytest
from support import ROOT, SECRET

from gateway.email.links import Target, UnsubscribeLinks
from gateway.email.settings import EmailSettings
from gateway.errors import ConfigError
from gateway.security.tokens import ExpiredToken, ForgedToken, MalformedToken, TokenCodec, TokenKeys
from keywords.loading import load_catalogs

pytest_plugins = ["email_fixtures"]

OLD = "old-secret-0123456789-0123456789-0123456789"
NEW = "new-secret-0123456789-0123456789-0123456789"
DAY = 86_400


def codec(env: str | None = None, ttl: int = 30 * DAY) -> TokenCodec:
    keys = TokenKeys.from_env({"GATEWAY_TOKEN_KEYS": env} if env else {}, SECRET.encode())
    return TokenCodec(keys, default_ttl_seconds=ttl)


def test_round_trip_returns_the_payload_and_the_token_is_url_safe() -> None:
    """A token verifies to its payload and uses only URL-safe characters."""
    c = codec()
    token = c.issue(b"payload bytes", "unsubscribe")
    assert b"payload bytes" == c.verify(token, "unsubscribe")
    assert all(ch.isalnum() or ch in "-_." for ch in token)


def test_rotation_new_key_signs_old_key_still_verifies_removed_key_revokes() -> None:
    """After rotation the new key signs, old tokens verify, and dropping a key revokes them."""
    before = codec(f"k1:{OLD}")
    old_token = before.issue(b"x", "unsubscribe")
    after = codec(f"k2:{NEW},k1:{OLD}")
    new_token = after.issue(b"x", "unsubscribe")
    assert ("k1", "k2") == (old_token.split(".")[0], new_token.split(".")[0])
    assert b"x" == after.verify(old_token, "unsubscribe")
    with pytest.raises(ForgedToken):
        codec(f"k2:{NEW}").verify(old_token, "unsubscribe")


@pytest.mark.parametrize("position", [3, 10, -1])
def test_any_altered_character_is_refused(position: int) -> None:
    """Changing one character anywhere in the signed part makes the token forged or malformed."""
    c = codec()
    token = c.issue(b"ann@example.org", "unsubscribe")
    index = position % len(token)
    altered = token[:index] + ("A" if token[index] != "A" else "B") + token[index + 1 :]
    with pytest.raises((ForgedToken, MalformedToken)):
        c.verify(altered, "unsubscribe")


def test_a_token_for_one_purpose_does_not_verify_for_another() -> None:
    """The purpose is bound into the keys: an unsubscribe token is no preference-page token."""
    c = codec()
    with pytest.raises(ForgedToken):
        c.verify(c.issue(b"x", "unsubscribe"), "preferences")


def test_expired_tokens_are_refused_and_live_ones_accepted_for_the_ttl() -> None:
    """A token is valid for at least its TTL and refused after it."""
    c = codec(ttl=30 * DAY)
    issued_at = time.time() - 31 * DAY
    token = c.issue(b"x", "unsubscribe", now=issued_at)
    assert b"x" == c.verify(token, "unsubscribe", now=issued_at + 30 * DAY - 1)
    with pytest.raises(ExpiredToken):
        c.verify(token, "unsubscribe", now=issued_at + 30 * DAY + 3 * 3600)


@pytest.mark.parametrize("bad", ["", "nodot", "k0.", "k0.@@@", "toolongkid.AAAA", "k0.AAAA", "é.x"])
def test_malformed_tokens_are_refused(bad: str) -> None:
    """Junk never verifies and never raises anything but a token error."""
    with pytest.raises(MalformedToken):
        codec().verify(bad, "unsubscribe")


@pytest.mark.parametrize("env", ["k1", "k1:short", f"bad kid:{OLD}", f"k1:{OLD},k1:{NEW}"])
def test_bad_key_configuration_is_refused_at_start(env: str) -> None:
    """GATEWAY_TOKEN_KEYS must be kid:secret pairs with long secrets and unique ids."""
    with pytest.raises(ConfigError):
        codec(env)


def test_links_carry_recipient_and_list_without_the_address_in_the_url() -> None:
    """The one-click URL names recipient, list and program, yet the address cannot be read."""
    catalogs = load_catalogs(ROOT / "config" / "senders")
    links = UnsubscribeLinks(
        codec(),
        EmailSettings(public_base_url="https://u.example", unsubscribe_domain="lists.example"),
        catalogs,
    )
    target = Target("news@lists.acme-health.example", "Ann.Reader@Example.org", "newsletter")
    token = links.token(target)
    url = links.url(token)
    assert Target(target.list_id, "Ann.Reader@example.org", "newsletter") == links.target(token)
    assert "ann" not in url.lower()
    assert "example.org" not in url.lower()
    headers = links.headers(target)
    assert "List-Unsubscribe=One-Click" == headers["List-Unsubscribe-Post"]
    assert headers["List-Unsubscribe"].startswith("<https://")
    assert (
        f"<mailto:unsubscribe+{token}@lists.example?subject=unsubscribe>"
        in headers["List-Unsubscribe"]
    )
