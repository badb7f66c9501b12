-- Rate limits shared by every instance: one "theoretical arrival time" per limit and key (GCRA,
-- see src/rate_limits). A key whose time has passed counts nothing and is purged.
CREATE TABLE rate_limits (
    key text PRIMARY KEY CHECK (length(key) <= 200),
    tat timestamptz NOT NULL
);
CREATE INDEX rate_limits_tat_idx ON rate_limits (tat);
