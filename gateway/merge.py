"""Case collisions (I/O layer): opt-outs of email contacts that migration 011 set aside.

Before migration 011 an email address's local part kept its case, so ``Carol@example.com``
and ``carol@example.com`` could be two contacts, and an opt-out recorded under one left the
other opted in. The migration kept one of them under the key and set the others aside
(``case-collision:<id>``); their opt-outs are carried over here, at every start, through
the pipeline: the ledger records each one (method ``api``, the set-aside contact named in
the evidence, no reply), and the dedupe key makes every start after the first, on any
instance, a duplicate. Their opt-ins are not carried: consent must be shown for the
contact that is messaged (README "Addresses").
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import asyncpg

from gateway.errors import BadInput
from gateway.messages import InboundMessage, Method, OutcomeStatus
from gateway.pipeline import Pipeline
from gateway.store.privacy import case_collision_opt_outs
from keywords.catalog import SenderCatalog
from keywords.model import Channel, IntentKind

log = logging.getLogger(__name__)


async def carry_case_collision_opt_outs(
    pool: asyncpg.Pool, pipeline: Pipeline, catalogs: Mapping[str, SenderCatalog]
) -> int:
    """Record each set-aside opt-out for the contact key; return how many were new."""
    carried = 0
    for contact_id, key, sender, program in await case_collision_opt_outs(pool):
        catalog = catalogs.get(sender)
        if catalog is None or not catalog.has_program(program):
            continue  # a retired sender or program: the gate refuses it anyway
        try:
            outcome = await pipeline.handle(
                InboundMessage.decided(
                    channel=Channel.EMAIL,
                    sender=sender,
                    contact=key,
                    method=Method.API,
                    dedupe_key=f"case-collision:{contact_id}:{sender}:{program}",
                    kind=IntentKind.OPT_OUT,
                    program=program,
                    evidence={
                        "reason": "an opt-out recorded under a spelling that differs only by case",
                        "from_contact": f"contact:{contact_id}",
                    },
                    suppress_replies=True,
                    # An opt-out recorded before, carried to the key: it keeps its scope.
                    revokes=False,
                )
            )
        except BadInput as exc:  # an old address the new syntax check refuses
            log.warning("case collision not carried over", extra={"reason": exc.code,
                        "contact_id": contact_id})  # fmt: skip
            continue
        carried += outcome.status is OutcomeStatus.COMMITTED
    if carried:
        log.warning("opt-outs carried over from case collisions", extra={"events": carried})
    return carried
