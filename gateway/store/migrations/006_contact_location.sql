-- 006_contact_location: where an operator says a person is (docs/rules.md, "Local time" and
-- "Jurisdiction").
--
-- The send rules place a phone number by its area code and an email recipient in
-- [rules] default_zone. An operator who knows better records a state (ISO 3166-2, "US-FL")
-- or a time zone (IANA, "America/New_York") for the contact with PUT /v1/contacts/location;
-- a recorded zone decides the hours, a recorded state the jurisdiction (Florida, Oklahoma
-- and Connecticut rules still reach their area codes: rules/location.py). Both are checked
-- against the rules' data by the API before they are written; the CHECKs below only keep
-- the columns to the shapes the location keys can carry (a '|' would split a key).
--
-- Nearly every contact has neither, so the index holds only those that do: the gate reads
-- a chunk's located recipients through it (gateway/store/contact_locations.py), and asks
-- whether a channel has any located contact at all with one probe of it.
--
-- Nullable columns without a default rewrite no row; checking the CHECKs and building the
-- index read contacts once, within the migration's transaction (writes to contacts wait).

ALTER TABLE contacts
    ADD COLUMN state     text CHECK (state ~ '^[A-Z]{2}-[A-Z0-9]{1,3}$'),
    ADD COLUMN time_zone text CHECK (time_zone ~ '^[A-Za-z0-9_+/-]{1,64}$');

CREATE INDEX contacts_located ON contacts (channel, address)
    WHERE state IS NOT NULL OR time_zone IS NOT NULL;
