-- 004: the HTTP API: API keys, the admin audit log, sender overrides, the suppression list,
-- data-subject requests, and the one narrow exception to the ledger's append-only rule.

-- API keys (issue 5): only a SHA-256 of the key is kept. Keys are 256-bit random strings,
-- so an unsalted fast hash is enough: there is nothing to brute-force (unlike passwords).
CREATE TABLE api_keys (
    id          text        PRIMARY KEY,            -- the public part, shown in lists and logs
    key_sha256  bytea       NOT NULL UNIQUE,
    name        text        NOT NULL,
    scopes      text[]      NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- Everything an operator did through the admin API or the CLI, and every data-subject
-- request (GDPR art. 5(2) accountability: the controller must be able to show what it did).
CREATE TABLE admin_audit (
    id       bigserial   PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    actor    text        NOT NULL,                  -- API key id or "cli"
    action   text        NOT NULL,
    target   text        NOT NULL,                  -- never an address: a contact id or sender
    detail   jsonb       NOT NULL DEFAULT '{}'
);

-- Sender definitions changed through the admin API; they replace the file of the same
-- sender on every instance (broadcast with NOTIFY, see gateway/store/api_store.py).
CREATE TABLE sender_overrides (
    sender      text        PRIMARY KEY,
    definition  jsonb       NOT NULL,
    revision    bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text        NOT NULL
);

-- Erased people (GDPR art. 17) stay here as a keyed hash of their address, so they are
-- never messaged again (ICO: keep objectors on a suppression list rather than delete them).
CREATE TABLE suppression (
    channel      text        NOT NULL,
    address_hmac bytea       NOT NULL,
    reason       text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, address_hmac)
);

-- Addresses a contact had before a rectification (GDPR art. 16: history kept).
CREATE TABLE contact_addresses (
    id          bigserial   PRIMARY KEY,
    contact_id  bigint      NOT NULL REFERENCES contacts (id),
    address     text        NOT NULL,
    replaced_at timestamptz NOT NULL DEFAULT now()
);

-- The ledger stays append-only, with one exception: erasure may set ``evidence`` to NULL.
-- ``evidence`` is outside the hash (the chain covers it through ``evidence_sha256``), so a
-- redacted row still verifies and `gateway audit verify` counts it as redacted.
CREATE OR REPLACE FUNCTION ledger_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.evidence IS NULL
       AND (to_jsonb(NEW) - 'evidence') = (to_jsonb(OLD) - 'evidence') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'the consent ledger is append-only (%)', TG_OP;
END $$;

-- Send-through (POST /v1/send): a queued message dies with the consent it was queued under.
-- The trigger runs in the writer's own transaction, so an acknowledged opt-out leaves no
-- queued message behind (docs/DESIGN.md, invariant 2); privacy.py queues under the contact's lock.
CREATE INDEX outbox_queued_sends ON outbox (contact_id) WHERE status = 'queued' AND kind = 'send';
CREATE FUNCTION cancel_sends_after_opt_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE outbox SET status = 'cancelled', last_error = 'recipient opted out'
     WHERE status = 'queued' AND kind = 'send' AND contact_id = NEW.contact_id
       AND sender = NEW.sender AND program = NEW.program AND channel = NEW.channel;
    RETURN NULL;
END $$;
CREATE TRIGGER consent_cancels_sends AFTER UPDATE OF state ON consent
    FOR EACH ROW WHEN (OLD.state = 'opted_in' AND NEW.state <> 'opted_in')
    EXECUTE FUNCTION cancel_sends_after_opt_out();
