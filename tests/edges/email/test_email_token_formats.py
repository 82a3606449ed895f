"""Token formats: new links are AES-SIV (format 2); links issued before it still open.

The golden tokens below were minted by the code before format 2 (commit a7c3d1a,
``gateway/tokens.py`` and ``gateway/edges/unsubscribe.py`` of that commit) with the fixed
keys and times named here; they must keep opening, to the same payload, for their lifetime.
"""

from __future__ import annotations

import base64
import json

import aiohttp
import asyncpg
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from mailtest import NEWS
from support import SECRET

from gateway.app import Gateway
from gateway.edges.http.consent_api import pack
from gateway.email.links import PURPOSE, Target
from gateway.security.signing import derive_key
from gateway.security.tokens import (
    ExpiredToken,
    ForgedToken,
    MalformedToken,
    TokenCodec,
    TokenError,
    TokenKeys,
)

pytest_plugins = ["email_fixtures"]

DAY = 86_400
MINTED_AT = 1_796_169_600 + 1_234  # 2026-12-02T00:20:34Z
G1_SECRET = "golden-token-key-0123456789-0123456789-01"
OLD_SECRET = "golden-old-gateway-secret-0123456789-0123456789"
NEW_SECRET = "golden-new-gateway-secret-0123456789-0123456789"
# GATEWAY_TOKEN_KEYS="g1:<G1_SECRET>", payload b"golden payload \0\xff", purpose unsubscribe,
# TTL 60 days, minted at MINTED_AT: expires 2027-01-31T01:00:00Z.
G1_UNSUBSCRIBE = "g1.fNXAIdO6nIctG73p2kULTn4ifLcJaADnkKWVMVLKYP_b"
G1_EXPIRES = 1_801_357_200
# k0 of the gateway secret OLD_SECRET, payload b"rotated", purpose preferences, TTL 90 days.
OLD_K0_PREFERENCES = "k0.FKcTcp8Np3w-MqRDhwbzPZqjVcUf9zs"
# k0 of the tests' SECRET, a confirm link (TTL 72 hours) for Ann@example.org on the news list.
K0_CONFIRM = (
    "k0.DeiyxIa14iElrqd5UzzFWdB0RXfYA6XTgrMICTuacbzLtDCA1cC-boKoFbhLtrsBrEdkQKRObDGQ-WaPyEDLOE3"
    "2WOdUQE1aDAMMd1RqzA"
)
# k0 of the tests' SECRET with a TTL of 36,500 days, so a running gateway opens them:
# an unsubscribe link for Golden.Reader@example.org (no program), one for
# golden.program@example.org and the newsletter program, the VERP bounce address of
# outbox row 42, and a preference link for +14155550142.
SERVER_UNSUBSCRIBE = "k0.tTEgvcVFcS0_-hlRncLcO7TNl7gB8iCCTZNmkWbV3vAh0EPw6dBEoHDVyQ44QQ"
SERVER_UNSUBSCRIBE_PROGRAM = (
    "k0.pBOjN5x6DUmH5tLr-Mt_rhc2NDOjiPhqoGyCaG5XWIJU09IfqN4Wstm26-frEcWqZZzt804HnBEH"
)
SERVER_VERP_42 = "bounces+k0.Tmhu0-MxRE0CBPj79vb08DHxhn4cRgAM@lists.acme-health.example"
SERVER_PREFERENCES = "k0.TL2Be4RH-nJglF_77ohNH3grx7ny_69s__c212JkDp8"


def codec(
    env: str | None = None, secret: str = SECRET, previous: tuple[str, ...] = ()
) -> TokenCodec:
    keys = TokenKeys.from_env(
        {"GATEWAY_TOKEN_KEYS": env} if env else {},
        secret.encode(),
        tuple(p.encode() for p in previous),
    )
    return TokenCodec(keys, default_ttl_seconds=60 * DAY)


def raw(token: str) -> bytes:
    body = token.partition(".")[2]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def altered(token: str, index: int) -> str:
    """``token`` with the character at ``index`` replaced, still canonical base64url."""
    body_start = token.index(".") + 1
    index = body_start + index % (len(token) - body_start - 1)  # never the last character
    return token[:index] + ("A" if token[index] != "A" else "B") + token[index + 1 :]


def test_golden_tokens_of_the_old_format_open_to_the_same_payload() -> None:
    """Tokens minted by the code before format 2 verify to the payload they were minted with,
    for every purpose, with GATEWAY_TOKEN_KEYS and with the k0 derived from the secret."""
    g1 = codec(f"g1:{G1_SECRET}")
    assert b"golden payload \x00\xff" == g1.verify(
        G1_UNSUBSCRIBE, "unsubscribe", now=G1_EXPIRES - 1
    )
    k0 = codec()
    confirm = pack("email", NEWS, "newsletter", "Ann@example.org")
    assert confirm == k0.verify(K0_CONFIRM, "confirm", now=MINTED_AT + 72 * 3600 - 60)
    assert pack("sms", "+14155550142") == k0.verify(SERVER_PREFERENCES, "preferences")


def test_old_format_refusals_are_what_they_were() -> None:
    """An old-format token past its expiry is expired; for another purpose, altered, or
    from a kid no longer listed it is forged."""
    g1 = codec(f"g1:{G1_SECRET}")
    with pytest.raises(ExpiredToken):
        g1.verify(G1_UNSUBSCRIBE, "unsubscribe", now=G1_EXPIRES)
    with pytest.raises(ForgedToken):
        g1.verify(G1_UNSUBSCRIBE, "preferences", now=MINTED_AT)
    for index in (0, 5, 17, -1):
        with pytest.raises((ForgedToken, MalformedToken)):
            g1.verify(altered(G1_UNSUBSCRIBE, index), "unsubscribe", now=MINTED_AT)
    with pytest.raises(ForgedToken):
        codec(f"g2:{G1_SECRET}").verify(G1_UNSUBSCRIBE, "unsubscribe", now=MINTED_AT)


def test_old_format_k0_links_survive_a_secret_rotation_until_the_old_secret_is_dropped() -> None:
    """A k0 link of the old format made under the previous secret opens while that secret is
    in GATEWAY_PREVIOUS_SECRET_KEYS, and is forged once it is dropped."""
    rotated = codec(secret=NEW_SECRET, previous=(OLD_SECRET,))
    assert b"rotated" == rotated.verify(OLD_K0_PREFERENCES, "preferences", now=MINTED_AT)
    with pytest.raises(ForgedToken):
        codec(secret=NEW_SECRET).verify(OLD_K0_PREFERENCES, "preferences", now=MINTED_AT)


def test_new_tokens_are_aes_siv_with_a_version_byte_and_the_kid() -> None:
    """A new token is <kid>.base64url(0x02 || AES-SIV): it opens with cryptography's AESSIV
    under HKDF-SHA256(secret, info "consent-gateway/token/v2/<purpose>") with the version,
    kid and purpose as associated data, to a 3-byte expiry hour and the payload."""
    c = codec(f"g1:{G1_SECRET}")
    token = c.issue(b"new payload", "unsubscribe", now=MINTED_AT)
    assert "g1" == token.partition(".")[0]
    sealed = raw(token)
    assert 2 == sealed[0]
    key = HKDF(
        algorithm=hashes.SHA256(),
        length=64,
        salt=None,
        info=b"consent-gateway/token/v2/unsubscribe",
    ).derive(G1_SECRET.encode())
    plain = AESSIV(key).decrypt(
        sealed[1:], [b"consent-gateway/token", b"\x02", b"g1", b"unsubscribe"]
    )
    assert (MINTED_AT + 60 * DAY) // 3600 + 1 == int.from_bytes(plain[:3], "big")
    assert b"new payload" == plain[3:]
    assert b"new payload" == c.verify(token, "unsubscribe", now=MINTED_AT)


def test_new_tokens_are_the_same_all_hour_and_differ_the_next() -> None:
    """Deterministic: one payload gives one token for the hour (cacheable headers, the same
    link all hour), another the next hour; its lifetime is at least the TTL."""
    c = codec()
    hour = (MINTED_AT // 3600) * 3600
    first = c.issue(b"x", PURPOSE, now=hour + 1)
    assert first == c.issue(b"x", PURPOSE, now=hour + 3599)
    assert first != c.issue(b"x", PURPOSE, now=hour + 3600)
    assert b"x" == c.verify(first, PURPOSE, now=hour + 3599 + 60 * DAY)
    with pytest.raises(ExpiredToken):
        c.verify(first, PURPOSE, now=hour + 3600 + 60 * DAY + 3600)


def test_new_format_refusals() -> None:
    """A new token altered anywhere, with its kid swapped for another key's, for another
    purpose, past its expiry, or from a revoked kid is refused; junk bodies that start with
    the version byte are forged, not crashes."""
    both = codec(f"g1:{G1_SECRET},g2:{OLD_SECRET}")
    token = both.issue(b"payload", PURPOSE, now=MINTED_AT)
    for index in (0, 1, 9, 20, -1):
        with pytest.raises((ForgedToken, MalformedToken)):
            both.verify(altered(token, index), PURPOSE, now=MINTED_AT)
    with pytest.raises(ForgedToken):
        both.verify("g2." + token.partition(".")[2], PURPOSE, now=MINTED_AT)
    with pytest.raises(ForgedToken):
        both.verify(token, "preferences", now=MINTED_AT)
    with pytest.raises(ExpiredToken):
        both.verify(token, PURPOSE, now=MINTED_AT + 61 * DAY)
    with pytest.raises(ForgedToken):
        codec(f"g2:{OLD_SECRET}").verify(token, PURPOSE, now=MINTED_AT)
    for junk in (b"\x02" + bytes(19), b"\x02" + bytes(40), b"\x02" * 16):
        body = base64.urlsafe_b64encode(junk).rstrip(b"=").decode()
        with pytest.raises(TokenError):
            both.verify(f"g1.{body}", PURPOSE, now=MINTED_AT)


def test_new_k0_links_survive_a_secret_rotation() -> None:
    """A format-2 k0 link made under the old secret opens while the old secret is listed as
    previous, and is forged once it is dropped."""
    token = codec(secret=OLD_SECRET).issue(b"p", "preferences", now=MINTED_AT)
    assert b"p" == codec(secret=NEW_SECRET, previous=(OLD_SECRET,)).verify(
        token, "preferences", now=MINTED_AT
    )
    with pytest.raises(ForgedToken):
        codec(secret=NEW_SECRET).verify(token, "preferences", now=MINTED_AT)


def test_a_new_token_is_twenty_bytes_longer_than_its_payload() -> None:
    """Format 2 costs 20 bytes over the payload before base64url (format 1: 16), so an
    unsubscribe link for a 25-character address is 5 characters longer than before."""
    c = codec()
    for size in (8, 22, 47):
        assert 20 + size == len(raw(c.issue(bytes(size), PURPOSE)))
    assert 16 + 8 == len(raw(SERVER_VERP_42.split("+", 1)[1].split("@")[0]))


async def test_old_links_work_on_a_running_gateway(
    mail_gateway: Gateway, mdb: asyncpg.Connection
) -> None:
    """Against the real server: a one-click POST of an old-format link unsubscribes its
    recipient (200, ledger opt_out), its program link names the program, the old VERP
    address names outbox row 42, and an old preference link opens its page (200)."""
    base = f"http://127.0.0.1:{mail_gateway.http_port}"
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{base}/u/{SERVER_UNSUBSCRIBE}",
            data=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            allow_redirects=False,
        ) as response:
            assert 200 == response.status
        async with http.get(f"{base}/p/{SERVER_PREFERENCES}") as response:
            page = await response.text()
            assert (200, True) == (response.status, "Your preferences" in page)
    rows = await mdb.fetch(
        "SELECT l.program, l.action, l.method, c.address FROM ledger l"
        " JOIN contacts c ON c.id = l.contact_id"
    )
    assert [("newsletter", "opt_out", "one_click", "golden.reader@example.org")] == [
        (r["program"], r["action"], r["method"], r["address"]) for r in rows
    ]
    links = mail_gateway.email.links
    assert Target(NEWS, "golden.program@example.org", "newsletter") == links.target(
        SERVER_UNSUBSCRIBE_PROGRAM
    )
    assert 42 == links.bounced_outbox_id(SERVER_VERP_42)


async def test_new_links_on_a_running_gateway_are_format_2(
    mail_gateway: Gateway, mdb: asyncpg.Connection
) -> None:
    """The headers service hands out format-2 links, and a one-click POST of one
    unsubscribes; the mailto local part stays under 90 characters for this address."""
    links = mail_gateway.email.links
    target = Target(NEWS, "New.Reader@example.org", None)
    token = links.token(target)
    assert 2 == raw(token)[0]
    mailto = links.mailto(token)
    assert mailto is not None
    assert len(mailto.split("@")[0]) < 90
    verp = links.bounce_address(7)
    assert 2 == raw(verp.split("+", 1)[1].split("@")[0])[0]
    assert len(verp.split("@")[0]) <= 64  # RFC 5321 section 4.5.3.1.1
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"http://127.0.0.1:{mail_gateway.http_port}/u/{token}",
            data=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ) as response,
    ):
        assert 200 == response.status
    evidence = await mdb.fetchval("SELECT evidence FROM ledger")
    assert "one_click" == await mdb.fetchval("SELECT method FROM ledger")
    assert json.loads(evidence)["token"] == TokenCodec.fingerprint(token)


def test_the_derived_k0_key_is_unchanged() -> None:
    """k0 is still derived from the gateway secret as before, so every issued k0 link of
    either format keeps its key (a changed derivation would turn them all into 403)."""
    keys = TokenKeys.from_env({}, SECRET.encode())
    assert derive_key(SECRET.encode(), "tokens") == keys.keys["k0"]
