-- 002: SMPP delivery receipts, matched to the outbox rows they report on.
-- A reply's provider_ref is the space-separated list of "<smsc>/<message_id>" of its parts
-- (gateway/edges/smpp/edge.py); the GIN index finds the row a receipt names.

CREATE TABLE delivery_receipts (
    id          bigserial   PRIMARY KEY,
    smsc        text        NOT NULL,
    message_id  text        NOT NULL,
    outbox_id   bigint      REFERENCES outbox (id),
    state       text        NOT NULL,
    error       text        NOT NULL,
    done_at     timestamptz,
    received_at timestamptz NOT NULL DEFAULT now(),
    -- A receipt the SMSC redelivers (its deliver_sm_resp was lost) is recorded once.
    UNIQUE (smsc, message_id, state)
);
CREATE INDEX delivery_receipts_outbox ON delivery_receipts (outbox_id);

ALTER TABLE outbox ADD COLUMN delivery_state text, ADD COLUMN delivered_at timestamptz;
CREATE INDEX outbox_provider_refs ON outbox USING gin (string_to_array(provider_ref, ' '));
