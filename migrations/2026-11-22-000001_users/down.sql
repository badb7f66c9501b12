DROP TABLE sessions;
DROP TABLE trusted_devices;
DROP TABLE sign_in_throttle;
DROP TABLE users;
