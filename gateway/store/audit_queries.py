"""The audit report's queries (store layer): every figure of ``gateway audit report``.

All of them run in one read-only REPEATABLE READ transaction, so the report describes one
snapshot: the same data gives the same document, and the chain verification at its end
covers exactly the events the figures count (gateway/store/ledger.py ``verify`` runs as a
savepoint of the same snapshot). The snapshot's time is the report's generation time.

Lists of findings are not truncated: every late confirmation and every send to someone who
was not allowed is listed. Only the data-quality list of consents missing evidence is capped
(``MISSING_EVIDENCE_LIMIT``), with its full count.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import asyncpg

from gateway.store.ledger import verify
from gateway.store.send_reports import answer_at

MISSING_EVIDENCE_LIMIT = 1_000
EXPIRY_REASON = "double opt-in not confirmed in time"  # gateway/edges/http/consent_api.py

_W = "server_time >= $1 AND server_time < $2 AND ($3::text IS NULL OR sender = $3)"
_LW = "l.server_time >= $1 AND l.server_time < $2 AND ($3::text IS NULL OR l.sender = $3)"

_CHANGES = f"""
SELECT (server_time AT TIME ZONE 'UTC')::date AS day, channel, method, sender, program,
       action, count(*)::int AS n
  FROM ledger WHERE {_W}
 GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6
"""

_SMS_OPT_OUTS = """
SELECT i.id AS inbound_id, i.contact_id, c.address, i.sender, i.method, i.received_at,
       min(l.server_time) AS recorded_at, o.id AS outbox_id, o.status, o.sent_at
  FROM ledger l
  JOIN inbound_events i ON i.id = l.inbound_id
  JOIN contacts c ON c.id = i.contact_id
  LEFT JOIN LATERAL (
      SELECT id, status, sent_at FROM outbox
       WHERE inbound_id = i.id AND kind = 'opt_out' ORDER BY id LIMIT 1) o ON true
 WHERE l.channel = 'sms' AND l.action = 'opt_out'
   AND l.server_time >= $1 AND l.server_time < $2 AND ($3::text IS NULL OR l.sender = $3)
 GROUP BY i.id, c.address, o.id, o.status, o.sent_at
 ORDER BY i.id
"""

# An expired double opt-in is closed by the gateway, not asked for by the person.
_EMAIL_OPT_OUTS = f"""
SELECT l.inbound_id, l.contact_id, c.address, l.sender, l.method,
       coalesce(i.received_at, min(l.server_time)) AS requested_at,
       min(l.server_time) AS recorded_at, array_agg(l.program ORDER BY l.seq) AS programs
  FROM ledger l
  JOIN contacts c ON c.id = l.contact_id
  LEFT JOIN inbound_events i ON i.id = l.inbound_id
 WHERE l.channel = 'email' AND l.action = 'opt_out'
   AND coalesce(l.evidence->>'reason', '') <> '{EXPIRY_REASON}'
   AND l.server_time >= $1 AND l.server_time < $2 AND ($3::text IS NULL OR l.sender = $3)
 GROUP BY l.inbound_id, l.contact_id, c.address, l.sender, l.method, i.received_at
 ORDER BY min(l.seq)
"""

# Every opt-out of the period, one row per inbound event: when it arrived, when it took
# effect (its first ledger row, written in the transaction that changed consent) and its one
# confirmation (docs/DESIGN.md, invariant 5), for gateway/audit/deadlines.py. An expired
# double opt-in is the gateway's own closing, not a request, and has no deadline.
_OPT_OUT_TIMES = f"""
SELECT i.id AS inbound_id, i.contact_id, c.address, i.channel, i.sender, i.method,
       i.received_at, min(l.server_time) AS took_effect_at,
       array_agg(l.program ORDER BY l.seq) AS programs,
       o.id AS outbox_id, o.status, o.created_at AS queued_at, o.sent_at
  FROM ledger l
  JOIN inbound_events i ON i.id = l.inbound_id
  JOIN contacts c ON c.id = i.contact_id
  LEFT JOIN LATERAL (
      SELECT id, status, created_at, sent_at FROM outbox
       WHERE inbound_id = i.id AND kind = 'opt_out' ORDER BY id LIMIT 1) o ON true
 WHERE l.action = 'opt_out'
   AND coalesce(l.evidence->>'reason', '') <> '{EXPIRY_REASON}'
   AND {_LW}
 GROUP BY i.id, c.address, o.id, o.status, o.created_at, o.sent_at
 ORDER BY i.id
"""

# The state at the moment of a send: the last ledger event of that scope before it.
_STATE_AT = """
SELECT l.seq, l.new_state, l.server_time, l.method FROM ledger l
 WHERE l.contact_id = {cid} AND l.sender = {s} AND l.program = {p} AND l.channel = {ch}
   AND l.server_time <= {t} ORDER BY l.seq DESC LIMIT 1
"""

_OUTBOX_AFTER = f"""
SELECT o.id, o.channel, o.sender, o.program, o.kind, o.contact_id, c.address, o.created_at,
       o.sent_at, st.seq AS state_seq, coalesce(st.new_state, 'none') AS state,
       st.server_time AS state_since, st.method AS state_method
  FROM outbox o
  JOIN contacts c ON c.id = o.contact_id
  LEFT JOIN LATERAL ({
    _STATE_AT.format(cid="o.contact_id", s="o.sender", p="o.program", ch="o.channel", t="o.sent_at")
}) st
    ON true
 WHERE o.status = 'sent' AND o.program IS NOT NULL
   AND o.sent_at >= $1 AND o.sent_at < $2 AND ($3::text IS NULL OR o.sender = $3)
   AND ((o.kind = 'send' AND coalesce(st.new_state, 'none') <> 'opted_in')
        OR (o.kind IN ('opt_in', 'pending', 'already_opted_in') AND st.new_state = 'opted_out'))
 ORDER BY o.id
"""

_REPORTED = f"""
SELECT r.id, r.sender, r.message_id, r.channel, r.program, r.recipient, r.sent_at,
       r.reported_at, r.decision_id, r.decision_index, r.api_key, c.id AS contact_id,
       st.seq AS state_seq, coalesce(st.new_state, 'none') AS state,
       st.server_time AS state_since, st.method AS state_method,
       d.answers, d.decided_at, d.recipients AS decision_recipients,
       d.sender AS decision_sender, d.program AS decision_program
  FROM send_reports r
  LEFT JOIN contacts c ON c.channel = r.channel AND c.address = r.recipient
  LEFT JOIN LATERAL ({
    _STATE_AT.format(cid="c.id", s="r.sender", p="r.program", ch="r.channel", t="r.sent_at")
}) st ON true
  LEFT JOIN gate_decisions d ON d.id = r.decision_id
 WHERE r.sent_at >= $1 AND r.sent_at < $2 AND ($3::text IS NULL OR r.sender = $3)
   AND coalesce(st.new_state, 'none') <> 'opted_in'
 ORDER BY r.id
"""

_REPORTED_COUNT = """
SELECT count(*)::int FROM send_reports
 WHERE sent_at >= $1 AND sent_at < $2 AND ($3::text IS NULL OR sender = $3)
"""

_OUTBOX_SENT = """
SELECT count(*)::int FROM outbox
 WHERE status = 'sent' AND kind = 'send'
   AND sent_at >= $1 AND sent_at < $2 AND ($3::text IS NULL OR sender = $3)
"""

_REVIEWS = """
SELECT i.id AS inbound_id, i.contact_id, c.address, i.sender, i.channel, i.received_at,
       i.intent, i.match, i.body, r.decision, r.note, r.actor, r.decided_at,
       ARRAY(SELECT seq FROM ledger WHERE inbound_id = i.id ORDER BY seq) AS ledger_seqs
  FROM inbound_events i
  JOIN contacts c ON c.id = i.contact_id
  LEFT JOIN consent_reviews r ON r.inbound_id = i.id
 WHERE i.needs_review AND i.received_at >= $1 AND i.received_at < $2
   AND ($3::text IS NULL OR i.sender = $3)
 ORDER BY i.id
"""

_PENDING_AT_END = """
SELECT last.contact_id, c.address, last.sender, last.program, last.channel,
       last.server_time AS since
  FROM (SELECT DISTINCT ON (contact_id, sender, program, channel)
               contact_id, sender, program, channel, new_state, server_time
          FROM ledger WHERE server_time < $2 AND ($3::text IS NULL OR sender = $3)
           AND $1::timestamptz IS NOT NULL  -- the window's start: states as of its end
         ORDER BY contact_id, sender, program, channel, seq DESC) last
  JOIN contacts c ON c.id = last.contact_id
 WHERE last.new_state = 'pending'
 ORDER BY last.server_time, last.contact_id, last.sender, last.program
"""

_DOUBLE_OPT_IN_CLOSED = f"""
SELECT l.seq, l.contact_id, c.address, l.sender, l.program, l.channel, l.server_time,
       l.new_state, l.evidence->>'reason' AS reason
  FROM ledger l JOIN contacts c ON c.id = l.contact_id
 WHERE l.old_state = 'pending' AND l.new_state IN ('opted_in', 'opted_out')
   AND {_LW}
 ORDER BY l.seq
"""

# $4: {rule: [keys]} (gateway/audit/rules.py REQUIRED_EVIDENCE); an event's rule is
# "method:source" when there is one for its evidence's source, else its method.
_MISSING = f"""
WITH e AS (
  SELECT l.seq, l.contact_id, l.sender, l.program, l.channel, l.method, l.server_time,
         l.evidence,
         coalesce($4::jsonb -> (l.method || ':' || coalesce(l.evidence->>'source', '')),
                  $4::jsonb -> l.method) AS keys
    FROM ledger l
   WHERE l.new_state IN ('opted_in', 'pending') AND l.evidence IS NOT NULL
     AND {_LW}
), m AS (
  SELECT e.*, ARRAY(SELECT k FROM jsonb_array_elements_text(e.keys) AS k
                     WHERE coalesce(e.evidence->>k, '') = '' ORDER BY k) AS missing
    FROM e WHERE e.keys IS NOT NULL
)
SELECT seq, contact_id, sender, program, channel, method, server_time, missing,
       count(*) OVER ()::int AS total
  FROM m WHERE cardinality(missing) > 0 ORDER BY seq LIMIT {MISSING_EVIDENCE_LIMIT}
"""

_REDACTED_CONSENTS = f"""
SELECT count(*)::int FROM ledger
 WHERE new_state IN ('opted_in', 'pending') AND evidence IS NULL AND {_W}
"""

_DISCLOSURES = f"""
SELECT coalesce(evidence->>'disclosure_version', evidence->>'disclosure') AS version,
       sender, program, method, count(*)::int AS n, min(server_time) AS first_seen,
       max(server_time) AS last_seen
  FROM ledger
 WHERE new_state IN ('opted_in', 'pending') AND {_W}
 GROUP BY 1, 2, 3, 4 ORDER BY 1 NULLS FIRST, 2, 3, 4
"""

Progress = Callable[[str], None]


def _rows(records: list[asyncpg.Record]) -> list[dict[str, Any]]:
    return [dict(r) for r in records]


async def report_data(
    pool: asyncpg.Pool,
    start: datetime,
    end: datetime,
    sender: str | None,
    required_evidence: Mapping[str, tuple[str, ...]],
    progress: Progress = lambda _stage: None,
) -> dict[str, Any]:
    """Everything the report shows for ``[start, end)``, from one snapshot."""
    args = (start, end, sender)
    data: dict[str, Any] = {}
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        data["generated_at"] = await conn.fetchval("SELECT now()")
        steps: list[tuple[str, str, tuple[object, ...]]] = [
            ("changes", _CHANGES, args),
            ("sms_opt_outs", _SMS_OPT_OUTS, args),
            ("email_opt_outs", _EMAIL_OPT_OUTS, args),
            ("opt_out_times", _OPT_OUT_TIMES, args),
            ("outbox_after", _OUTBOX_AFTER, args),
            ("reported", _REPORTED, args),
            ("reviews", _REVIEWS, args),
            ("pending", _PENDING_AT_END, args),
            ("double_opt_in_closed", _DOUBLE_OPT_IN_CLOSED, args),
            ("missing_evidence", _MISSING, (*args, json.dumps(dict(required_evidence)))),
            ("disclosures", _DISCLOSURES, args),
        ]
        for name, sql, params in steps:
            progress(name)
            data[name] = _rows(await conn.fetch(sql, *params))
        progress("counts")
        data["reported_total"] = await conn.fetchval(_REPORTED_COUNT, *args)
        data["outbox_sends"] = await conn.fetchval(_OUTBOX_SENT, *args)
        data["redacted_consents"] = await conn.fetchval(_REDACTED_CONSENTS, *args)
        for row in data["reported"]:
            index = row.pop("decision_index")
            answers = row.pop("answers")
            row["decision_index"] = index
            row["gate_answer"] = None if index is None else answer_at(answers, index)
            row["decision_found"] = row["decided_at"] is not None
        progress("chain")
        head = await conn.fetchrow("SELECT seq, hash FROM ledger_head")
        chain = await verify(conn)
        data["chain"] = {
            "ok": chain.ok,
            "events": chain.events,
            "redacted": chain.redacted,
            "problems": list(chain.problems),
            "head_seq": None if head is None else head["seq"],
            "head_hash": None if head is None else bytes(head["hash"]).hex(),
        }
    return data
