-- Leadership among the daemons of one state database (src/leader.rs): one row per framework
-- name. `holder` is the leading daemon's instance id ('' = nobody), `term` grows by one with
-- every new leader and fences the store's writes, `expires_at` is in milliseconds since the
-- Unix epoch on the database's own clock, `address` is the leader's API URL (standbys forward
-- writes there).
CREATE TABLE leader_lease (
    name       VARCHAR(255)  NOT NULL PRIMARY KEY,
    holder     VARCHAR(255)  NOT NULL,
    term       BIGINT        NOT NULL,
    expires_at BIGINT        NOT NULL,
    address    VARCHAR(2048) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
