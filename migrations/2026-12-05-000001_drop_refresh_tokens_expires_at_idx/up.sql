-- Nothing looks refresh tokens up by expiry: a token's expiry is checked on the row found by its
-- hash, and purging deletes whole families (their tokens go by the cascade). The index only cost
-- an entry per rotation.
DROP INDEX refresh_tokens_expires_at_idx;
