-- 003: the email edge. Addresses that hard-bounced, and unsubscribe tokens revoked one by one.

-- RFC 3464 DSNs with Action: failed and a 5.x.x Status mark an address undeliverable. This is
-- not a consent change (a bounce withdraws nothing), so it lives beside the ledger, not in it.
CREATE TABLE undeliverable (
    address     text        PRIMARY KEY,  -- normalized as in contacts.address
    list_id     text,                     -- the list whose mail bounced, when the DSN says
    status      text        NOT NULL,     -- the enhanced status code, e.g. 5.1.1
    diagnostic  text        NOT NULL,
    dsn_key     text        NOT NULL,     -- the DSN's Message-ID or digest: repeats change nothing
    bounces     integer     NOT NULL DEFAULT 1,
    first_at    timestamptz NOT NULL DEFAULT now(),
    last_at     timestamptz NOT NULL DEFAULT now()
);

-- Tokens revoked individually (a leaked link); removing a key id from GATEWAY_TOKEN_KEYS
-- revokes every token of that key at once.
CREATE TABLE revoked_tokens (
    fingerprint text        PRIMARY KEY,  -- gateway.tokens.TokenCodec.fingerprint
    reason      text        NOT NULL,
    revoked_at  timestamptz NOT NULL DEFAULT now()
);
