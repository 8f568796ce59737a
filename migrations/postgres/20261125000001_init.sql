-- airflow-mesos store schema, PostgreSQL dialect. Keep in step with ../sqlite and ../mysql.
-- Timestamps are milliseconds since the Unix epoch. `seq` values are assigned by the store
-- (single writer: the driver), in commit order.

CREATE TABLE tasks (
    id                 TEXT    NOT NULL PRIMARY KEY,
    external_key       TEXT,
    spec               TEXT    NOT NULL,
    state              TEXT    NOT NULL,
    attempts           BIGINT  NOT NULL DEFAULT 0,
    current_attempt_id TEXT,
    agent_id           TEXT,
    hostname           TEXT,
    message            TEXT,
    reason             TEXT,
    exit_code          BIGINT,
    kill_requested     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at         BIGINT  NOT NULL,
    updated_at         BIGINT  NOT NULL,
    seq                BIGINT  NOT NULL
);
CREATE INDEX tasks_seq ON tasks (seq);
CREATE INDEX tasks_state ON tasks (state);
CREATE INDEX tasks_external_key ON tasks (external_key);

-- The spec's labels, one row each, so that listing by label is a plain indexed lookup.
CREATE TABLE task_labels (
    task_id TEXT NOT NULL REFERENCES tasks (id),
    name    TEXT NOT NULL,
    value   TEXT NOT NULL,
    PRIMARY KEY (task_id, name)
);

CREATE TABLE attempts (
    task_id         TEXT    NOT NULL REFERENCES tasks (id),
    attempt         BIGINT  NOT NULL,
    backend_task_id TEXT    NOT NULL UNIQUE,
    agent_id        TEXT,
    hostname        TEXT,
    agent_url       TEXT,
    state           TEXT    NOT NULL,
    message         TEXT,
    reason          TEXT,
    started_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    PRIMARY KEY (task_id, attempt)
);

-- The change feed: one row per state transition, `seq` strictly increasing.
CREATE TABLE task_events (
    seq          BIGINT  NOT NULL PRIMARY KEY,
    task_id      TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    attempt      BIGINT  NOT NULL,
    message      TEXT,
    at           BIGINT  NOT NULL,
    external_key TEXT
);
CREATE INDEX task_events_task ON task_events (task_id);

CREATE TABLE frameworks (
    name         TEXT NOT NULL PRIMARY KEY,
    framework_id TEXT NOT NULL
);
