-- Nothing for this database: PostgreSQL gets a function that writes one commit of task
-- changes in one call (see ../postgres/20261205100001_commit_function.sql); this database
-- runs the commit's statements one by one. Kept so that the three dialects stay in step.
SELECT 1;
