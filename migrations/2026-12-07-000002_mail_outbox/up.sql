-- The transactional outbox (src/mail/outbox.rs): a mail is a row written in the transaction of
-- what causes it, and deleted once an SMTP server took it (or given up on, with an audit event).
-- Recipient, subject and bodies are sealed (AES-256-GCM under a KEK-derived key, bound to the
-- row's id): mails carry codes, and codes are never stored readable.
CREATE TABLE mail_outbox (
    id uuid PRIMARY KEY,
    kind text NOT NULL CHECK (length(kind) BETWEEN 1 AND 64),
    sealed bytea NOT NULL,
    created_at timestamptz NOT NULL,
    attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- When the next attempt is due; while an instance sends, the end of its claim.
    due_at timestamptz NOT NULL,
    last_error text CHECK (length(last_error) <= 1000)
);
CREATE INDEX mail_outbox_due_at_idx ON mail_outbox (due_at);
