-- 008: writer_record takes its contacts and events as arrays of rows, for the reason given in
-- 007 (one checked element a row instead of one a field). Same steps, same locking order,
-- same index probes as 006 (tests/store/test_store_plans.py reads the plans).
--
-- 006's writer_record(text[], ...) stays for an instance still running the previous release
-- during a rolling upgrade, as a wrapper around this one (at the end). A later migration may
-- drop it.
CREATE TYPE writer_contact_row AS (channel text, address text);

CREATE TYPE writer_inbound_row AS (
    dedupe_key text, channel text, address text, sender text, method text,
    received_at timestamptz, carrier_time timestamptz, intent text, match text,
    needs_review boolean, body text, evidence text
);

CREATE FUNCTION writer_record(contact_rows writer_contact_row[], event_rows writer_inbound_row[])
RETURNS TABLE (kind text, id bigint, dedupe_key text, contact_id bigint, sender text,
               channel text, program text, state text, version bigint, address text)
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    ids bigint[];
    id_channels text[];
    id_addresses text[];
BEGIN
    -- 1. Create missing contacts and lock all of them, in sorted order (see 006).
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

    -- 2. and 3., from a snapshot taken with the locks held (see 006).
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
    ) k;
END $$;

-- 006's signature now hands its arrays to the function above, so one body does the work.
CREATE OR REPLACE FUNCTION writer_record(
    contact_channels text[], contact_addresses text[],
    keys text[], channels text[], addresses text[], senders text[], methods text[],
    received timestamptz[], carrier timestamptz[], intents text[], matches text[],
    review boolean[], bodies text[], evidence text[]
) RETURNS TABLE (kind text, id bigint, dedupe_key text, contact_id bigint, sender text,
                 channel text, program text, state text, version bigint, address text)
LANGUAGE sql VOLATILE SET search_path FROM CURRENT AS $$
    SELECT * FROM writer_record(
        ARRAY(SELECT ROW(ch, a)::writer_contact_row
              FROM unnest(contact_channels, contact_addresses) AS u(ch, a)),
        ARRAY(SELECT ROW(k, ch, a, s, mth, r, ct, i, mt, nr, b, ev)::writer_inbound_row
              FROM unnest(keys, channels, addresses, senders, methods, received, carrier,
                          intents, matches, review, bodies, evidence)
                   AS u(k, ch, a, s, mth, r, ct, i, mt, nr, b, ev)))
$$;
