-- 002_audit: what an auditor asks for beyond the ledger itself.
--
--   ledger_checkpoints  signed statements of the chain's head, each with a Merkle root over the
--                       events since the previous one (receipts prove an event is in the chain
--                       without showing anyone else's events: gateway/store/receipts_chain.py)
--   gate_decisions      one row per batch gate request: its scope and the answer given to each
--                       recipient by position, so a reported send can be joined to what the
--                       gate told the sender (gateway/store/send_reports.py)
--   send_reports        sends made by outside senders, reported back (POST /v1/sends)
--   consent_reviews     an operator's finding on a text flagged needs_review; never a consent
--                       change (gateway/store/consent_reviews.py)
--
-- Kept apart from the writer's tables: nothing here is written on the consent path, so the
-- writer's statements and plans are unchanged (tests/store/test_store_plans.py). Checkpoints
-- and reviews are append-only like the ledger (docs/DESIGN.md, invariant 4).

CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only (%)', TG_TABLE_NAME, TG_OP;
END $$;

CREATE TABLE ledger_checkpoints (
    id          bigserial   PRIMARY KEY,
    first_seq   bigint      NOT NULL,            -- the first event the root covers
    last_seq    bigint      NOT NULL UNIQUE,     -- the head it signs
    head_hash   bytea       NOT NULL,            -- ledger.hash at last_seq
    root        bytea       NOT NULL,            -- RFC 6962 Merkle root over the hashes covered
    statement   text        NOT NULL,            -- the exact signed text (canonical JSON)
    signature   bytea       NOT NULL,            -- Ed25519 over statement
    key_id      text        NOT NULL,
    public_key  bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (first_seq >= 1 AND last_seq >= first_seq)
);
CREATE TRIGGER ledger_checkpoints_append_only BEFORE UPDATE OR DELETE ON ledger_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER ledger_checkpoints_no_truncate BEFORE TRUNCATE ON ledger_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

CREATE TABLE gate_decisions (
    id          text        PRIMARY KEY,         -- random, handed to the caller
    sender      text        NOT NULL,
    program     text        NOT NULL,
    channel     text        NOT NULL,
    recipients  integer     NOT NULL,
    -- One byte per recipient, in request order (gateway/store/send_reports.py ANSWER_CODES),
    -- zlib-compressed; NULL until the whole answer has been streamed.
    answers     bytea,
    api_key     text        NOT NULL,
    decided_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE send_reports (
    id             bigserial   PRIMARY KEY,
    sender         text        NOT NULL,
    message_id     text        NOT NULL,
    channel        text        NOT NULL,
    program        text        NOT NULL,
    recipient      text        NOT NULL,         -- the contact key (gateway/addresses.py)
    sent_at        timestamptz NOT NULL,
    decision_id    text,
    decision_index integer,
    api_key        text        NOT NULL,
    reported_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (sender, message_id)                  -- a report sent again is the same report
);
CREATE INDEX send_reports_sent_at ON send_reports (sent_at);
CREATE INDEX send_reports_recipient ON send_reports (channel, recipient);

-- Erasure (GDPR art. 17) pseudonymises the contact's address to 'erased:<id>'
-- (gateway/store/privacy.py); the reports naming the address follow it, so no copy of the
-- address outlives the erasure here.
CREATE FUNCTION send_reports_follow_erasure() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE send_reports SET recipient = NEW.address
     WHERE channel = OLD.channel AND recipient = OLD.address;
    RETURN NULL;
END $$;
CREATE TRIGGER contacts_erasure_reaches_send_reports AFTER UPDATE OF address ON contacts
    FOR EACH ROW WHEN (NEW.address LIKE 'erased:%' AND OLD.address NOT LIKE 'erased:%')
    EXECUTE FUNCTION send_reports_follow_erasure();

CREATE TABLE consent_reviews (
    id          bigserial   PRIMARY KEY,
    inbound_id  bigint      NOT NULL UNIQUE REFERENCES inbound_events (id),
    decision    text        NOT NULL CHECK (decision IN ('confirmed', 'reversed')),
    note        text        NOT NULL,
    actor       text        NOT NULL,
    ledger_seqs bigint[]    NOT NULL,            -- the events the flagged text caused
    -- The chain's head when the finding was recorded: the next signed checkpoint covers it.
    head_seq    bigint      NOT NULL,
    head_hash   bytea       NOT NULL,
    decided_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER consent_reviews_append_only BEFORE UPDATE OR DELETE ON consent_reviews
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
