"""A month of synthetic traffic through the real pipeline, HTTP API and outbox (November 2026).

The clock the writer stamps ledger events with and the one ``InboundMessage.decided`` reads
are frozen and moved by hand, so the month happens in a few seconds. PostgreSQL's own
``now()`` cannot be moved: the outbox rows' ``created_at`` and ``sent_at`` are put on the
synthetic clock afterwards (``rebase_outbox``), each keeping the delay it really had.

What happens, per person: SMS sign-ups by web form and by keyword, STOPs, flagged
plain-language STOPs, HELPs, email double opt-ins (some confirmed, some left to expire, some
still pending), one-click unsubscribes, send-through messages, and outside sends reported
against a batch gate decision. Exactly two things break a rule: one STOP's confirmation
leaves seven minutes late (``late_inbound``), and one outside send goes to someone who had
opted out an hour after the gate allowed them (``violating_message_id``).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import asyncpg
from audit_http import call, new_key, opt_in_body

from gateway.app import Gateway
from gateway.edges.http import consent_api
from gateway.messages import InboundMessage, Method
from gateway.senders.base import OutboxRow
from keywords.model import Channel, Intent, IntentKind, MatchKind

MONTH = datetime(2026, 11, 1, tzinfo=UTC)
LIST = "news@lists.acme-health.example"


class Clock:
    """The frozen time; ``Frozen.now()`` returns it."""

    value = MONTH


class Frozen(datetime):
    """``datetime`` whose ``now`` is the test's clock (patched into the writer and messages)."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> Frozen:
        return Clock.value  # type: ignore[return-value]


class Recorder:
    """An outbound sender that takes everything at once."""

    def __init__(self) -> None:
        self.sent: list[OutboxRow] = []

    def available(self) -> bool:
        return True

    async def send(self, row: OutboxRow) -> str | None:
        self.sent.append(row)
        return f"ref-{row.id}"


@dataclass
class Month:
    """What the traffic did, for the assertions."""

    late_inbound: int = 0
    violating_message_id: str = ""
    flagged: list[int] = field(default_factory=list)
    synthetic_outbox: dict[int, datetime] = field(default_factory=dict)
    admin_key: str = ""


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    return MONTH + timedelta(days=day - 1, hours=hour, minutes=minute)


def _sms(text: str, number: str, when: datetime) -> InboundMessage:
    key = f"synthetic:{uuid.uuid4().hex}"
    return InboundMessage(
        channel=Channel.SMS,
        sender="12345",
        contact=number,
        text=text,
        method=Method.SMS_KEYWORD,
        dedupe_key=key,
        received_at=when,
        evidence={"message_id": key},
    )


def _one_click(address: str, when: datetime) -> InboundMessage:
    return InboundMessage(
        channel=Channel.EMAIL,
        sender=LIST,
        contact=address,
        text="List-Unsubscribe=One-Click",
        method=Method.ONE_CLICK,
        dedupe_key=f"oneclick:synthetic:{uuid.uuid4().hex}",
        received_at=when,
        evidence={"source": "one_click", "token": "synthetic"},
        intent=Intent(IntentKind.OPT_OUT_ALL, MatchKind.EXACT, keyword="one-click"),
    )


def _email_signup(address: str, key: str) -> dict[str, Any]:
    body = opt_in_body(address, key, channel="email", sender=LIST, program="newsletter")
    body["evidence"] = {**body["evidence"], "checkbox_text": "Email me the newsletter"}
    return body


async def run_month(gateway: Gateway) -> Month:
    """The month's traffic; returns what it did."""
    month = Month()
    key = month.admin_key = await new_key(gateway, "admin")
    sender_key = await new_key(gateway, "send", "read")
    numbers = [f"+1415555{1000 + i}" for i in range(90)]
    subscribed: list[str] = []  # SMS numbers opted in to reminders, not yet out
    emails: list[str] = []
    confirmed_emails: list[str] = []

    async def capture(body: dict[str, Any], when: datetime) -> dict[str, Any]:
        Clock.value = when
        status, result = await call(gateway, "POST", "/v1/consent", key=key, json=body)
        assert 200 == status, result
        for outbox_id in result["outbox_ids"]:
            month.synthetic_outbox[outbox_id] = when
        return dict(result)

    async def handle(message: InboundMessage) -> Any:
        Clock.value = message.received_at
        return await gateway.pipeline.handle(message)

    people = iter(numbers)
    for day in range(1, 31):
        for n in range(2):  # web-form sign-ups with complete evidence
            number = next(people)
            await capture(opt_in_body(number, f"form-{day}-{n}"), _at(day, 9, n))
            subscribed.append(number)
        if day % 2 == 0:  # a keyword sign-up
            number = next(people)
            await handle(_sms("START", number, _at(day, 10)))
            subscribed.append(number)
        if day % 3 == 0 and day != 20:  # a STOP, confirmed within seconds
            outcome = await handle(_sms("STOP", subscribed.pop(0), _at(day, 12)))
            if day == 15:
                month.late_inbound = outcome.inbound_id
        if day % 5 == 0:  # a plain-language STOP: acted on, flagged for review
            outcome = await handle(_sms("please stop texting me", subscribed.pop(0), _at(day, 13)))
            month.flagged.append(outcome.inbound_id)
        if day % 7 == 0:
            await handle(_sms("HELP", subscribed[0], _at(day, 14)))
        if day % 4 == 0:  # email double opt-in: pending until the link is used
            address = f"reader{day}@example.org"
            await capture(_email_signup(address, f"mail-{day}"), _at(day, 15))
            emails.append(address)
        if day % 8 == 1 and emails:  # the oldest sign-up confirms its link
            address = emails.pop(0)
            Clock.value = _at(day, 16)
            await gateway.pipeline.handle(
                InboundMessage.decided(
                    channel=Channel.EMAIL,
                    sender=LIST,
                    contact=address,
                    method=Method.WEB_FORM,
                    dedupe_key=f"confirm:synthetic:{day}",
                    kind=IntentKind.CONFIRM_LINK,
                    program="newsletter",
                    evidence={
                        "source": "confirm_link",
                        "token": "t",
                        "ip": "203.0.113.7",
                        "user_agent": "synthetic",
                    },
                    by_subject=True,
                )
            )
            confirmed_emails.append(address)
        if day % 10 == 9 and confirmed_emails:  # a one-click unsubscribe
            await handle(_one_click(confirmed_emails.pop(0), _at(day, 17)))
        if day % 3 == 1:  # send-through to someone subscribed
            Clock.value = when = _at(day, 11)
            status, sent = await call(
                gateway,
                "POST",
                "/v1/send",
                key=sender_key,
                json={"sender": "12345", "program": "reminders", "channel": "sms",
                      "to": subscribed[-1], "body": "Your appointment is tomorrow."},
            )  # fmt: skip
            assert 202 == status, sent
            month.synthetic_outbox[sent["outbox_id"]] = when
        if day == 20:
            await _outside_sends(gateway, sender_key, subscribed, month)

    for inbound_id in month.flagged[:2]:  # decisions on two of the flagged texts
        decision = "confirm" if inbound_id == month.flagged[0] else "reverse"
        status, _ = await call(
            gateway,
            "POST",
            f"/v1/admin/reviews/{inbound_id}",
            key=key,
            json={"decision": decision, "note": f"reviewed: {decision}"},
        )
        assert 200 == status
    # Sign-ups from before 25 November expire unconfirmed; later ones are still pending.
    Clock.value = _at(30, 23)
    older_than = datetime.now(UTC) - datetime(2026, 11, 25, tzinfo=UTC)
    await consent_api.expire_pending(
        gateway.pipeline, gateway.api.privacy, gateway.catalogs, int(older_than.total_seconds())
    )
    return month


async def _outside_sends(gateway: Gateway, key: str, subscribed: list[str], month: Month) -> None:
    """A batch gate at 08:00, sends reported at 12:00; one person opted out at 11:00."""
    recipients = subscribed[:5]
    Clock.value = _at(20, 8)
    status, gate = await call(
        gateway,
        "POST",
        "/v1/gate/batch",
        key=key,
        json={"sender": "12345", "program": "reminders", "channel": "sms", "to": recipients},
    )
    assert 200 == status
    assert all(r["allowed"] for r in gate["results"])
    leaver = recipients[2]
    Clock.value = _at(20, 11)
    await gateway.pipeline.handle(_sms("STOP", leaver, Clock.value))
    subscribed.remove(leaver)
    reports = [
        {
            "recipient": number,
            "sender": "12345",
            "program": "reminders",
            "channel": "sms",
            "sent_at": _at(20, 12, i).isoformat(),
            "message_id": f"outside-{i}",
            "decision_id": gate["decision_id"],
            "decision_index": i,
        }
        for i, number in enumerate(recipients)
    ]
    month.violating_message_id = "outside-2"
    status, result = await call(gateway, "POST", "/v1/sends", key=key, json={"reports": reports})
    assert (200, 5) == (status, result["recorded"]), result


async def settle_outbox(db: asyncpg.Connection, month: Month) -> None:
    """Wait until every reply has left, then put the outbox on the synthetic clock."""
    async with asyncio.timeout(30):
        while await db.fetchval(  # noqa: ASYNC110 - polls Postgres
            "SELECT count(*) FROM outbox WHERE status IN ('queued', 'sending')"
        ):
            await asyncio.sleep(0.1)  # the worker is polled by time: nothing to await
    await db.execute(
        "UPDATE outbox o SET created_at = i.received_at,"
        " sent_at = i.received_at + (o.sent_at - o.created_at) + interval '2 seconds'"
        " FROM inbound_events i WHERE o.inbound_id = i.id"
    )
    ids = list(month.synthetic_outbox)
    await db.execute(
        "UPDATE outbox o SET created_at = u.at,"
        " sent_at = u.at + (o.sent_at - o.created_at) + interval '2 seconds'"
        " FROM unnest($1::bigint[], $2::timestamptz[]) AS u(id, at) WHERE o.id = u.id",
        ids,
        [month.synthetic_outbox[i] for i in ids],
    )
    # The one late confirmation: it left seven minutes after the STOP arrived.
    await db.execute(
        "UPDATE outbox SET sent_at = created_at + interval '7 minutes'"
        " WHERE inbound_id = $1 AND kind = 'opt_out'",
        month.late_inbound,
    )
