DROP TABLE audit_events;
DROP FUNCTION audit_events_append_only();
DROP TABLE key_set_version;
DROP TABLE signing_keys;
DROP FUNCTION bump_key_set_version();
