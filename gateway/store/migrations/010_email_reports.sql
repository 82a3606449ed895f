-- 010: complaints and bounces we could not tie to a message we sent, kept for review.
--
-- An ARF report (RFC 5965) or a DSN (RFC 3464) changes consent or marks an address
-- undeliverable only when it is about our mail (our token, a Message-ID or VERP address we
-- issued, our DKIM signature) or comes from a configured feedback loop that authenticated
-- itself. Anything else is written here and changes nothing; anyone can send such a report.
CREATE TABLE unverified_reports (
    id           bigserial   PRIMARY KEY,
    report_key   text        NOT NULL,  -- the report's Message-ID, or a digest of its content
    kind         text        NOT NULL CHECK (kind IN ('complaint', 'bounce')),
    peer_ip      text        NOT NULL,  -- who delivered it to us
    helo         text        NOT NULL,
    mail_from    text        NOT NULL,  -- envelope sender; can be a person's address
    auth         jsonb       NOT NULL,  -- SPF, DKIM and DMARC results with their domains
    detail       jsonb       NOT NULL,  -- feedback type, user agent, statuses: no addresses
    -- The addresses the report named (Original-Rcpt-To, Final-Recipient, Original-Recipient),
    -- normalized as contacts.address is. Personal data: the data-subject export lists the
    -- rows naming an address and erasure removes the address (gateway/store/email_reports.py).
    named        text[]      NOT NULL,
    reason       text        NOT NULL,  -- why it was not believed
    received_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (report_key, kind)           -- a redelivered report is stored once
);

CREATE INDEX unverified_reports_named ON unverified_reports USING gin (named);
CREATE INDEX unverified_reports_mail_from ON unverified_reports (mail_from);
