-- 003_keep_offers: the keep offer of a widened opt-out (keywords/keep.py, docs/rules.md
-- "Revoke-all").
--
-- When revoke-all (47 CFR 64.1200(a)(10)) makes an opt-out of one program an opt-out of
-- every program of the sender, its one confirmation may ask which programs to keep
-- ((a)(11)): "Reply 1 to keep Acme Health Reminders." The offer is one row per person and
-- scope (contact, sender, channel), written by the consent writer in the transaction of the
-- opt-out, and removed by the next consent change in that scope (the answer among them) or
-- replaced by the next offer. An expired row is never read (expires_at), and goes with the
-- scope's next change. It names programs only, no address or text.
--
-- writer_record reads it with the consent rows, under the same contact locks, so an answer
-- and a second opt-out of one person are decided in order on every instance.

CREATE TABLE keep_offers (
    contact_id  bigint      NOT NULL REFERENCES contacts (id),
    sender      text        NOT NULL,
    channel     text        NOT NULL,
    programs    text[]      NOT NULL CHECK (cardinality(programs) BETWEEN 1 AND 9),
    inbound_id  bigint      NOT NULL REFERENCES inbound_events (id),
    offered_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (contact_id, sender, channel)
);

-- One offer to write, in the order statements.py builds its tuples in (see 001).
CREATE TYPE writer_keep_offer_row AS (
    contact_id bigint, sender text, channel text, programs text[], inbound_id bigint,
    offered_at timestamptz, expires_at timestamptz
);

-- As in 001, with the open keep offers of the batch's scopes ('k' rows) read last.
CREATE OR REPLACE FUNCTION writer_record(contact_rows writer_contact_row[], event_rows writer_inbound_row[])
RETURNS TABLE (kind text, id bigint, dedupe_key text, contact_id bigint, sender text,
               channel text, program text, state text, version bigint, address text)
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    ids bigint[];
    id_channels text[];
    id_addresses text[];
BEGIN
    -- 1. Create missing contacts and lock all of them, in sorted order (see above).
    WITH c AS (
        INSERT INTO contacts (channel, address)
        SELECT u.channel, u.address FROM unnest(contact_rows) AS u ORDER BY u.channel, u.address
        ON CONFLICT (channel, address) DO UPDATE SET channel = EXCLUDED.channel
        RETURNING contacts.id, contacts.channel, contacts.address
    )
    SELECT array_agg(c.id), array_agg(c.channel), array_agg(c.address)
      INTO ids, id_channels, id_addresses FROM c;
    RETURN QUERY SELECT 'c'::text, x.id, NULL::text, NULL::bigint, NULL::text, x.ch,
            NULL::text, NULL::text, NULL::bigint, x.a
        FROM unnest(ids, id_channels, id_addresses) AS x(id, ch, a);

    -- 2. and 3., from a snapshot taken with the locks held (see above).
    RETURN QUERY
    WITH m AS (SELECT * FROM unnest(ids, id_channels, id_addresses) AS m(id, ch, a)),
    e AS (
        SELECT u.*, m.id AS cid FROM unnest(event_rows) AS u
        JOIN m ON m.ch = u.channel AND m.a = u.address
    ),
    ins AS (
        INSERT INTO inbound_events (dedupe_key, channel, sender, contact_id, method,
            received_at, carrier_time, intent, match, needs_review, body, evidence)
        SELECT e.dedupe_key, e.channel, e.sender, e.cid, e.method, e.received_at,
            e.carrier_time, e.intent, e.match, e.needs_review, e.body, e.evidence::jsonb
        FROM e
        ON CONFLICT (dedupe_key) DO NOTHING
        RETURNING inbound_events.id, inbound_events.dedupe_key
    ),
    q AS (SELECT DISTINCT e.cid, e.sender AS s, e.channel AS ch FROM e)
    SELECT 'i'::text, ins.id, ins.dedupe_key, NULL::bigint, NULL::text, NULL::text, NULL::text,
           NULL::text, NULL::bigint, NULL::text FROM ins
    UNION ALL
    SELECT 's', NULL, NULL, q.cid, q.s, q.ch, k.program, k.state, k.version, NULL FROM q
    CROSS JOIN LATERAL (
        SELECT c.program, c.state, c.version FROM consent c
        WHERE c.contact_id = q.cid AND c.sender = q.s AND c.channel = q.ch OFFSET 0
    ) k
    UNION ALL
    SELECT 'o', k.id, NULL, q.cid, q.s, q.ch, NULL, NULL, NULL, NULL FROM q
    CROSS JOIN LATERAL (
        SELECT o.id FROM outbox o WHERE o.contact_id = q.cid
           AND o.status IN ('queued', 'sending')
           AND o.kind IN ('opt_in', 'pending', 'already_opted_in')
           AND o.sender = q.s AND o.channel = q.ch OFFSET 0
    ) k
    UNION ALL
    -- The open keep offer of the scope, one row per program: id the inbound event that made
    -- it, version the program's number in the offer.
    SELECT 'k', k.inbound_id, NULL, q.cid, q.s, q.ch, k.program, NULL, k.n, NULL FROM q
    CROSS JOIN LATERAL (
        SELECT ko.inbound_id, p.program, p.n FROM keep_offers ko
        CROSS JOIN LATERAL unnest(ko.programs) WITH ORDINALITY AS p(program, n)
        WHERE ko.contact_id = q.cid AND ko.sender = q.s AND ko.channel = q.ch
          AND ko.expires_at > statement_timestamp() OFFSET 0
    ) k;
END $$;
