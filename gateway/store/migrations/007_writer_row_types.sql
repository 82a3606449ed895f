-- 007: row types for the consent writer's batch statement (gateway/store/statements.py).
--
-- write_changes used to pass each part of a batch as one array per column, 34 arrays for a
-- typical event. asyncpg checks every element of an array parameter against
-- collections.abc.Iterable and Sized before it encodes it (asyncpg/protocol/codecs/
-- array.pyx), and those checks cost more than the encoding: a 50-event ledger part took
-- about 680 us of client CPU as 16 arrays, 230-340 us as one array of these rows. A row is
-- checked once, and its fields are encoded directly.
--
-- The field order is the order statements.py builds its tuples in.
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
