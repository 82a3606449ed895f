-- 011: one person, one contact (email keys fold the local part's case), and suppression
-- hashes that survive the rotation of any key (README "Addresses", "Keys and rotation").

-- 1. Email contacts are keyed with the whole address lower-cased (gateway/addresses.py).
-- Addresses were ASCII before (the old pattern took nothing else), so lower() in the "C"
-- collation is the new key, and a row whose key no other row shares is simply folded.
--
-- A collision: two or more rows differ only by the case of the local part, which until now
-- made them two contacts (an opt-out under one spelling left the other opted in). The row
-- already in key form, else the oldest, keeps the key; each other row keeps its history
-- under the address 'case-collision:<id>', its spelling moved to contact_addresses so export
-- and erasure still find it. Its opt-outs are carried over to the key at start-up, through
-- the writer and so into the ledger (gateway/merge.py); its opt-ins are not: consent must
-- be shown for the contact that is messaged.
CREATE TEMPORARY TABLE email_keys ON COMMIT DROP AS
SELECT id, address, lower(address COLLATE "C") AS key,
       row_number() OVER (PARTITION BY lower(address COLLATE "C")
                          ORDER BY (address = lower(address COLLATE "C")) DESC, id) AS rank
  FROM contacts
 WHERE channel = 'email' AND address NOT LIKE 'erased:%';
INSERT INTO contact_addresses (contact_id, address)
SELECT id, address FROM email_keys WHERE rank > 1 ORDER BY id;
UPDATE contacts c SET address = 'case-collision:' || c.id
  FROM email_keys k WHERE k.id = c.id AND k.rank > 1;
UPDATE contacts c SET address = k.key
  FROM email_keys k WHERE k.id = c.id AND k.rank = 1 AND c.address <> k.key;

-- 2. Each suppression hash names the key it was made with (a fingerprint, never the key),
-- and the hashes of one erased address share an entry: an entry is kept as long as the
-- gateway holds one of its keys, and the gateway refuses to start while an entry has none
-- (gateway/store/suppression.py). Rows from before have no key id yet: the gateway adopts
-- them at start-up as made with the current secret's derived key, the only one they can
-- have been made with (SQL cannot compute the fingerprint without the key).
CREATE SEQUENCE suppression_entry_seq;
ALTER TABLE suppression ADD COLUMN key_id text;
ALTER TABLE suppression ADD COLUMN entry bigint;
UPDATE suppression SET entry = nextval('suppression_entry_seq');
ALTER TABLE suppression ALTER COLUMN entry SET NOT NULL;
ALTER TABLE suppression ALTER COLUMN entry SET DEFAULT nextval('suppression_entry_seq');
CREATE INDEX suppression_entry ON suppression (entry);
