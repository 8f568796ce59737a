-- The change feed is only ever read by seq (its primary key); an index on task_id cost every
-- appended event a write at a random place in the index, which was a third of a commit.
DROP INDEX task_events_task;
