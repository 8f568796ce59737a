-- Leadership among the daemons of one state database (src/leader.rs): one row per framework
-- name. `holder` is the leading daemon's instance id ('' = nobody), `term` grows by one with
-- every new leader and fences the store's writes, `expires_at` is in milliseconds since the
-- Unix epoch on the database's own clock, `address` is the leader's API URL (standbys forward
-- writes there).
CREATE TABLE leader_lease (
    name       TEXT   NOT NULL PRIMARY KEY,
    holder     TEXT   NOT NULL,
    term       BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    address    TEXT   NOT NULL
);
