-- 006: the consent writer's first step in one round trip (gateway/store/statements.py).
--
-- It locks the batch's contacts, then records its inbound events and reads those contacts'
-- consent and unsent opt-in replies. The two must be separate statements: under READ
-- COMMITTED each statement reads from a snapshot taken when it starts, and only one taken
-- after the locks are held is sure to see what the previous holder of a lock committed. A
-- VOLATILE PL/pgSQL function takes a new snapshot for every statement it runs, so calling
-- this one costs the client a single round trip instead of two.
--
-- Every lookup is a probe per key (LATERAL ... OFFSET 0): PL/pgSQL keeps generic plans, and
-- a join the planner could flatten becomes a scan of a whole table when its plan was made on
-- empty tables (tests/store/test_store_plans.py).
CREATE FUNCTION writer_record(
    contact_channels text[], contact_addresses text[],  -- every contact of the batch, sorted
    keys text[], channels text[], addresses text[], senders text[], methods text[],
    received timestamptz[], carrier timestamptz[], intents text[], matches text[],
    review boolean[], bodies text[], evidence text[]    -- one entry per distinct event
) RETURNS TABLE (kind text, id bigint, dedupe_key text, contact_id bigint, sender text,
                 channel text, program text, state text, version bigint, address text)
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    ids bigint[];
    id_channels text[];
    id_addresses text[];
BEGIN
    -- 1. Create missing contacts and lock all of them, in sorted order so that two
    -- transactions always lock in the same order and never deadlock. The no-op update is what
    -- makes ON CONFLICT lock (and return) a row that exists.
    WITH c AS (
        INSERT INTO contacts (channel, address)
        SELECT * FROM unnest(contact_channels, contact_addresses) AS u(ch, a) ORDER BY ch, a
        ON CONFLICT (channel, address) DO UPDATE SET channel = EXCLUDED.channel
        RETURNING contacts.id, contacts.channel, contacts.address
    )
    SELECT array_agg(c.id), array_agg(c.channel), array_agg(c.address)
      INTO ids, id_channels, id_addresses FROM c;
    RETURN QUERY SELECT 'c'::text, x.id, NULL::text, NULL::bigint, NULL::text, x.ch,
            NULL::text, NULL::text, NULL::bigint, x.a
        FROM unnest(ids, id_channels, id_addresses) AS x(id, ch, a);

    -- 2. and 3., from a snapshot taken with the locks held: insert the new inbound events (a
    -- redelivered key is skipped and reported by its absence), read consent and the unsent
    -- opt-in replies (the predicate repeats the partial index outbox_cancellable's).
    RETURN QUERY
    WITH m AS (SELECT * FROM unnest(ids, id_channels, id_addresses) AS m(id, ch, a)),
    e AS (
        SELECT u.*, m.id AS cid FROM unnest(keys, channels, addresses, senders, methods,
            received, carrier, intents, matches, review, bodies, evidence)
            AS u(k, ch, a, s, mth, r, ct, i, mt, nr, b, ev)
        JOIN m ON m.ch = u.ch AND m.a = u.a
    ),
    ins AS (
        INSERT INTO inbound_events (dedupe_key, channel, sender, contact_id, method,
            received_at, carrier_time, intent, match, needs_review, body, evidence)
        SELECT k, ch, s, cid, mth, r, ct, i, mt, nr, b, ev::jsonb FROM e
        ON CONFLICT (dedupe_key) DO NOTHING
        RETURNING inbound_events.id, inbound_events.dedupe_key
    ),
    q AS (SELECT DISTINCT cid, s, ch FROM e)
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
    ) k;
END $$;
