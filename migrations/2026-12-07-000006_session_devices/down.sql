ALTER TABLE sessions DROP COLUMN signed_in_at, DROP COLUMN last_seen_at, DROP COLUMN device, DROP COLUMN ip;
