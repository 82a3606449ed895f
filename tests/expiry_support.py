"""Helpers for the consent-expiry tests: a sender whose program records implied consent from
an inquiry (CASL s.10(10)(e): six months), opt-ins through the pipeline, and the SQL that
moves a consent's start back in time.

The shipped senders record express consent, which never lapses, so the tests add
``offers.toml`` (an email list with one marketing program, ``basis = "implied_inquiry"``)
beside copies of the shipped files.
"""

from __future__ import annotations

import shutil
import uuid
from datetime import datetime
from pathlib import Path

import asyncpg
from support import CONFIG

from gateway.app import Gateway
from gateway.messages import InboundMessage, Method
from keywords.model import Channel, IntentKind

OFFERS = "offers@lists.acme-health.example"
_NEWS = CONFIG.parent / "senders" / "news.toml"


def write_senders(folder: Path) -> Path:
    """A senders directory: the shipped files and ``offers.toml``; its path."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in (CONFIG.parent / "senders").glob("*.toml"):
        shutil.copy(path, folder / path.name)
    text = _NEWS.read_text(encoding="utf-8")
    for old, new in (
        ('sender = "news@lists.acme-health.example"', f'sender = "{OFFERS}"'),
        ("[programs.newsletter]", "[programs.offers]"),
        ('title = "Acme Health Newsletter"', 'title = "Acme Health Offers"'),
        ("double_opt_in = true", "double_opt_in = false"),
        ('keywords = ["SUBSCRIBE NEWSLETTER"]', "keywords = []"),
        ('basis = "express"', 'basis = "implied_inquiry"'),
    ):
        assert old in text, old
        text = text.replace(old, new, 1)
    (folder / "offers.toml").write_text(text, encoding="utf-8")
    return folder


async def opt_in(
    gateway: Gateway,
    address: str,
    *,
    method: Method = Method.WEB_FORM,
    evidence: dict[str, str] | None = None,
) -> None:
    """``address`` joins the ``offers`` program (no reply is queued)."""
    outcome = await gateway.pipeline.handle(
        InboundMessage.decided(
            channel=Channel.EMAIL,
            sender=OFFERS,
            contact=address,
            method=method,
            dedupe_key=f"test:{uuid.uuid4().hex}",
            kind=IntentKind.JOIN,
            program="offers",
            evidence=evidence or {"page_url": "https://acme.example/ask"},
            suppress_replies=True,
        )
    )
    assert outcome.ledger_seqs, "the opt-in was recorded"


async def opt_out(gateway: Gateway, address: str) -> None:
    """``address`` leaves the ``offers`` program."""
    await gateway.pipeline.handle(
        InboundMessage.decided(
            channel=Channel.EMAIL,
            sender=OFFERS,
            contact=address,
            method=Method.API,
            dedupe_key=f"test:{uuid.uuid4().hex}",
            kind=IntentKind.OPT_OUT,
            program="offers",
            suppress_replies=True,
        )
    )


async def move_since(db: asyncpg.Connection, address: str, since: datetime | str) -> None:
    """Set when ``address``'s offers consent became what it is, by SQL on ``consent``.

    The ledger refuses UPDATE (docs/DESIGN.md, invariant 4), and the listing counts from
    ``consent.updated_at``, so that is the column the tests move back. ``since`` is a time,
    or an SQL expression such as ``now() - interval '6 months'``.
    """
    value = since if isinstance(since, str) else "$2::timestamptz"
    args: list[object] = [address] if isinstance(since, str) else [address, since]
    done = await db.execute(
        f"UPDATE consent SET updated_at = {value} WHERE program = 'offers'"  # noqa: S608 - test SQL
        " AND contact_id = (SELECT id FROM contacts WHERE channel = 'email' AND address = $1)",
        *args,
    )
    assert "UPDATE 1" == done
