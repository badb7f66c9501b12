ALTER TABLE sessions DROP CONSTRAINT sessions_idle_within_absolute;
ALTER TABLE sessions DROP COLUMN absolute_expires_at;
