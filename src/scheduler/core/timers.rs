//! Kills and their repeats, queue timeouts, and the FIFO queue of tasks by resource class.

use super::*;

impl Core {
    pub(super) fn send_kill(&mut self, tid: &str, now: Now, step: &mut Step) {
        self.remove_kill_timer(tid);
        let Some(t) = self.tasks.get_mut(tid) else {
            return;
        };
        // A launched task's spec is packed: read again for its grace period (kills are few).
        let grace = (t.spec.get().ok())
            .and_then(|s| s.kill_grace_period)
            .unwrap_or(self.cfg.kill_grace_secs);
        if let Some(b) = &t.backend_task_id {
            self.stats.kills_sent += 1;
            step.actions.push(Action::Kill {
                backend_task_id: b.clone(),
                agent_id: t.agent_id.as_deref().map(str::to_string),
                grace_secs: Some(grace),
            });
        }
        let at = now.instant
            + Duration::try_from_secs_f64(grace).unwrap_or_default()
            + self.cfg.kill_retry_after;
        t.kill_at = Some(at);
        self.kill_timers.insert((at, tid.to_string()));
    }

    pub(super) fn remove_kill_timer(&mut self, tid: &str) {
        if let Some(t) = self.tasks.get_mut(tid) {
            if let Some(at) = t.kill_at.take() {
                self.kill_timers.remove(&(at, tid.to_string()));
            }
        }
    }

    /// Fails the tasks that have waited queued longer than `queued_timeout`, with the reason
    /// they waited.
    pub(super) fn fire_queue_timeouts(&mut self, now: Now, step: &mut Step) {
        while let Some((at, id)) = self.queue_timers.first().cloned() {
            if at > now.instant {
                return;
            }
            self.queue_timers.pop_first();
            let due = self
                .tasks
                .get(&id)
                .is_some_and(|t| t.state == TaskState::Queued && t.queue_deadline == Some(at));
            if !due {
                continue;
            }
            let limit = self.cfg.queued_timeout.map_or(0.0, |d| d.as_secs_f64());
            let why = self.tasks[&id]
                .message
                .as_deref()
                .and_then(|m| m.strip_prefix(WAITING))
                .unwrap_or("no offer could hold it")
                .to_string();
            self.dequeue(&id);
            let msg = format!("queued for longer than queued_timeout ({limit} s): {why}");
            self.finish(&id, TaskState::Failed, Some(msg), None, None, now, step);
        }
    }

    pub(super) fn fire_kills(&mut self, now: Now, step: &mut Step) {
        let due: Vec<String> = self
            .kill_timers
            .iter()
            .take_while(|(at, _)| *at <= now.instant)
            .map(|(_, id)| id.clone())
            .collect();
        for id in due {
            let live = self
                .tasks
                .get(&id)
                .is_some_and(|t| t.kill_requested && t.state.has_live_attempt());
            if live {
                self.send_kill(&id, now, step);
            } else {
                self.remove_kill_timer(&id);
            }
        }
    }

    // ---- queue ----

    pub(super) fn enqueue(&mut self, tid: &str, now: Instant) {
        if let Some(limit) = self.cfg.queued_timeout {
            let at = now + limit;
            self.tasks.get_mut(tid).expect("held").queue_deadline = Some(at);
            self.queue_timers.insert((at, tid.to_string()));
        }
        let t = self.tasks.get(tid).expect("held");
        let Some(prepared) = &t.prepared else {
            return;
        };
        let key = ClassKey::of(&prepared.demand);
        let ci = match self.class_index.get(&key) {
            Some(&ci) => ci,
            None => {
                let class = Class {
                    key: key.clone(),
                    demand: prepared.demand.clone(),
                    queue: BTreeMap::new(),
                    checked: 0,
                };
                let ci = match self.free_classes.pop() {
                    Some(ci) => {
                        self.classes[ci] = Some(class);
                        ci
                    }
                    None => {
                        self.classes.push(Some(class));
                        self.classes.len() - 1
                    }
                };
                self.class_index.insert(key, ci);
                ci
            }
        };
        let seq = t.seq;
        self.classes[ci]
            .as_mut()
            .expect("indexed class")
            .queue
            .insert(seq, tid.to_string());
        self.tasks.get_mut(tid).expect("held").class = Some(ci);
    }

    pub(super) fn dequeue(&mut self, tid: &str) {
        let Some(t) = self.tasks.get_mut(tid) else {
            return;
        };
        let Some(ci) = t.class.take() else {
            return;
        };
        let seq = t.seq;
        let empty = match self.classes[ci].as_mut() {
            Some(c) => {
                c.queue.remove(&seq);
                c.queue.is_empty()
            }
            None => false,
        };
        if empty {
            self.drop_class(ci);
        }
    }

    pub(super) fn drop_class(&mut self, ci: usize) {
        if let Some(c) = self.classes[ci].take() {
            self.class_index.remove(&c.key);
            self.free_classes.push(ci);
        }
    }

    // ---- bookkeeping after every input ----

    pub(super) fn take_pending(&mut self) -> Step {
        self.pending_since = None;
        std::mem::take(&mut self.pending)
    }

    /// Completes a finished explicit reconciliation and keeps SUPPRESS/REVIVE in line with the
    /// queue.
    pub(super) fn after(&mut self, now: Now, step: &mut Step) {
        if !self.connected {
            return;
        }
        if self.recon.explicit && self.recon.pending.is_empty() {
            self.start_round(Vec::new(), now, step);
        }
        if self.counts[TaskState::Queued as usize] == 0 {
            self.revive_wanted = false;
            let blocked = self.suppress_retry_at.is_some_and(|t| t > now.instant);
            if !self.suppressed && !blocked {
                step.actions.push(Action::Suppress(Vec::new()));
                self.suppressed = true;
                self.suppress_retry_at = None;
            }
        } else if self.revive_wanted || self.suppressed {
            // A suppressed framework gets no offer at all until it revives, so that REVIVE
            // goes out at once; the interval only spaces the REVIVEs that clear decline
            // filters while offers still come.
            let due = self.suppressed
                || self
                    .last_revive
                    .is_none_or(|t| now.instant >= t + self.cfg.revive_interval);
            if due {
                step.actions.push(Action::Revive(Vec::new()));
                self.last_revive = Some(now.instant);
                self.suppressed = false;
                self.revive_wanted = false;
            } else {
                self.revive_wanted = true;
            }
        }
    }
}
