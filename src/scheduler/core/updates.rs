//! Status updates, failed and unconfirmed actions, voided offers: how each changes a task.

use super::*;

impl Core {
    pub(super) fn on_update(&mut self, u: StatusUpdate, now: Now, step: &mut Step) {
        self.stats.updates_received += 1;
        let mut ack_agent = u.agent_id.clone();
        match parse_attempt_task_id(&u.backend_task_id) {
            Some((tid, n)) => {
                let tid = tid.to_string();
                let current = match self.tasks.get(&tid) {
                    Some(t) => {
                        let same = t.backend_task_id.as_deref() == Some(u.backend_task_id.as_str());
                        if same && ack_agent.is_none() {
                            ack_agent = t.agent_id.as_deref().map(str::to_string);
                        }
                        same && t.attempt == n && t.state.has_live_attempt()
                    }
                    None => false,
                };
                if current {
                    self.recon.pending.remove(&u.backend_task_id);
                    self.apply_update(&tid, &u, now, step);
                } else {
                    self.stats.stale_updates += 1;
                    self.recon.pending.remove(&u.backend_task_id);
                    let alive = matches!(
                        u.state,
                        BackendState::Staging
                            | BackendState::Starting
                            | BackendState::Running
                            | BackendState::Killing
                    );
                    let ours = self.tasks.contains_key(&tid) || self.terminal.contains_key(&tid);
                    if alive && ours {
                        // An attempt we gave up on is running: stop it, a task runs once.
                        tracing::warn!(backend_task_id = %u.backend_task_id, state = u.state.mesos_name(),
                            "an old attempt reports itself alive; killing it");
                        self.stats.kills_sent += 1;
                        step.actions.push(Action::Kill {
                            backend_task_id: u.backend_task_id.clone(),
                            agent_id: u.agent_id.clone(),
                            grace_secs: Some(self.cfg.kill_grace_secs),
                        });
                    }
                }
            }
            None => {
                self.stats.stale_updates += 1;
                tracing::debug!(backend_task_id = %u.backend_task_id, "update for a task id we never made");
            }
        }
        if let Some(uuid) = u.uuid {
            match ack_agent {
                Some(agent_id) => {
                    self.stats.acks += 1;
                    step.actions.push(Action::Acknowledge {
                        agent_id,
                        backend_task_id: u.backend_task_id,
                        uuid,
                    });
                }
                None => tracing::warn!(backend_task_id = %u.backend_task_id,
                    "update with a uuid but no agent id: cannot acknowledge it"),
            }
        }
    }

    pub(super) fn apply_update(&mut self, tid: &str, u: &StatusUpdate, now: Now, step: &mut Step) {
        let t = self.tasks.get_mut(tid).expect("checked by caller");
        if let Some(unc) = t.unconfirmed.take() {
            let unknown_to_master = matches!(
                u.state,
                BackendState::Gone | BackendState::GoneByOperator | BackendState::Unknown
            );
            if unknown_to_master && !unc.voided {
                // An ACCEPT of this attempt may still reach the master and launch it.
                tracing::debug!(backend_task_id = %u.backend_task_id, state = u.state.mesos_name(),
                    "not final for an unconfirmed launch whose offers are not void yet");
                t.unconfirmed = Some(unc);
                return;
            }
            if u.state == BackendState::Staging && t.state == TaskState::Launching {
                // Known to the master: the launch goes on (a STAGING changes no state).
                t.message = Some(format!(
                    "attempt {}: the master has it ({}); launching",
                    t.attempt,
                    u.state.mesos_name()
                ));
                step.changes.push(change_of(t, now));
            }
        }
        let reconciled_end = u.source == Some(UpdateSource::Master)
            && u.reason.as_deref() == Some("REASON_RECONCILIATION")
            && matches!(u.state, BackendState::Failed | BackendState::Error);
        if reconciled_end {
            if t.held_end.is_none() {
                let at = now.instant + RECONCILED_END_GRACE;
                t.held_end = Some((at, Box::new(u.clone())));
                self.held_timers.insert((at, tid.to_string()));
            }
            return;
        }
        self.release_held_end(tid);
        self.apply_update_now(tid, u, now, step);
    }

    /// Forgets a held reconciliation answer (the agent's own update came, or the task ended).
    pub(super) fn release_held_end(&mut self, tid: &str) -> Option<Box<StatusUpdate>> {
        let (at, u) = self.tasks.get_mut(tid)?.held_end.take()?;
        self.held_timers.remove(&(at, tid.to_string()));
        Some(u)
    }

    /// Applies the reconciliation answers whose grace ran out without the agent's update.
    pub(super) fn fire_held_ends(&mut self, now: Now, step: &mut Step) {
        while let Some((at, tid)) = self.held_timers.first().cloned() {
            if at > now.instant {
                break;
            }
            self.held_timers.pop_first();
            let held = self.tasks.get_mut(&tid).and_then(|t| t.held_end.take());
            if let Some((_, u)) = held {
                self.apply_update_now(&tid, &u, now, step);
            }
        }
    }

    pub(super) fn apply_update_now(
        &mut self,
        tid: &str,
        u: &StatusUpdate,
        now: Now,
        step: &mut Step,
    ) {
        let t = self.tasks.get_mut(tid).expect("checked by caller");
        if t.agent_id.is_none() {
            t.agent_id = u.agent_id.as_deref().map(|a| self.agents.get(a));
        }
        t.last_backend_state = Some(u.state);
        if u.message.is_some() {
            t.message = u.message.clone();
        }
        if u.reason.is_some() {
            t.reason = u.reason.clone();
        }
        if u.exit_code.is_some() {
            t.exit_code = u.exit_code;
        }
        let n = t.attempt;
        let name = u.state.mesos_name();
        let launch_phase = u
            .reason
            .as_deref()
            .is_some_and(|r| LAUNCH_PHASE_REASONS.contains(&r));
        let never_started = u
            .reason
            .as_deref()
            .is_some_and(|r| NEVER_STARTED_REASONS.contains(&r));
        let detail = describe(u);
        use BackendState as B;
        let next = match u.state {
            // STAGING (only reconciliation reports it): the agent has the task but has not
            // started it, and may still be fetching its sandbox files.
            B::Staging => Next::Live(TaskState::Launching),
            B::Starting => Next::Live(TaskState::Starting),
            B::Running => Next::Live(TaskState::Running),
            B::Killing => Next::Live(TaskState::Killing),
            B::Finished => Next::Terminal(TaskState::Succeeded, None),
            B::Failed | B::Error if !t.started && never_started => Next::LaunchFailed(format!(
                "attempt {n} did not start on its agent: {detail}"
            )),
            B::Failed | B::Error => Next::Terminal(TaskState::Failed, None),
            B::Killed => Next::Terminal(TaskState::Killed, None),
            // Offers withdrawn or rescinded, the agent gone meanwhile: not the task's doing.
            B::Dropped | B::Lost if !t.started && launch_phase => Next::LaunchVoid(format!(
                "attempt {n} was not launched: {detail}"
            )),
            B::Dropped => Next::LaunchFailed(format!("attempt {n} was not launched: {detail}")),
            B::Lost | B::Unreachable => Next::Live(TaskState::Unknown),
            B::Unknown | B::Gone | B::GoneByOperator if !t.started => Next::LaunchFailed(format!(
                "attempt {n} never reached an agent and the master does not know it: {detail}"
            )),
            B::Unknown | B::Gone | B::GoneByOperator => Next::Terminal(
                TaskState::Failed,
                Some(format!(
                    "attempt {n} is gone: the master answered {name}; whether it ran to the end is unknown{}",
                    u.message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default()
                )),
            ),
        };
        match next {
            Next::Live(s) => {
                // The command has started: the agent fetched the sandbox files before.
                let running = !matches!(s, TaskState::Unknown | TaskState::Launching);
                if s != TaskState::Unknown {
                    t.started = true;
                }
                let s = if t.kill_requested && s != TaskState::Unknown {
                    TaskState::Killing
                } else {
                    s
                };
                let regress = match s {
                    TaskState::Launching => t.state != TaskState::Unknown,
                    TaskState::Starting => {
                        matches!(t.state, TaskState::Running | TaskState::Killing)
                    }
                    _ => false,
                };
                if s == t.state || regress {
                    return; // duplicate: nothing to commit
                }
                let old = t.state;
                t.state = s;
                self.counts[old as usize] -= 1;
                self.counts[s as usize] += 1;
                let mut change = change_of(t, now);
                if running && t.secrets {
                    // The agent has fetched what it needs: keep no secret any longer.
                    if let Ok(spec) = t.spec.get() {
                        let blanked = Arc::new(spec.without_secrets());
                        t.spec = HeldSpec::Parsed(blanked.clone());
                        t.spec.pack();
                        t.secrets = false;
                        change.spec = Some(blanked);
                    }
                }
                step.changes.push(change);
            }
            Next::Terminal(mut s, msg) => {
                if t.kill_requested && s == TaskState::Failed {
                    s = TaskState::Killed;
                }
                let msg = msg.or_else(|| t.message.clone());
                let (reason, code) = (t.reason.clone(), t.exit_code);
                self.finish(tid, s, msg, reason, code, now, step);
            }
            Next::LaunchFailed(what) => self.launch_failed(tid, what, false, now, step),
            Next::LaunchVoid(what) => self.launch_failed(tid, what, true, now, step),
        }
    }

    pub(super) fn on_action_failed(
        &mut self,
        action: Action,
        error: &str,
        now: Now,
        step: &mut Step,
    ) {
        match action {
            Action::Launch { tasks, .. } => {
                for lt in tasks {
                    let failed = self.tasks.get(&lt.task_id).is_some_and(|t| {
                        t.state == TaskState::Launching
                            && t.backend_task_id.as_deref() == Some(lt.backend_task_id.as_str())
                    });
                    if failed {
                        self.recon.pending.remove(&lt.backend_task_id);
                        let what = format!(
                            "attempt {} was not launched: the ACCEPT call failed: {error}",
                            lt.attempt
                        );
                        self.launch_failed(&lt.task_id, what, false, now, step);
                    }
                }
            }
            Action::Suppress(_) => {
                self.suppressed = false;
                self.suppress_retry_at = Some(now.instant + self.cfg.revive_interval);
            }
            Action::Revive(_) => self.revive_wanted = true,
            Action::VoidOffers { .. } => {
                let initial = self.cfg.reconcile_backoff_initial;
                self.void_backoff = (self.void_backoff * 2)
                    .max(initial)
                    .min(self.cfg.reconcile_backoff_max);
                self.void_retry_at
                    .get_or_insert(now.instant + self.void_backoff);
            }
            // Unanswered reconciliation is retried by its backoff; kills by their timer; an
            // unacknowledged update is sent again by the agent; a failed decline only leaves
            // the offer to time out or be rescinded.
            Action::Reconcile(_)
            | Action::Kill { .. }
            | Action::Acknowledge { .. }
            | Action::Decline { .. } => {
                tracing::debug!(%error, "backend call failed; its retry is scheduled");
            }
        }
    }

    /// A launch got no answer: its attempts are held, unconfirmed, and its offers voided.
    /// Any other unanswered call is handled as a failed one.
    pub(super) fn on_action_unconfirmed(
        &mut self,
        action: Action,
        error: &str,
        now: Now,
        step: &mut Step,
    ) {
        let Action::Launch {
            offer_ids, tasks, ..
        } = action
        else {
            return self.on_action_failed(action, error, now, step);
        };
        let shared: Arc<[String]> = offer_ids.into();
        let mut held = false;
        for lt in tasks {
            let Some(t) = self.tasks.get_mut(&lt.task_id) else {
                continue;
            };
            let same = t.backend_task_id.as_deref() == Some(lt.backend_task_id.as_str());
            if !same || !t.state.has_live_attempt() || t.started || t.unconfirmed.is_some() {
                continue;
            }
            t.unconfirmed = Some(Box::new(Unconfirmed {
                offer_ids: shared.clone(),
                voided: false,
            }));
            t.message = Some(format!(
                "attempt {}: no answer to its launch ({error}); the master may have it, so \
                 it is settled with the master before anything is relaunched",
                lt.attempt
            ));
            step.changes.push(change_of(t, now));
            held = true;
        }
        if held {
            tracing::warn!(offers = ?shared, %error,
                "a launch got no answer; its attempts are held until the master settles them");
            step.actions.push(Action::VoidOffers {
                offer_ids: shared.to_vec(),
            });
        }
    }

    /// The master took the DECLINE of an unconfirmed launch's offers: what it now answers
    /// about those attempts is final, so they are reconciled.
    pub(super) fn on_offers_voided(&mut self, offer_ids: &[String], now: Now, step: &mut Step) {
        self.void_backoff = Duration::ZERO;
        let mut list: Vec<(String, Option<String>)> = Vec::new();
        for t in self.tasks.values_mut() {
            let Some(unc) = t.unconfirmed.as_mut() else {
                continue;
            };
            if unc.voided || *unc.offer_ids != *offer_ids {
                continue;
            }
            unc.voided = true;
            if let Some(b) = &t.backend_task_id {
                list.push((b.clone(), t.agent_id.as_deref().map(str::to_string)));
            }
        }
        if list.is_empty() || !self.connected {
            return;
        }
        list.sort();
        if self.recon.explicit {
            // One round at a time: these join it, and are asked about at once.
            self.recon.pending.extend(list.iter().cloned());
            self.stats.reconcile_calls += 1;
            step.actions.push(Action::Reconcile(list));
        } else {
            self.start_round(list, now, step);
        }
    }

    /// Sends the DECLINE again for every unconfirmed launch whose offers are not void yet.
    pub(super) fn void_offers_again(&mut self, step: &mut Step) {
        let mut sets: Vec<Arc<[String]>> = self
            .tasks
            .values()
            .filter_map(|t| t.unconfirmed.as_ref())
            .filter(|u| !u.voided)
            .map(|u| u.offer_ids.clone())
            .collect();
        sets.sort();
        sets.dedup();
        for ids in sets {
            step.actions.push(Action::VoidOffers {
                offer_ids: ids.to_vec(),
            });
        }
    }

    // ---- transitions ----

    /// An attempt failed before its command ran: relaunch while retries are left. `free`:
    /// the cluster's doing (offers withdrawn, agent gone), which costs no retry.
    pub(super) fn launch_failed(
        &mut self,
        tid: &str,
        what: String,
        free: bool,
        now: Now,
        step: &mut Step,
    ) {
        self.stats.launch_failures += 1;
        if free {
            if let Some(t) = self.tasks.get_mut(tid) {
                t.free_attempts += 1;
            }
        }
        self.release_held_end(tid);
        let t = self.tasks.get(tid).expect("checked by caller");
        if t.kill_requested {
            let msg = Some(format!("killed before it started ({what})"));
            let reason = t.reason.clone();
            self.finish(tid, TaskState::Killed, msg, reason, None, now, step);
            return;
        }
        // A launched task holds its spec packed (see `held`): parsed again for the relaunch.
        let spec = t.spec.get().ok();
        let limit = (spec.as_ref())
            .and_then(|s| s.retries)
            .unwrap_or(self.cfg.launch_retries);
        // Attempts the cluster lost before they reached an agent are not the task's.
        let n = t.attempt - t.free_attempts.min(MAX_FREE_RELAUNCHES).min(t.attempt);
        // A launched task does not keep what its spec was prepared into (`on_offers`): it
        // is made again, from the same spec and configuration, for the relaunch.
        let prepared = (spec.as_ref())
            .and_then(|s| prepare(&self.cfg, s).ok())
            .map(Box::new);
        if n > limit || prepared.is_none() {
            let why = if prepared.is_none() {
                "the spec can no longer be launched".to_string()
            } else {
                format!("no launch retries left ({limit} allowed)")
            };
            let msg = Some(format!("{what}; {why}"));
            let reason = t.reason.clone();
            self.finish(tid, TaskState::Failed, msg, reason, None, now, step);
            return;
        }
        self.stats.relaunches += 1;
        let t = self.tasks.get_mut(tid).expect("checked above");
        let old = t.state;
        t.state = TaskState::Queued;
        t.message = Some(if free && t.free_attempts <= MAX_FREE_RELAUNCHES {
            format!("{what}; relaunching (the cluster's doing: no retry counted)")
        } else {
            format!("{what}; relaunching (retry {n} of {limit})")
        });
        t.started = false;
        t.unconfirmed = None;
        t.prepared = prepared;
        if let Some(spec) = spec {
            t.spec = HeldSpec::Parsed(spec);
        }
        self.counts[old as usize] -= 1;
        self.counts[TaskState::Queued as usize] += 1;
        step.changes.push(change_of(t, now));
        self.remove_kill_timer(tid);
        self.enqueue(tid, now.instant);
        self.revive_wanted = true;
    }

    /// Moves a task to a terminal state: one change, then it is forgotten (but remembered as
    /// terminal).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn finish(
        &mut self,
        tid: &str,
        state: TaskState,
        message: Option<String>,
        reason: Option<String>,
        exit_code: Option<i32>,
        now: Now,
        step: &mut Step,
    ) {
        self.remove_kill_timer(tid);
        self.release_held_end(tid);
        let Some(mut t) = self.tasks.remove(tid) else {
            return;
        };
        if let Some(b) = &t.backend_task_id {
            self.recon.pending.remove(b);
        }
        self.counts[t.state as usize] -= 1;
        t.state = state;
        t.message = message;
        t.reason = reason;
        t.exit_code = exit_code;
        let mut change = change_of(&t, now);
        if t.secrets {
            if let Ok(spec) = t.spec.get() {
                change.spec = Some(Arc::new(spec.without_secrets()));
            }
        }
        step.changes.push(change);
        match state {
            TaskState::Succeeded => self.stats.succeeded += 1,
            TaskState::Killed => self.stats.killed += 1,
            _ => self.stats.failed += 1,
        }
        self.remember_terminal(tid, state);
    }

    pub(super) fn remember_terminal(&mut self, tid: &str, state: TaskState) {
        if self.cfg.remember_terminal == 0 {
            return;
        }
        if self.terminal.insert(tid.to_string(), state).is_none() {
            self.terminal_order.push_back(tid.to_string());
        }
        while self.terminal_order.len() > self.cfg.remember_terminal {
            if let Some(old) = self.terminal_order.pop_front() {
                self.terminal.remove(&old);
            }
        }
    }

    // ---- kills ----
}

/// `TASK_DROPPED (REASON_INVALID_OFFERS): message`.
fn describe(u: &StatusUpdate) -> String {
    let mut s = u.state.mesos_name().to_string();
    if let Some(r) = &u.reason {
        s.push_str(&format!(" ({r})"));
    }
    if let Some(m) = &u.message {
        s.push_str(&format!(": {m}"));
    }
    s
}
