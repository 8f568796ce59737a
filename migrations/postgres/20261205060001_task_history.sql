-- What the web UI reads without scanning (src/web, src/store/browse.rs).
--
-- Each change-feed event names the previous event of its task (`prev_seq`, NULL for a task's
-- first event and for events stored before this column existed) and the reason of its change,
-- so a task's history is a walk along primary keys, with no index on task_id (which costs
-- every appended event a write at a random place; see 20261203000001).
ALTER TABLE task_events ADD COLUMN prev_seq BIGINT;
ALTER TABLE task_events ADD COLUMN reason TEXT;
-- Tasks in one state, newest change first (the task list's state filter, recent failures):
-- (state, seq) serves those in index order and every lookup by state the old index served.
DROP INDEX tasks_state;
CREATE INDEX tasks_state_seq ON tasks (state, seq);
