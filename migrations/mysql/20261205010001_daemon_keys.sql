-- Keys the daemons of one state database share: `sandbox-files` signs the URLs from which
-- Mesos agents fetch a task's sandbox files (src/onetime.rs). Hex-encoded random bytes, made
-- by the first daemon that needs one.
CREATE TABLE daemon_keys (
    name  VARCHAR(255) NOT NULL PRIMARY KEY,
    value VARCHAR(255) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
