-- Where each browser is signed in, for the account page's list (src/sessions/store.rs): mirrored
-- from the session record like user_id, so listing needs no decoding.
ALTER TABLE sessions
    ADD COLUMN signed_in_at timestamptz,
    ADD COLUMN last_seen_at timestamptz,
    ADD COLUMN device text CHECK (length(device) <= 200),
    ADD COLUMN ip text CHECK (length(ip) <= 64);
