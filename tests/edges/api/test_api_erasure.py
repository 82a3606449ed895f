"""Erasure holds against every capture path but the person's own new opt-in (issue 11.5).

Each test erases a subscribed person through ``POST /v1/privacy/erase``, then tries one
capture path over its real edge: captures by anyone else are refused with the stable code
``suppressed`` and write nothing; the person's own opt-in (START texted from the number, a
confirm link clicked from the mailbox) lifts the suppression, in the ledger and the audit
log, and starts a new record.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from api_helpers import TWILIO_TOKEN, call, new_key, opt_in_body, with_edges
from support import SECRET, count_rows

from gateway.app import Gateway
from gateway.edges.http.webhooks import twilio_signature
from gateway.security.signing import HEADER, WEBHOOK_PURPOSE, derive_key, sign
from gateway.settings import Settings

KEY = derive_key(SECRET.encode(), WEBHOOK_PURPOSE)
NUMBER = "+14155550123"
# The same number with its last digits in Arabic-Indic: another spelling of the person.
SPELLED = "+1415555٠١٢٣"
NEWS = "news@lists.acme-health.example"
_REMINDERS = {"sender": "12345", "program": "reminders", "channel": "sms"}
_NEWSLETTER = {"sender": NEWS, "program": "newsletter", "channel": "email"}


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Gateway]:
    """A gateway that also takes Twilio-signed inbound SMS."""
    configured = with_edges(
        settings,
        env={"GATEWAY_TWILIO_AUTH_TOKEN": TWILIO_TOKEN},
        providers={"twilio": {"public_url": "https://gw.example.com"}},
    )
    async with Gateway(configured) as gw:
        yield gw


@pytest.fixture
async def adb(settings: Settings, api: Gateway) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection to the schema, for assertions."""
    conn = await asyncpg.connect(
        api.settings.database_url or "", server_settings={"search_path": settings.database.schema}
    )
    yield conn
    await conn.close()


async def _mo(gateway: Gateway, sms_id: str, text: str, number: str = NUMBER) -> tuple[int, Any]:
    body = json.dumps({"id": sms_id, "from": number, "to": "12345", "text": text}).encode()
    headers = {"Content-Type": "application/json", HEADER: sign(KEY, body)}
    url = f"http://127.0.0.1:{gateway.http_port}/v1/inbound/sms"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as r,
    ):
        return r.status, await r.json()


async def _erased_number(gateway: Gateway) -> str:
    """An admin key; NUMBER subscribed to reminders, then erased."""
    key = await new_key(gateway, "admin")
    status, _ = await call(gateway, "POST", "/v1/consent", key=key, json=opt_in_body(NUMBER, "s"))
    assert 200 == status
    erase = {"channel": "sms", "contact": NUMBER}
    status, _ = await call(gateway, "POST", "/v1/privacy/erase", key=key, json=erase)
    assert 200 == status
    return key


async def _erased_email(gateway: Gateway, db: asyncpg.Connection) -> str:
    """An admin key; carol@example.com subscribed to the newsletter (confirmed), then erased."""
    key = await new_key(gateway, "admin")
    body = {**opt_in_body("carol@example.com", "s"), **_NEWSLETTER}
    await call(gateway, "POST", "/v1/consent", key=key, json=body)
    await call(gateway, "POST", await _confirm_path(db, "carol@example.com"))
    assert "opted_in" == await db.fetchval("SELECT state FROM consent")
    erase = {"channel": "email", "contact": "carol@example.com"}
    status, _ = await call(gateway, "POST", "/v1/privacy/erase", key=key, json=erase)
    assert 200 == status
    return key


async def _confirm_path(db: asyncpg.Connection, recipient: str) -> str:
    body = await db.fetchval(
        "SELECT body FROM outbox WHERE kind = 'pending' AND recipient = $1"
        " ORDER BY id DESC LIMIT 1",
        recipient,
    )
    match = re.search(r"/c/(\S+)", body or "")
    assert match is not None
    return f"/c/{match.group(1)}"


async def _footprint(db: asyncpg.Connection) -> tuple[int, int, int, int]:
    """What a refused capture must not change."""
    return (
        await count_rows(db, "contacts"),
        await count_rows(db, "inbound_events"),
        await count_rows(db, "ledger"),
        await count_rows(db, "outbox"),
    )


async def _gate(gateway: Gateway, key: str, scope: dict[str, str], to: str) -> tuple[bool, str]:
    _, answer = await call(gateway, "POST", "/v1/gate/check", key=key, json={**scope, "to": to})
    return answer["allowed"], answer["reason"]


@pytest.mark.parametrize(
    ("method", "program", "evidence"),
    [
        ("web_form", "reminders", None),  # single opt-in: a form is not the person's own act
        ("verbal", "reminders", {"operator": "op-7", "reference": "call-1"}),
        ("written", "reminders", {"operator": "op-7", "reference": "letter-1"}),
        ("api", "reminders", {}),
        ("verbal", "flu", {"operator": "op-7", "reference": "call-2"}),  # even to pending
        ("api", "flu", {}),
    ],
)
async def test_capture_by_others_is_refused_for_an_erased_number(
    api: Gateway, adb: asyncpg.Connection, method: str, program: str, evidence: Any
) -> None:
    """POST /v1/consent for an erased number, by each method, answers 422 ``suppressed``
    and writes nothing, whatever the spelling of the number."""
    key = await _erased_number(api)
    before = await _footprint(adb)
    body = opt_in_body(SPELLED, "again", method=method, program=program)
    if evidence is not None:
        body["evidence"] = evidence
    status, err = await call(api, "POST", "/v1/consent", key=key, json=body)

    assert (422, "suppressed") == (status, err["error"]["code"])
    assert before == await _footprint(adb)
    assert 0 == await adb.fetchval("SELECT count(*) FROM contacts WHERE address = $1", NUMBER)


async def test_a_case_variant_of_an_erased_email_is_refused(
    api: Gateway, adb: asyncpg.Connection
) -> None:
    """The issue's case: an operator's opt-in for 'Carol@Example.com' after carol@example.com
    was erased is refused (422 suppressed); nothing is mailed."""
    key = await _erased_email(api, adb)
    before = await _footprint(adb)
    body = {**opt_in_body("Carol@Example.com", "again", method="api"), **_NEWSLETTER}
    body["evidence"] = {}
    status, err = await call(api, "POST", "/v1/consent", key=key, json=body)

    assert (422, "suppressed") == (status, err["error"]["code"])
    assert before == await _footprint(adb)


async def test_the_preference_page_cannot_turn_an_erased_number_on(
    api: Gateway, adb: asyncpg.Connection
) -> None:
    """A preference link issued for the number (in any spelling): "on" shows "Not
    possible", writes nothing."""
    key = await _erased_number(api)
    _, link = await call(api, "POST", "/v1/preferences/links", key=key,
                         json={"channel": "sms", "contact": SPELLED})  # fmt: skip
    path = link["url"].removeprefix(api.api.api_settings.public_base_url)
    before = await _footprint(adb)
    form = {"channel": "sms", "sender": "12345", "program": "reminders", "action": "on",
            "nonce": "n1"}  # fmt: skip
    status, page = await call(api, "POST", path, data=form)

    assert (200, True) == (status, "Not possible" in page)
    assert before == await _footprint(adb)


@pytest.mark.parametrize("text", ["START", "UNSTOP"])
async def test_start_texted_from_the_number_lifts_the_suppression(
    api: Gateway, adb: asyncpg.Connection, text: str
) -> None:
    """The person's own fresh opt-in: recorded on a new contact (the erased one stays
    pseudonymised), the suppression gone in the same transaction, the ledger evidence and
    the audit log say so, "Joined!" is queued, and the gate allows again."""
    key = await _erased_number(api)
    status, body = await _mo(api, "own-1", text)

    assert (200, "committed", "opt_in") == (status, body["status"], body["intent"])
    assert 0 == await count_rows(adb, "suppression")
    assert not api.api.suppression.contains("sms", NUMBER, None)
    contacts = await adb.fetch("SELECT id, address FROM contacts ORDER BY id")
    assert [f"erased:{contacts[0]['id']}", NUMBER] == [r["address"] for r in contacts]
    evidence = json.loads(
        await adb.fetchval("SELECT evidence FROM ledger WHERE seq = $1", body["ledger_seqs"][0])
    )
    assert "yes" == evidence["suppression_lifted"]
    audit = await adb.fetchrow("SELECT actor, action, target, detail FROM admin_audit"
                               " WHERE action = 'suppression.lift'")  # fmt: skip
    assert audit is not None
    assert ("subject", f"contact:{contacts[1]['id']}") == (audit["actor"], audit["target"])
    assert body["ledger_seqs"] == json.loads(audit["detail"])["ledger_seqs"]
    reply = await adb.fetchrow("SELECT kind, recipient FROM outbox WHERE id = $1",
                               body["outbox_ids"][0])  # fmt: skip
    assert reply is not None
    assert ("opt_in", NUMBER) == (reply["kind"], reply["recipient"])
    assert (True, "opted_in") == await _gate(api, key, _REMINDERS, NUMBER)
    # A new record: another operator capture is no longer refused.
    status, _ = await call(api, "POST", "/v1/consent", key=key, json=opt_in_body(NUMBER, "n"))
    assert 200 == status


async def test_a_join_keyword_and_yes_from_the_number_lift_through_double_opt_in(
    api: Gateway, adb: asyncpg.Connection
) -> None:
    """FLU (a double opt-in program) from the number asks for YES without lifting; the YES
    is the opt-in, and it lifts."""
    key = await _erased_number(api)
    _, body = await _mo(api, "own-1", "FLU")
    assert 1 == len(body["outbox_ids"])
    assert 0 < await count_rows(adb, "suppression")  # pending is not yet an opt-in
    _, body = await _mo(api, "own-2", "YES")
    assert 0 == await count_rows(adb, "suppression")
    assert (True, "opted_in") == await _gate(api, key, {**_REMINDERS, "program": "flu"}, NUMBER)


async def test_a_web_form_for_a_double_opt_in_program_waits_for_the_persons_yes(
    api: Gateway, adb: asyncpg.Connection
) -> None:
    """A form cannot opt an erased number in, but a double opt-in form may ask the number
    to confirm: pending, "Reply YES" queued, suppression kept until the YES lifts it."""
    key = await _erased_number(api)
    body = opt_in_body(NUMBER, "f", program="flu")
    status, answer = await call(api, "POST", "/v1/consent", key=key, json=body)
    assert (200, "pending") == (status, answer["transitions"][0]["to"])
    assert await count_rows(adb, "suppression")
    assert (False, "pending_confirmation") == await _gate(
        api, key, {**_REMINDERS, "program": "flu"}, NUMBER
    )
    await _mo(api, "own-1", "YES")
    assert 0 == await count_rows(adb, "suppression")


async def test_start_through_the_twilio_webhook_lifts_the_suppression(
    api: Gateway, adb: asyncpg.Connection
) -> None:
    """A Twilio-signed START (Advanced Opt-Out: Twilio already replied) is the person's own
    opt-in too: lifted, recorded, no second reply."""
    key = await _erased_number(api)
    form = {"MessageSid": "SM9", "From": NUMBER, "To": "12345", "Body": "START",
            "OptOutType": "START"}  # fmt: skip
    path = "/v1/providers/twilio/sms"
    signature = twilio_signature(TWILIO_TOKEN, "https://gw.example.com" + path, list(form.items()))
    status, _ = await call(api, "POST", path, data=form,
                           headers={"X-Twilio-Signature": signature})  # fmt: skip
    assert 200 == status
    assert 0 == await count_rows(adb, "suppression")
    assert (True, "opted_in") == await _gate(api, key, _REMINDERS, NUMBER)


async def test_the_confirm_link_clicked_from_the_mailbox_lifts_an_email_suppression(
    api: Gateway, adb: asyncpg.Connection
) -> None:
    """A web form for the erased address (any case) mails a confirm link, to the spelling
    given; POSTing it is the person's own opt-in: lifted, and the gate allows again."""
    key = await _erased_email(api, adb)
    body = {**opt_in_body("Carol@EXAMPLE.com", "again"), **_NEWSLETTER}
    status, answer = await call(api, "POST", "/v1/consent", key=key, json=body)
    assert (200, "pending") == (status, answer["transitions"][0]["to"])
    assert (False, "pending_confirmation") == await _gate(
        api, key, _NEWSLETTER, "carol@example.com"
    )
    status, _ = await call(api, "POST", await _confirm_path(adb, "Carol@example.com"))

    assert 200 == status
    assert 0 == await count_rows(adb, "suppression")
    assert (True, "opted_in") == await _gate(api, key, _NEWSLETTER, "CAROL@example.com")
    actions = await adb.fetch("SELECT action FROM admin_audit ORDER BY id")
    assert "suppression.lift" == actions[-1]["action"]


async def test_rectify_to_an_erased_number_is_refused(
    api: Gateway, adb: asyncpg.Connection
) -> None:
    """The admin path: moving another contact onto an erased number is 422 suppressed."""
    key = await _erased_number(api)
    other = "+14155550177"
    await call(api, "POST", "/v1/consent", key=key, json=opt_in_body(other, "o"))
    body = {"channel": "sms", "contact": other, "new_contact": SPELLED}
    status, err = await call(api, "POST", "/v1/privacy/rectify", key=key, json=body)
    assert (422, "suppressed") == (status, err["error"]["code"])
