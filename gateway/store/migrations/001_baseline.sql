-- 001: the whole schema, as of the first release.
--
-- The runner (gateway/store/db.py) applies each file once, in one transaction, with
-- search_path set to database.schema, so nothing here names a schema. Later changes go in
-- new files numbered 002 and up; this one is never edited again once released.
-- docs/schema.sql is the resulting schema as the catalogs describe it (`make schema`).

------------------------------------------------------------------------------------------
-- People and their consent
------------------------------------------------------------------------------------------

-- One row per person and channel. The address is the key gateway/addresses.py derives:
-- E.164 for sms; for email, the address in lower case with its domain in ASCII.
CREATE TABLE contacts (
    id          bigserial PRIMARY KEY,
    channel     text        NOT NULL CHECK (channel IN ('sms', 'email')),
    address     text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (channel, address)
);

-- The current state for each contact, sender, program and channel. Every change adds one
-- to ``version``; the cache writes by comparing versions, so a slow reader cannot put an
-- older state back over an opt-out (docs/DESIGN.md, invariant 2).
CREATE TABLE consent (
    contact_id  bigint      NOT NULL REFERENCES contacts (id),
    sender      text        NOT NULL,
    program     text        NOT NULL,
    channel     text        NOT NULL,
    state       text        NOT NULL CHECK (state IN ('none', 'pending', 'opted_in', 'opted_out')),
    version     bigint      NOT NULL CHECK (version > 0),
    updated_at  timestamptz NOT NULL,
    last_seq    bigint      NOT NULL,
    PRIMARY KEY (contact_id, sender, program, channel)
);

-- Each inbound message once, under the dedupe key its edge built from the peer's own id
-- (invariant 3). The body is kept here as evidence; logs never carry it.
CREATE TABLE inbound_events (
    id           bigserial PRIMARY KEY,
    dedupe_key   text        NOT NULL UNIQUE,
    channel      text        NOT NULL,
    sender       text        NOT NULL,
    contact_id   bigint      NOT NULL REFERENCES contacts (id),
    method       text        NOT NULL,
    received_at  timestamptz NOT NULL,
    carrier_time timestamptz,
    intent       text        NOT NULL,
    match        text        NOT NULL,
    needs_review boolean     NOT NULL,
    body         text        NOT NULL,
    evidence     jsonb       NOT NULL
);
CREATE INDEX inbound_events_review ON inbound_events (received_at) WHERE needs_review;

-- Earlier addresses of a contact whose address was rectified (GDPR art. 16), and the
-- spellings of email contacts set aside as case collisions.
CREATE TABLE contact_addresses (
    id          bigserial   PRIMARY KEY,
    contact_id  bigint      NOT NULL REFERENCES contacts (id),
    address     text        NOT NULL,
    replaced_at timestamptz NOT NULL DEFAULT now()
);

------------------------------------------------------------------------------------------
-- The ledger (invariant 4)
------------------------------------------------------------------------------------------

-- Append-only and hash-chained. ``seq`` has no gaps: the writer assigns it while it holds
-- the row lock on ledger_head, so a missing row shows as a break in the chain. ``hash``
-- covers ``evidence`` only through ``evidence_sha256``, so an erasure can set ``evidence``
-- to NULL and the chain still verifies.
CREATE TABLE ledger (
    seq             bigint      PRIMARY KEY,
    contact_id      bigint      NOT NULL REFERENCES contacts (id),
    channel         text        NOT NULL,
    sender          text        NOT NULL,
    program         text        NOT NULL,
    action          text        NOT NULL,
    method          text        NOT NULL,
    old_state       text        NOT NULL,
    new_state       text        NOT NULL,
    server_time     timestamptz NOT NULL,
    carrier_time    timestamptz,
    inbound_id      bigint      REFERENCES inbound_events (id),
    evidence        jsonb,
    evidence_sha256 bytea       NOT NULL,
    prev_hash       bytea       NOT NULL,
    hash            bytea       NOT NULL
);
CREATE INDEX ledger_contact ON ledger (contact_id, seq);

-- The newest event's seq and hash: one row, which every batch locks before it writes.
CREATE TABLE ledger_head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    seq       bigint NOT NULL,
    hash      bytea  NOT NULL
);
INSERT INTO ledger_head (seq, hash) VALUES (0, '\x0000000000000000000000000000000000000000000000000000000000000000');

-- The database refuses UPDATE, DELETE and TRUNCATE on the ledger, with one exception: an
-- UPDATE that only sets ``evidence`` to NULL (erasure). Someone who disables the trigger is
-- still caught by `gateway audit verify`.
CREATE FUNCTION ledger_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.evidence IS NULL
       AND (to_jsonb(NEW) - 'evidence') = (to_jsonb(OLD) - 'evidence') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'the consent ledger is append-only (%)', TG_OP;
END $$;
CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_is_append_only();
CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_is_append_only();

------------------------------------------------------------------------------------------
-- The outbox: replies and sends, written in the same transaction as their cause
------------------------------------------------------------------------------------------

-- ``status`` runs queued -> sending (leased by a worker) -> sent | failed | cancelled.
-- ``provider_ref`` is what the peer called the message: for SMPP, the parts'
-- "<smsc>/<message_id>", separated by spaces.
CREATE TABLE outbox (
    id              bigserial PRIMARY KEY,
    channel         text        NOT NULL,
    sender          text        NOT NULL,
    program         text,
    contact_id      bigint      NOT NULL REFERENCES contacts (id),
    recipient       text        NOT NULL,
    kind            text        NOT NULL,
    language        text        NOT NULL,
    body            text        NOT NULL,
    status          text        NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'cancelled')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    last_error      text,
    provider_ref    text,
    inbound_id      bigint      REFERENCES inbound_events (id),
    delivery_state  text,
    delivered_at    timestamptz
);
-- The worker's claim: rows waiting, or leased with a lease that may have run out.
CREATE INDEX outbox_due ON outbox (next_attempt_at, id) WHERE status IN ('queued', 'sending');
-- An opt-out cancels the person's unsent opt-in replies (gateway/store/writer.py); the
-- writer's read of them repeats this predicate.
CREATE INDEX outbox_cancellable ON outbox (contact_id)
    WHERE status IN ('queued', 'sending') AND kind IN ('opt_in', 'pending', 'already_opted_in');
-- Send-through messages still unsent, for the trigger below.
CREATE INDEX outbox_queued_sends ON outbox (contact_id)
    WHERE status IN ('queued', 'sending') AND kind = 'send';
-- Readiness and the backlog metrics read only the rows that have not left yet.
CREATE INDEX outbox_waiting ON outbox (kind, created_at) WHERE status IN ('queued', 'sending');
-- A delivery receipt names one message id of a reply's parts.
CREATE INDEX outbox_provider_refs ON outbox USING gin (string_to_array(provider_ref, ' '));

-- A send-through message (POST /v1/send) dies with the consent it was queued under. The
-- trigger runs in the writer's transaction, so an acknowledged opt-out leaves none behind
-- (invariant 2). A leased row is cancelled too: the worker re-queues a failed send only
-- while the row is still 'sending'. A send already on the wire completes as 'sent'.
CREATE FUNCTION cancel_sends_after_opt_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE outbox SET status = 'cancelled', last_error = 'recipient opted out'
     WHERE status IN ('queued', 'sending') AND kind = 'send' AND contact_id = NEW.contact_id
       AND sender = NEW.sender AND program = NEW.program AND channel = NEW.channel;
    RETURN NULL;
END $$;
CREATE TRIGGER consent_cancels_sends AFTER UPDATE OF state ON consent
    FOR EACH ROW WHEN (OLD.state = 'opted_in' AND NEW.state <> 'opted_in')
    EXECUTE FUNCTION cancel_sends_after_opt_out();

-- SMPP delivery receipts, each tied to the outbox row it reports on. A receipt the SMSC
-- sends again (our deliver_sm_resp was lost) is stored once.
CREATE TABLE delivery_receipts (
    id          bigserial   PRIMARY KEY,
    smsc        text        NOT NULL,
    message_id  text        NOT NULL,
    outbox_id   bigint      REFERENCES outbox (id),
    state       text        NOT NULL,
    error       text        NOT NULL,
    done_at     timestamptz,
    received_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (smsc, message_id, state)
);
CREATE INDEX delivery_receipts_outbox ON delivery_receipts (outbox_id);

------------------------------------------------------------------------------------------
-- The cache's safety net
------------------------------------------------------------------------------------------

-- Consent keys whose tombstone could not be written to Redis before the commit. While any
-- row is here every instance reads PostgreSQL instead of Redis (gateway/store/guard.py).
CREATE TABLE cache_repair (
    id          bigserial PRIMARY KEY,
    contact_id  bigint      NOT NULL REFERENCES contacts (id),
    sender      text        NOT NULL,
    program     text        NOT NULL,
    channel     text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

------------------------------------------------------------------------------------------
-- Email
------------------------------------------------------------------------------------------

-- Addresses with a permanent delivery failure (RFC 3464, Action: failed, status 5.x.x). A
-- bounce withdraws no consent, so this sits beside the ledger. ``dsn_key`` is the report's
-- Message-ID or a digest of it: a repeated report changes nothing.
CREATE TABLE undeliverable (
    address     text        PRIMARY KEY,
    list_id     text,
    status      text        NOT NULL,
    diagnostic  text        NOT NULL,
    dsn_key     text        NOT NULL,
    bounces     integer     NOT NULL DEFAULT 1,
    first_at    timestamptz NOT NULL DEFAULT now(),
    last_at     timestamptz NOT NULL DEFAULT now()
);

-- Single tokens revoked by fingerprint (a leaked link). Dropping a kid from
-- GATEWAY_TOKEN_KEYS revokes all of that key's tokens without touching this table.
CREATE TABLE revoked_tokens (
    fingerprint text        PRIMARY KEY,
    reason      text        NOT NULL,
    revoked_at  timestamptz NOT NULL DEFAULT now()
);

-- Complaints (RFC 5965) and bounces that could not be tied to mail we sent and did not come
-- from an authenticated feedback loop: kept for review, acted on never (invariant 11).
-- ``named`` and ``mail_from`` can be personal data: export lists such rows and erasure
-- removes the address from them.
CREATE TABLE unverified_reports (
    id           bigserial   PRIMARY KEY,
    report_key   text        NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('complaint', 'bounce')),
    peer_ip      text        NOT NULL,
    helo         text        NOT NULL,
    mail_from    text        NOT NULL,
    auth         jsonb       NOT NULL,
    detail       jsonb       NOT NULL,
    named        text[]      NOT NULL,
    reason       text        NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (report_key, kind)
);
CREATE INDEX unverified_reports_named ON unverified_reports USING gin (named);
CREATE INDEX unverified_reports_mail_from ON unverified_reports (mail_from);

------------------------------------------------------------------------------------------
-- The HTTP API and data-subject requests
------------------------------------------------------------------------------------------

-- API keys, stored as SHA-256 only. A key is 256 random bits, so a fast unsalted hash is
-- enough. ``last_used_at`` is written by the key lookup, at most about once a minute.
CREATE TABLE api_keys (
    id           text        PRIMARY KEY,
    key_sha256   bytea       NOT NULL UNIQUE,
    name         text        NOT NULL,
    scopes       text[]      NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    last_used_at timestamptz
);

-- What operators did (admin API, CLI) and every data-subject request. ``target`` is a
-- contact id or a sender, never an address.
CREATE TABLE admin_audit (
    id       bigserial   PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    actor    text        NOT NULL,
    action   text        NOT NULL,
    target   text        NOT NULL,
    detail   jsonb       NOT NULL DEFAULT '{}'
);

-- Sender definitions sent through the admin API. Each replaces the file of the same sender
-- on every instance (announced with NOTIFY).
CREATE TABLE sender_overrides (
    sender      text        PRIMARY KEY,
    definition  jsonb       NOT NULL,
    revision    bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text        NOT NULL
);

-- Erased people, as keyed hashes of their address, so that no one messages them again. The
-- rows of one address share ``entry``, one row per key; ``key_id`` is the key's
-- fingerprint, never the key. An entry lasts as long as the gateway holds one of its keys.
CREATE SEQUENCE suppression_entry_seq;
CREATE TABLE suppression (
    channel      text        NOT NULL,
    address_hmac bytea       NOT NULL,
    reason       text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    key_id       text,
    entry        bigint      NOT NULL DEFAULT nextval('suppression_entry_seq'),
    PRIMARY KEY (channel, address_hmac)
);
CREATE INDEX suppression_entry ON suppression (entry);

------------------------------------------------------------------------------------------
-- The consent writer's first round trip (gateway/store/statements.py)
------------------------------------------------------------------------------------------

-- One batch's parts travel as arrays of these row types rather than one array per column:
-- asyncpg checks each array element before it encodes it, and a row is one element. The
-- field order is the order statements.py builds its tuples in.
CREATE TYPE writer_ledger_row AS (
    seq bigint, contact_id bigint, channel text, sender text, program text, action text,
    method text, old_state text, new_state text, server_time timestamptz,
    carrier_time timestamptz, inbound_id bigint, evidence text, evidence_sha256 bytea,
    prev_hash bytea, hash bytea
);

CREATE TYPE writer_consent_row AS (
    contact_id bigint, sender text, channel text, program text, state text, version bigint,
    updated_at timestamptz, last_seq bigint
);

CREATE TYPE writer_outbox_row AS (
    channel text, sender text, program text, contact_id bigint, recipient text, kind text,
    language text, body text, inbound_id bigint, status text
);

CREATE TYPE writer_contact_row AS (channel text, address text);

CREATE TYPE writer_inbound_row AS (
    dedupe_key text, channel text, address text, sender text, method text,
    received_at timestamptz, carrier_time timestamptz, intent text, match text,
    needs_review boolean, body text, evidence text
);

-- Locks the batch's contacts (creating the missing ones), then records its inbound events
-- and reads those contacts' consent and unsent opt-in replies.
--
-- The second part must be a statement of its own: under READ COMMITTED a statement reads
-- from the snapshot taken when it starts, and only a snapshot taken once the locks are held
-- sees what the previous lock holder committed. A VOLATILE PL/pgSQL function takes a fresh
-- snapshot for each statement it runs, so the client pays one round trip for both.
--
-- Contacts are locked in sorted order, so two transactions never deadlock on them. Every
-- read is a probe per key (LATERAL ... OFFSET 0): PL/pgSQL keeps generic plans, and a join
-- the planner could flatten turns into a scan of a whole table when its plan was made on
-- empty tables (tests/store/test_store_plans.py reads the plans).
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
    ) k;
END $$;

-- The same call with one array per column, handed on to the function above. The writer no
-- longer uses it; tests/store/test_store_plans.py does. A later migration may drop it.
CREATE FUNCTION writer_record(
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

------------------------------------------------------------------------------------------
-- Long SMS: the parts of a concatenated text, each committed before it is answered
------------------------------------------------------------------------------------------

-- A long text comes as several deliver_sm (SAR TLVs, SMPP 3.4 section 5.3.2.22-24, or a
-- UDH, 3GPP TS 23.040 section 9.2.3.24.1). Each part is its own durable commit, so an SMSC
-- that sends the next part only after this one is answered is never stalled; the whole
-- text enters the pipeline once the set is complete, or at the reassembly timeout with the
-- parts that came (gateway/store/sms_parts.py).
--
-- A set is one row that every joining part locks, so parts arriving together on two binds
-- or instances see each other and the set is claimed once:
--   seqs        the parts received, in arrival order
--   claimed     the parts given to the pipeline (NULL: none yet). The inbound event's dedupe
--               key names the set and the number of parts, so a hand-off repeated after a
--               crash finds its own event.
--   handed_off  when the pipeline answered for ``claimed`` (NULL: not yet, or a part came
--               after a hand-off at the timeout and the set is due again)
-- A set that was handed off stays for [smpp] dedupe_window_seconds to recognise repeats.
CREATE TABLE sms_part_sets (
    id           bigserial   PRIMARY KEY,
    smsc         text        NOT NULL,
    source       text        NOT NULL,
    destination  text        NOT NULL,
    ref          integer     NOT NULL CHECK (ref BETWEEN 0 AND 65535),
    total        smallint    NOT NULL CHECK (total BETWEEN 2 AND 255),
    seqs         smallint[]  NOT NULL DEFAULT '{}',
    first_at     timestamptz NOT NULL DEFAULT now(),
    last_at      timestamptz NOT NULL DEFAULT now(),
    claimed      smallint[],
    claimed_at   timestamptz,
    handed_off   timestamptz,
    -- Both ends are in the key: two people may use the same 8-bit reference at once.
    UNIQUE (smsc, source, destination, ref, total)
);
-- The sweep asks which sets wait for a hand-off, which gained parts late, which to forget.
CREATE INDEX sms_part_sets_waiting ON sms_part_sets (last_at) WHERE handed_off IS NULL;
CREATE INDEX sms_part_sets_late ON sms_part_sets (last_at)
    WHERE handed_off IS NOT NULL AND cardinality(seqs) > cardinality(claimed);
CREATE INDEX sms_part_sets_done ON sms_part_sets (handed_off) WHERE handed_off IS NOT NULL;
-- Erasure finds a person's waiting parts by number.
CREATE INDEX sms_part_sets_source ON sms_part_sets (source);

CREATE TABLE sms_parts (
    set_id      bigint      NOT NULL REFERENCES sms_part_sets (id) ON DELETE CASCADE,
    seq         smallint    NOT NULL CHECK (seq BETWEEN 1 AND 255),
    data_coding smallint    NOT NULL,
    body        bytea       NOT NULL,  -- the part's octets as received, without its UDH
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (set_id, seq)
);

-- What a hand-off returns: the set, and its claimed parts' codings and octets in order.
CREATE TYPE sms_part_claim AS (
    id bigint, smsc text, source text, destination text, ref integer, total smallint,
    seqs smallint[], codings smallint[], bodies bytea[], received_at timestamptz
);

CREATE FUNCTION sms_part_claim_of(s sms_part_sets) RETURNS sms_part_claim
LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT s.id, s.smsc, s.source, s.destination, s.ref, s.total,
           array_agg(p.seq ORDER BY p.seq), array_agg(p.data_coding ORDER BY p.seq),
           array_agg(p.body ORDER BY p.seq), max(p.received_at)
      FROM sms_parts p WHERE p.set_id = s.id AND p.seq = ANY (s.claimed)
$$;

-- One part in, one round trip. Returns a claim to hand to the pipeline now (this part
-- completed the set, or it repeats a part whose hand-off is still unanswered), or no row:
-- answer the part and wait for the rest.
CREATE FUNCTION sms_part_add(p_smsc text, p_source text, p_destination text, p_ref integer,
                             p_total smallint, p_seq smallint, p_coding smallint, p_body bytea)
RETURNS SETOF sms_part_claim
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
DECLARE
    s sms_part_sets;
BEGIN
    -- DO UPDATE (not DO NOTHING) so the row is returned and locked in this one statement.
    INSERT INTO sms_part_sets AS t (smsc, source, destination, ref, total)
    VALUES (p_smsc, p_source, p_destination, p_ref, p_total)
    ON CONFLICT (smsc, source, destination, ref, total) DO UPDATE SET total = t.total
    RETURNING t.* INTO s;
    IF NOT (p_seq = ANY (s.seqs)) THEN
        -- A part seen before is a redelivery: its first copy stands.
        INSERT INTO sms_parts (set_id, seq, data_coding, body)
        VALUES (s.id, p_seq, p_coding, p_body);
        UPDATE sms_part_sets SET seqs = seqs || p_seq, last_at = now()
         WHERE id = s.id RETURNING * INTO s;
    END IF;
    IF cardinality(s.seqs) = s.total
       AND (s.claimed IS NULL OR (s.handed_off IS NOT NULL AND cardinality(s.claimed) < s.total))
    THEN
        -- Complete: claimed whole, once, under the row lock.
        UPDATE sms_part_sets SET claimed = seqs, claimed_at = now(), handed_off = NULL
         WHERE id = s.id RETURNING * INTO s;
    END IF;
    IF s.handed_off IS NULL AND p_seq = ANY (s.claimed) THEN
        RETURN NEXT sms_part_claim_of(s);
    END IF;
END $$;

-- The sweep claims up to p_limit due sets, skipping those another instance holds. Due: a set
-- quiet for p_timeout and never handed off (it goes with the parts it has); a hand-off not
-- answered within p_timeout (its process died: the same claim again); a set that gained
-- parts after a hand-off at the timeout, once it is complete or quiet for p_timeout.
CREATE FUNCTION sms_part_claim_due(p_timeout interval, p_limit integer)
RETURNS SETOF sms_part_claim
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
DECLARE
    s sms_part_sets;
BEGIN
    FOR s IN
        SELECT * FROM sms_part_sets
         WHERE id IN (
            (SELECT id FROM sms_part_sets
              WHERE handed_off IS NULL
                AND coalesce(claimed_at, last_at) < now() - p_timeout
              ORDER BY last_at LIMIT p_limit)
            UNION
            (SELECT id FROM sms_part_sets
              WHERE handed_off IS NOT NULL AND cardinality(seqs) > cardinality(claimed)
                AND (cardinality(seqs) = total OR last_at < now() - p_timeout)
              ORDER BY last_at LIMIT p_limit))
         ORDER BY last_at LIMIT p_limit
           FOR UPDATE SKIP LOCKED
    LOOP
        -- Checked again under the lock: a part may have arrived since the select.
        IF s.handed_off IS NULL AND s.claimed IS NOT NULL
           AND s.claimed_at < now() - p_timeout THEN
            UPDATE sms_part_sets SET claimed_at = now() WHERE id = s.id RETURNING * INTO s;
        ELSIF (s.handed_off IS NULL AND s.claimed IS NULL AND s.last_at < now() - p_timeout)
           OR (s.handed_off IS NOT NULL AND cardinality(s.seqs) > cardinality(s.claimed)
               AND (cardinality(s.seqs) = s.total OR s.last_at < now() - p_timeout)) THEN
            UPDATE sms_part_sets SET claimed = seqs, claimed_at = now(), handed_off = NULL
             WHERE id = s.id RETURNING * INTO s;
        ELSE
            CONTINUE;
        END IF;
        RETURN NEXT sms_part_claim_of(s);
    END LOOP;
END $$;
