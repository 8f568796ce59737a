-- One commit of task changes as one call (src/store/db/postgres.rs), so that a commit costs the
-- daemon one round trip to the server instead of one per statement. The store plans the
-- commit (which rows change, which events append, from which seq) and passes it as arrays,
-- one per column; this function writes it all or, by raising one of these SQLSTATEs, nothing:
--   AMSEQ: the change feed's last seq is not `expected_max` (another writer appended);
--   AMROW: a task row no longer has the seq its change was planned on (another writer);
--   AMDEP: the fence was given (`f_name` not NULL) and this daemon no longer holds the lease.
-- The task rows are updated only where `seq` is still the planned-on one, as the multi-row
-- UPDATE of the other databases does; the lease row is locked (checked last) until COMMIT.
CREATE FUNCTION am_commit_changes(
    expected_max BIGINT,
    f_name TEXT, f_holder TEXT, f_term BIGINT,
    t_id TEXT[], t_state TEXT[], t_attempts BIGINT[], t_current TEXT[], t_agent TEXT[],
    t_host TEXT[], t_message TEXT[], t_reason TEXT[], t_exit BIGINT[], t_kill BOOLEAN[],
    t_updated BIGINT[], t_seq BIGINT[], t_old_seq BIGINT[],
    s_id TEXT[], s_spec TEXT[],
    a_task TEXT[], a_attempt BIGINT[], a_backend TEXT[], a_agent TEXT[], a_host TEXT[],
    a_url TEXT[], a_state TEXT[], a_message TEXT[], a_reason TEXT[], a_started BIGINT[],
    a_updated BIGINT[],
    e_seq BIGINT[], e_task TEXT[], e_state TEXT[], e_attempt BIGINT[], e_message TEXT[],
    e_at BIGINT[], e_key TEXT[], e_prev BIGINT[], e_reason TEXT[]
) RETURNS VOID LANGUAGE plpgsql AS $$
DECLARE
    last_seq BIGINT;
    updated BIGINT;
BEGIN
    SELECT COALESCE(MAX(seq), 0) INTO last_seq FROM task_events;
    IF last_seq <> expected_max THEN
        RAISE EXCEPTION 'the change feed ends at %, not %', last_seq, expected_max
            USING ERRCODE = 'AMSEQ';
    END IF;

    UPDATE tasks SET
        state = v.state, attempts = v.attempts, current_attempt_id = v.current_attempt_id,
        agent_id = v.agent_id, hostname = v.hostname, message = v.message,
        reason = v.reason, exit_code = v.exit_code, kill_requested = v.kill_requested,
        updated_at = v.updated_at, seq = v.seq
    FROM unnest(t_id, t_state, t_attempts, t_current, t_agent, t_host, t_message, t_reason,
                t_exit, t_kill, t_updated, t_seq, t_old_seq)
        AS v(id, state, attempts, current_attempt_id, agent_id, hostname, message, reason,
             exit_code, kill_requested, updated_at, seq, old_seq)
    WHERE tasks.id = v.id AND tasks.seq = v.old_seq;
    GET DIAGNOSTICS updated = ROW_COUNT;
    IF updated <> COALESCE(cardinality(t_id), 0) THEN
        RAISE EXCEPTION '% of % task rows were at their planned seq', updated, cardinality(t_id)
            USING ERRCODE = 'AMROW';
    END IF;

    INSERT INTO attempts (task_id, attempt, backend_task_id, agent_id, hostname, agent_url,
                          state, message, reason, started_at, updated_at)
    SELECT * FROM unnest(a_task, a_attempt, a_backend, a_agent, a_host, a_url, a_state,
                         a_message, a_reason, a_started, a_updated)
    ON CONFLICT (task_id, attempt) DO UPDATE SET
        agent_id = COALESCE(excluded.agent_id, attempts.agent_id),
        hostname = COALESCE(excluded.hostname, attempts.hostname),
        agent_url = COALESCE(excluded.agent_url, attempts.agent_url),
        state = excluded.state,
        message = COALESCE(excluded.message, attempts.message),
        reason = COALESCE(excluded.reason, attempts.reason),
        updated_at = excluded.updated_at;

    UPDATE tasks SET spec = v.spec FROM unnest(s_id, s_spec) AS v(id, spec)
    WHERE tasks.id = v.id;

    INSERT INTO task_events (seq, task_id, state, attempt, message, at, external_key,
                             prev_seq, reason)
    SELECT * FROM unnest(e_seq, e_task, e_state, e_attempt, e_message, e_at, e_key, e_prev,
                         e_reason);

    IF f_name IS NOT NULL THEN
        PERFORM 1 FROM leader_lease
        WHERE name = f_name AND holder = f_holder AND term = f_term
          AND expires_at > CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)
        FOR UPDATE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'the leader lease of term % is no longer held', f_term
                USING ERRCODE = 'AMDEP';
        END IF;
    END IF;
END
$$;
