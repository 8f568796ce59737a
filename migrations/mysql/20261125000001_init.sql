-- airflow-mesos store schema, MySQL/MariaDB dialect. Keep in step with ../sqlite and
-- ../postgres. Timestamps are milliseconds since the Unix epoch. `seq` values are assigned by
-- the store (single writer: the driver), in commit order.
-- Keyed text columns are VARCHAR (indexable); `utf8mb4_bin` keeps comparisons byte-exact, as
-- in SQLite and PostgreSQL.

CREATE TABLE tasks (
    id                 VARCHAR(255) NOT NULL PRIMARY KEY,
    external_key       VARCHAR(512),
    spec               LONGTEXT     NOT NULL,
    state              VARCHAR(32)  NOT NULL,
    attempts           BIGINT       NOT NULL DEFAULT 0,
    current_attempt_id VARCHAR(300),
    agent_id           VARCHAR(255),
    hostname           VARCHAR(255),
    message            MEDIUMTEXT,
    reason             VARCHAR(255),
    exit_code          BIGINT,
    kill_requested     BOOLEAN      NOT NULL DEFAULT FALSE,
    created_at         BIGINT       NOT NULL,
    updated_at         BIGINT       NOT NULL,
    seq                BIGINT       NOT NULL,
    INDEX tasks_seq (seq),
    INDEX tasks_state (state),
    INDEX tasks_external_key (external_key)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The spec's labels, one row each, so that listing by label is a plain indexed lookup.
CREATE TABLE task_labels (
    task_id VARCHAR(255) NOT NULL,
    name    VARCHAR(255) NOT NULL,
    value   TEXT         NOT NULL,
    PRIMARY KEY (task_id, name),
    FOREIGN KEY (task_id) REFERENCES tasks (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE attempts (
    task_id         VARCHAR(255) NOT NULL,
    attempt         BIGINT       NOT NULL,
    backend_task_id VARCHAR(300) NOT NULL,
    agent_id        VARCHAR(255),
    hostname        VARCHAR(255),
    agent_url       TEXT,
    state           VARCHAR(32)  NOT NULL,
    message         MEDIUMTEXT,
    reason          VARCHAR(255),
    started_at      BIGINT       NOT NULL,
    updated_at      BIGINT       NOT NULL,
    PRIMARY KEY (task_id, attempt),
    UNIQUE KEY attempts_backend_task_id (backend_task_id),
    FOREIGN KEY (task_id) REFERENCES tasks (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The change feed: one row per state transition, `seq` strictly increasing.
CREATE TABLE task_events (
    seq          BIGINT       NOT NULL PRIMARY KEY,
    task_id      VARCHAR(255) NOT NULL,
    state        VARCHAR(32)  NOT NULL,
    attempt      BIGINT       NOT NULL,
    message      MEDIUMTEXT,
    at           BIGINT       NOT NULL,
    external_key VARCHAR(512),
    INDEX task_events_task (task_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE frameworks (
    name         VARCHAR(255) NOT NULL PRIMARY KEY,
    framework_id VARCHAR(255) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
