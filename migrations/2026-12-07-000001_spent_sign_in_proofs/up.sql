-- Proof-of-work challenges already spent on a sign-in past a reached limit (src/rate_limits/proof.rs):
-- one row per spent challenge, by its SHA-256, until the challenge expires and is purged.
CREATE TABLE spent_sign_in_proofs (
    challenge_hash bytea PRIMARY KEY CHECK (length(challenge_hash) = 32),
    expires_at timestamptz NOT NULL
);
CREATE INDEX spent_sign_in_proofs_expires_at_idx ON spent_sign_in_proofs (expires_at);
