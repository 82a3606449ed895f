-- 005: an opt-out also cancels replies that are leased for sending, and the outbox's partial
-- indexes cover exactly the rows their queries read.
--
-- A row the worker has leased is 'sending'. If its send failed, the worker used to put it back
-- to 'queued' and send it on the next attempt, even when the person had opted out meanwhile:
-- an opt-in confirmation (or a send-through message) after STOP (docs/DESIGN.md, invariant 2). An
-- opt-out now cancels 'sending' rows as well, and the worker re-queues a failed row only while
-- it is still 'sending' (gateway/outbox.py). A send already on the wire cannot be recalled:
-- it completes and is recorded as 'sent'.

DROP INDEX outbox_cancellable;
CREATE INDEX outbox_cancellable ON outbox (contact_id)
    WHERE status IN ('queued', 'sending') AND kind IN ('opt_in', 'pending', 'already_opted_in');

DROP INDEX outbox_queued_sends;
CREATE INDEX outbox_queued_sends ON outbox (contact_id)
    WHERE status IN ('queued', 'sending') AND kind = 'send';

CREATE OR REPLACE FUNCTION cancel_sends_after_opt_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE outbox SET status = 'cancelled', last_error = 'recipient opted out'
     WHERE status IN ('queued', 'sending') AND kind = 'send' AND contact_id = NEW.contact_id
       AND sender = NEW.sender AND program = NEW.program AND channel = NEW.channel;
    RETURN NULL;
END $$;

-- The claim (gateway/outbox.py) reads rows 'queued' or 'sending' (a lease that expired) in
-- (next_attempt_at, id) order; the old index covered only 'queued', so the claim scanned the
-- whole table once sent rows piled up.
DROP INDEX outbox_due;
CREATE INDEX outbox_due ON outbox (next_attempt_at, id) WHERE status IN ('queued', 'sending');
