-- 001: contacts, current consent, the hash-chained ledger, inbound dedupe, the outbox.
-- Applied inside one transaction by gateway/store/migrate.py; the schema comes from
-- the pool's search_path (database.schema in gateway.toml).

CREATE TABLE contacts (
    id          bigserial PRIMARY KEY,
    channel     text        NOT NULL CHECK (channel IN ('sms', 'email')),
    -- E.164 for sms, lower-cased domain for email (see gateway/addresses.py).
    address     text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (channel, address)
);

-- Current consent: one row per contact, sender, program and channel. ``version`` grows by
-- one on every change; the cache compares versions so an old read never overwrites a
-- newer opt-out (docs/DESIGN.md, invariant 2).
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

-- Every inbound message once, by the key its edge derived from the peer's id (invariant 3).
-- The text is kept here as consent evidence and nowhere else (never in logs).
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

-- The append-only ledger (invariant 4). ``seq`` is gap-free and assigned under the lock
-- on ledger_head, so a deleted row breaks the chain. The hash covers every column but
-- ``evidence`` itself, which it covers through ``evidence_sha256``: evidence can be redacted
-- for an erasure request (GDPR art. 17) and the chain still verifies.
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

CREATE TABLE ledger_head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    seq       bigint NOT NULL,
    hash      bytea  NOT NULL
);
INSERT INTO ledger_head (seq, hash) VALUES (0, '\x0000000000000000000000000000000000000000000000000000000000000000');

-- Append-only: updates and deletes are refused by the database itself. An operator who
-- disables the trigger is still caught by `gateway audit verify`.
CREATE FUNCTION ledger_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the consent ledger is append-only (%)', TG_OP;
END $$;
CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_is_append_only();
CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_is_append_only();

-- The transactional outbox: written in the same transaction as the ledger event.
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
    inbound_id      bigint      REFERENCES inbound_events (id)
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE status = 'queued';
-- An opt-out cancels the person's unsent opt-in replies (store/writer.py): find them fast.
CREATE INDEX outbox_cancellable ON outbox (contact_id)
    WHERE status = 'queued' AND kind IN ('opt_in', 'pending', 'already_opted_in');

-- Cache keys whose pre-commit invalidation could not reach Redis: every instance reads
-- Postgres, not Redis, while this table is non-empty (gateway/store/cache.py).
CREATE TABLE cache_repair (
    id          bigserial PRIMARY KEY,
    contact_id  bigint      NOT NULL REFERENCES contacts (id),
    sender      text        NOT NULL,
    program     text        NOT NULL,
    channel     text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
