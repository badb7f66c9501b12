-- One row, bumped by every change to clients, as key_set_version is for keys: each instance
-- keeps the clients it has seen in memory (no database on the client_credentials path) and
-- polls this to know when to forget them.
CREATE TABLE client_set_version (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version bigint NOT NULL
);
INSERT INTO client_set_version (singleton, version) VALUES (true, 0);

CREATE FUNCTION bump_client_set_version() RETURNS trigger AS $$
BEGIN
    UPDATE client_set_version SET version = version + 1;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER clients_bump_version
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON clients
    FOR EACH STATEMENT EXECUTE FUNCTION bump_client_set_version();
