DROP TRIGGER clients_bump_version ON clients;
DROP FUNCTION bump_client_set_version();
DROP TABLE client_set_version;
