-- 009_writer_references: the writer's rows point at contacts and inbound events that can
-- never go away, instead of asking PostgreSQL to check each pointer.
--
-- Every ledger, consent and outbox row the writer inserts names a contact it created or
-- locked earlier in the same transaction, and the inbound event it inserted there too
-- (gateway/store/writer.py, steps 1 and 2); the send queue takes its contact under FOR
-- SHARE in its own transaction (gateway/store/send_queue.py). So the six foreign keys below
-- could only fail if a contact or an inbound event were deleted, and the product never
-- deletes either: an erasure pseudonymises the contact and blanks the event's body and
-- evidence (gateway/store/privacy.py). Checking them cost PostgreSQL about half of the
-- writer's main statement: 4.4 of 9 ms for a batch of 200 STOPs, 2,000 checks at about
-- 2.9 us each (auto_explain with log_triggers, 2026-12-07), and with two workers on one
-- host 6,086-6,564 against 7,021-7,594 replies/s without them, alternated
-- (docs/benchmarks.md).
--
-- What the foreign keys guaranteed is kept by refusing what alone could break it: a DELETE
-- or TRUNCATE of contacts or inbound_events, or a change of their ids. `gateway audit
-- verify` also reports any ledger row whose contact or inbound event is missing
-- (gateway/store/ledger.py). The rarer references (keep offers, reviews, repairs, receipts,
-- addresses) keep their foreign keys.

ALTER TABLE ledger
    DROP CONSTRAINT ledger_contact_id_fkey,
    DROP CONSTRAINT ledger_inbound_id_fkey;
ALTER TABLE consent DROP CONSTRAINT consent_contact_id_fkey;
ALTER TABLE outbox
    DROP CONSTRAINT outbox_contact_id_fkey,
    DROP CONSTRAINT outbox_inbound_id_fkey;
ALTER TABLE inbound_events DROP CONSTRAINT inbound_events_contact_id_fkey;

CREATE FUNCTION referenced_rows_stay() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% rows are referenced by the consent ledger and are never deleted or renumbered (%)',
        TG_TABLE_NAME, TG_OP
        USING HINT = 'an erasure pseudonymises the contact instead (README, "Data-subject rights")';
END $$;

CREATE TRIGGER contacts_stay BEFORE DELETE OR UPDATE OF id ON contacts
    FOR EACH ROW EXECUTE FUNCTION referenced_rows_stay();
CREATE TRIGGER contacts_no_truncate BEFORE TRUNCATE ON contacts
    FOR EACH STATEMENT EXECUTE FUNCTION referenced_rows_stay();
CREATE TRIGGER inbound_events_stay BEFORE DELETE OR UPDATE OF id ON inbound_events
    FOR EACH ROW EXECUTE FUNCTION referenced_rows_stay();
CREATE TRIGGER inbound_events_no_truncate BEFORE TRUNCATE ON inbound_events
    FOR EACH STATEMENT EXECUTE FUNCTION referenced_rows_stay();
