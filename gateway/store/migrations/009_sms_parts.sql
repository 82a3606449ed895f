-- 009: the parts of concatenated SMS, each committed before its deliver_sm_resp.
--
-- A long text arrives as several deliver_sm (SMPP 3.4 §5.3.2.22-24 SAR TLVs, or a UDH,
-- 3GPP TS 23.040 §9.2.3.24.1). Holding every part's answer until the whole text committed
-- stalled an SMSC with a window of 1: it never sent the next part. Each part is now its own
-- durable commit (gateway/store/sms_parts.py), and the text goes through the pipeline once
-- the set is complete, or at the reassembly timeout with the parts it has.
--
-- A set is one row, locked by every part that joins it, so two parts arriving at once (on
-- two binds or two instances) see each other and the set is claimed for its hand-off once.
--   seqs       the parts received, in arrival order
--   claimed    the parts handed to the pipeline (NULL: none yet); the inbound event's dedupe
--              key names the set and how many parts it was given, so a hand-off repeated after
--              a crash finds its own event
--   handed_off when the pipeline answered for ``claimed`` (NULL: not yet, or a later part
--              arrived after a hand-off at the timeout and the set is due again)
-- A handed-off set is kept for [smpp] dedupe_window_seconds so a redelivered part is known.

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
    -- Two people may use the same 8-bit reference at once: the key names both ends.
    UNIQUE (smsc, source, destination, ref, total)
);
-- The sweep's two questions: which sets wait for a hand-off, which are old enough to forget.
CREATE INDEX sms_part_sets_waiting ON sms_part_sets (last_at) WHERE handed_off IS NULL;
CREATE INDEX sms_part_sets_late ON sms_part_sets (last_at)
    WHERE handed_off IS NOT NULL AND cardinality(seqs) > cardinality(claimed);
CREATE INDEX sms_part_sets_done ON sms_part_sets (handed_off) WHERE handed_off IS NOT NULL;
-- Erasure (gateway/store/privacy.py) finds a person's waiting parts by number.
CREATE INDEX sms_part_sets_source ON sms_part_sets (source);

CREATE TABLE sms_parts (
    set_id      bigint      NOT NULL REFERENCES sms_part_sets (id) ON DELETE CASCADE,
    seq         smallint    NOT NULL CHECK (seq BETWEEN 1 AND 255),
    data_coding smallint    NOT NULL,
    body        bytea       NOT NULL,  -- the part's octets, UDH removed, as received
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (set_id, seq)
);

-- The type a hand-off returns: the set and the octets of its claimed parts, in part order.
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

-- One part in, one round trip. Returns the claim the caller must hand to the pipeline now
-- (this part completed the set, or it is a redelivery of a part whose hand-off has not been
-- answered yet), or no row: acknowledge the part and wait.
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

-- The sweep: claim up to p_limit sets that are due, skipping sets another instance holds.
-- Due are: a set with no part for p_timeout and no hand-off (processed with what it has);
-- a hand-off not answered within p_timeout (its process died: the same claim again); a set
-- that gained parts after a hand-off at the timeout, once complete or quiet for p_timeout.
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
