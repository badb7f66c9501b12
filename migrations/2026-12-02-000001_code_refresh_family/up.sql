-- RFC 6749 §4.1.2 / OAuth 2.1 §4.1.3: a replayed code revokes everything its first use issued,
-- so the code remembers the refresh family it started (no FK: families are purged separately,
-- and revoking a purged family is simply a no-op).
ALTER TABLE authorization_codes ADD COLUMN refresh_family_id uuid;
