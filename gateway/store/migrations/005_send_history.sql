-- 005_send_history: the caps of the send rules count a person's earlier sends.
--
-- The gate reads, for a recipient in a place where a capped rule applies, the gated sends
-- queued, leaving or sent to that address in the last days (gateway/store/send_history.py):
-- outbox rows of kind 'send' and the sends outside senders report (send_reports, which has
-- its own (channel, recipient) index). This index keeps that read to the person's own rows
-- however long the outbox grows (docs/rules.md, "Caps").

CREATE INDEX outbox_sends_by_contact ON outbox (contact_id)
    WHERE kind = 'send' AND status IN ('queued', 'sending', 'sent');
