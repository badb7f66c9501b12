-- The browser origins a client's pages may call /token, /revoke and /userinfo from (CORS): the
-- origins of its redirect URIs, plus any registered with --allowed-origin. Exact
-- `scheme://host[:port]` strings, as a browser sends them in `Origin`; never a wildcard.
ALTER TABLE clients ADD COLUMN allowed_origins text[] NOT NULL DEFAULT '{}'
    CHECK (array_position(allowed_origins, NULL) IS NULL AND NOT ('*' = ANY(allowed_origins)));
-- Existing clients: the origins of their redirect URIs (registered URIs are absolute http(s)).
UPDATE clients SET allowed_origins = ARRAY(
    SELECT DISTINCT lower(substring(u FROM '^(https?://[^/?#]+)'))
    FROM unnest(redirect_uris) AS u
    WHERE u ~ '^https?://'
);
CREATE INDEX clients_allowed_origins_idx ON clients USING gin (allowed_origins);

-- A machine client (client_credentials only) redirects nowhere: redirect URIs are required only
-- with the authorization_code grant.
ALTER TABLE clients DROP CONSTRAINT clients_redirect_uris_check;
ALTER TABLE clients ADD CONSTRAINT clients_redirect_uris_check CHECK (
    array_position(redirect_uris, NULL) IS NULL
    AND (cardinality(redirect_uris) >= 1 OR NOT ('authorization_code' = ANY(grant_types)))
);
