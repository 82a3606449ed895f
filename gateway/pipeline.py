"""The inbound pipeline (I/O layer): InboundMessage -> validate -> classify -> decide -> commit.

Every edge calls ``Pipeline.handle`` and acknowledges only what it returns: a committed
``Outcome`` (new or duplicate) means ack; ``BadInput`` means a permanent refusal that wrote
nothing; ``TemporaryFailure`` means nothing was committed and the peer must retry.
Classification is pure and runs here, before the database is touched, and so does the
revoke-all question (47 CFR 64.1200(a)(10), docs/rules.md): is the rule in force at the
message's received time? The answer travels with the event to the consent table.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

from gateway.addresses import key_and_send_address
from gateway.errors import BadInput, GatewayError, UnknownSender
from gateway.logs import mask_address
from gateway.messages import InboundMessage, Outcome
from gateway.metrics import Metrics
from gateway.storable import clean, clean_mapping, storable
from gateway.store.writer import ConsentWriter, PreparedEvent
from keywords.catalog import SenderCatalog
from keywords.classify import classify
from keywords.model import Intent, IntentKind, MatchKind
from rules.revocation import revoke_all_in_force

log = logging.getLogger(__name__)

_MAX_DEDUPE_KEY = 200
_OPT_IN_KINDS = frozenset({IntentKind.OPT_IN, IntentKind.JOIN, IntentKind.CONFIRM})


class Pipeline:
    """Turns inbound messages into committed consent changes and queued replies."""

    def __init__(
        self,
        catalogs: Mapping[str, SenderCatalog],
        writer: ConsentWriter,
        metrics: Metrics,
        *,
        default_region: str,
        max_text_chars: int,
        revoke_all: str = "auto",
    ) -> None:
        self._catalogs = catalogs
        self._writer = writer
        self._metrics = metrics
        self._region = default_region
        self._max_text = max_text_chars
        self._revoke_all = revoke_all  # [rules] revoke_all, checked at load

    def prepare(self, message: InboundMessage) -> PreparedEvent:
        """Validate and classify; raise ``BadInput`` for anything we must refuse."""
        message = _storable(message)
        catalog = self._catalogs.get(message.sender)
        if catalog is None:
            raise UnknownSender("the destination is not a configured sender")
        if catalog.channel is not message.channel:
            raise UnknownSender(f"the sender does not take {message.channel.value} messages")
        if len(message.text) > self._max_text:
            # Kept and read up to the limit, never refused: a refusal is final, and a long
            # text that begins with STOP is still an opt-out (leading-word rule). What is cut
            # is unknown, so the text counts as partial: never an opt-in.
            message = dataclasses.replace(
                message,
                text=message.text[: self._max_text],
                evidence={**message.evidence, "truncated_from": str(len(message.text))},
                partial=True,
            )
        if not message.dedupe_key or len(message.dedupe_key) > _MAX_DEDUPE_KEY:
            raise BadInput("message id missing or too long", code="bad_message_id")
        if not storable(message.dedupe_key):
            raise BadInput(
                "message id holds characters that cannot be stored", code="bad_message_id"
            )
        # The key names the contact row; replies go to the address as the person wrote it.
        address, send_to = key_and_send_address(message.channel, message.contact, self._region)
        intent = message.intent if message.intent is not None else classify(message.text, catalog)
        if message.partial and intent.kind in _OPT_IN_KINDS:
            # Part of a text is ambiguous, and an ambiguous text is never an opt-in (README);
            # flagged so that someone can ask the person what they meant.
            intent = Intent(
                IntentKind.UNKNOWN, MatchKind.NONE, language=intent.language, needs_review=True
            )
        if message.partial and intent.choices:
            # Nor is it an answer to a keep offer, which would opt in too (keywords/keep.py).
            intent = dataclasses.replace(intent, choices=())
        if intent.program is not None and not catalog.has_program(intent.program):
            raise BadInput("the sender has no such program", code="unknown_program")
        revoke_all = (
            intent.kind is IntentKind.OPT_OUT
            and message.revokes
            and revoke_all_in_force(message.received_at, self._revoke_all)
        )
        return PreparedEvent(message, address, catalog, intent, send_to, revoke_all)

    async def handle(self, message: InboundMessage) -> Outcome:
        """Record ``message``; return only after the commit (docs/DESIGN.md, invariant 1)."""
        try:
            event = self.prepare(message)
            outcome = await self._writer.submit(event)
        except GatewayError as exc:
            outcome_label = "temporary_failure" if exc.temporary else "rejected"
            self._metrics.inbound.labels(outcome_label).inc()
            log.info(
                "inbound refused",
                extra={"reason": exc.code, "sender": message.sender, "key": message.dedupe_key},
            )
            raise
        self._metrics.inbound.labels(outcome.status.value).inc()
        if not log.isEnabledFor(logging.INFO):
            return outcome  # skip building the fields: this runs for every inbound message
        intent = outcome.intent
        log.info(
            "inbound recorded",
            extra={
                "status": outcome.status.value,
                "sender": message.sender,
                "contact": mask_address(event.address),
                "intent": intent.kind.value if intent else None,
                "match": intent.match.value if intent else None,
                "review": intent.needs_review if intent else None,
                "ledger": list(outcome.ledger_seqs),
                "outbox": list(outcome.outbox_ids),
            },
        )
        return outcome


def _storable(message: InboundMessage) -> InboundMessage:
    """The message with what PostgreSQL cannot store removed from its text and evidence,
    and the evidence noting what was removed (gateway/storable.py): a ``Stop\u0000`` must
    be recorded as the opt-out it is, not fail its commit and be retried forever."""
    text, in_text = clean(message.text)
    evidence, in_evidence = clean_mapping(message.evidence)
    if not in_text and not in_evidence:
        return message
    notes = ([f"text:{in_text}"] if in_text else []) + [
        f"evidence.{key}:{count}" for key, count in sorted(in_evidence.items())
    ]
    # Counts of NUL characters and lone surrogates taken out, per field.
    evidence["removed_characters"] = ", ".join(notes)
    return dataclasses.replace(message, text=text, evidence=evidence)
