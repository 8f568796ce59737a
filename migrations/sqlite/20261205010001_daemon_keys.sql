-- Keys the daemons of one state database share: `sandbox-files` signs the URLs from which
-- Mesos agents fetch a task's sandbox files (src/onetime.rs). Hex-encoded random bytes, made
-- by the first daemon that needs one.
CREATE TABLE daemon_keys (
    name  TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
);
