-- Sessions end after an idle time measured from the last request, and at the latest an absolute
-- lifetime after they began (sign-in cycles the id, so that is the sign-in). expires_at is the
-- sooner of the two and the only column load and housekeeping look at; this one caps it.
ALTER TABLE sessions ADD COLUMN absolute_expires_at timestamptz;
UPDATE sessions SET absolute_expires_at = expires_at;
ALTER TABLE sessions ALTER COLUMN absolute_expires_at SET NOT NULL;
ALTER TABLE sessions ADD CONSTRAINT sessions_idle_within_absolute CHECK (expires_at <= absolute_expires_at);
