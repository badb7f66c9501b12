-- The subject an imported user keeps from the system they came from (a MongoDB ObjectId, say),
-- when it is not a UUID (a UUID becomes the id itself). NULL: the id is the subject. Never a
-- UUID's canonical text, so a `sub` names one user either way; OIDC Core §2 allows 255 ASCII.
ALTER TABLE users ADD COLUMN subject TEXT
    CONSTRAINT users_subject_key UNIQUE
    CONSTRAINT users_subject_check CHECK (
        subject ~ '^[A-Za-z0-9._~-]{1,255}$'
        AND subject !~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
    );
