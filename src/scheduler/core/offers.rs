//! Offers: placing queued tasks into them, declining the rest, and telling queued tasks why
//! they wait.

use super::*;

impl Core {
    pub(super) fn on_offers(&mut self, offers: Vec<Offer>, now: Now, step: &mut Step) {
        self.stats.offers_received += offers.len() as u64;
        if offers.is_empty() {
            return;
        }
        self.stats.matching_rounds += 1;
        self.see_agents(&offers);
        let live: Vec<usize> = (0..self.classes.len())
            .filter(|&i| self.classes[i].is_some())
            .collect();
        let mut plan = std::mem::take(&mut self.plan);
        {
            let inputs = live
                .iter()
                .map(|&i| {
                    let c = self.classes[i].as_ref().expect("live class");
                    (&c.demand, c.queue.keys().copied())
                })
                .collect();
            place_into(&mut plan, inputs, &offers);
        }
        // Sized up front: a LaunchTask is large, regrowing would copy them around.
        let mut counts = vec![0usize; offers.len()];
        for p in &plan.placements {
            counts[p.offer] += 1;
        }
        let mut per_offer: Vec<Vec<LaunchTask>> =
            counts.into_iter().map(Vec::with_capacity).collect();
        step.changes.reserve(plan.placements.len());
        let shared: Vec<AgentNames> = offers
            .iter()
            .map(|o| {
                (
                    self.agents.get(&o.agent_id),
                    self.agents.get(&o.hostname),
                    o.agent_url.as_deref().map(|u| self.agents.get(u)),
                )
            })
            .collect();
        for p in &plan.placements {
            let ci = live[p.class];
            let class = self.classes[ci].as_mut().expect("live class");
            let Some(id) = class.queue.remove(&p.seq) else {
                continue;
            };
            let offer = &offers[p.offer];
            let t = self.tasks.get_mut(&id).expect("queued task is held");
            let attempt = t.attempt + 1;
            // Launched, the task no longer holds what its spec was prepared into (its demand,
            // its resolved command): a relaunch prepares it again (`launch_failed`), and
            // 100,000 running tasks do not keep 100,000 of them.
            let prepared = t.prepared.take().expect("queued task is prepared");
            let take = plan.take(p, offer);
            let HeldSpec::Parsed(spec) = &t.spec else {
                unreachable!("a queued task's spec is parsed")
            };
            let launch = build(&self.cfg, &id, attempt, spec, &prepared, offer, take);
            // Nothing reads it again unless the attempt is lost (see `held`).
            t.spec.pack();
            t.class = None;
            t.attempt = attempt;
            t.backend_task_id = Some(launch.backend_task_id.clone());
            let (agent_id, hostname, agent_url) = &shared[p.offer];
            t.agent_id = Some(agent_id.clone());
            t.hostname = Some(hostname.clone());
            t.agent_url = agent_url.clone();
            t.started = false;
            t.launched_at = Some(now.instant);
            t.unconfirmed = None;
            t.last_backend_state = None;
            t.message = None;
            t.reason = None;
            t.exit_code = None;
            t.state = TaskState::Launching;
            self.counts[TaskState::Queued as usize] -= 1;
            self.counts[TaskState::Launching as usize] += 1;
            let mut ch = change_of(t, now);
            ch.backend_task_id = Some(launch.backend_task_id.clone());
            step.changes.push(ch);
            per_offer[p.offer].push(launch);
        }
        self.plan = plan;
        // Drop classes that ran empty.
        for &ci in &live {
            if self.classes[ci]
                .as_ref()
                .is_some_and(|c| c.queue.is_empty())
            {
                self.drop_class(ci);
            }
        }
        self.tell_waiting(now, step);
        let mut declined = Vec::new();
        for (offer, tasks) in offers.into_iter().zip(per_offer) {
            if tasks.is_empty() {
                declined.push(offer.id);
            } else {
                self.stats.offers_used += 1;
                self.stats.tasks_launched += tasks.len() as u64;
                step.actions.push(Action::Launch {
                    offer_ids: vec![offer.id],
                    agent_id: offer.agent_id,
                    tasks,
                    refuse_seconds: self.cfg.offer_refuse_seconds,
                });
            }
        }
        if !declined.is_empty() {
            self.stats.offers_declined += declined.len() as u64;
            step.actions.push(Action::Decline {
                offer_ids: declined,
                refuse_seconds: self.cfg.offer_refuse_seconds,
            });
        }
    }

    /// The backend is gone (the master or the engine unreachable): queued tasks say so.
    pub(super) fn went_offline(&mut self, reason: &str, now: Now, step: &mut Step) {
        let msg = format!("{WAITING}the backend is not connected: {}", reason.trim());
        if self.offline.as_deref() == Some(msg.as_str()) {
            return;
        }
        self.offline = Some(msg.clone());
        let queued: Vec<String> = self
            .classes
            .iter()
            .flatten()
            .flat_map(|c| c.queue.values().cloned())
            .collect();
        for tid in queued {
            self.say_waiting(&tid, &msg, now, step);
        }
    }

    /// Sets `msg` on a queued task (see [`set_waiting`]).
    pub(super) fn say_waiting(&mut self, tid: &str, msg: &str, now: Now, step: &mut Step) {
        if let Some(t) = self.tasks.get_mut(tid) {
            if t.state == TaskState::Queued {
                set_waiting(t, Some(msg), now, step);
            }
        }
    }

    /// Records what each offer shows of its agent.
    pub(super) fn see_agents(&mut self, offers: &[Offer]) {
        for o in offers {
            let mut amounts = [0i64; 3];
            for r in o.resources.iter().filter(|r| !r.flavour.revocable) {
                if let (Some(i), Quantity::Scalar(v)) =
                    (SCALAR_NAMES.iter().position(|n| *n == r.name), &r.quantity)
                {
                    amounts[i] += v;
                }
            }
            match self.seen_agents.get_mut(&o.agent_id) {
                Some(seen) => {
                    let grew = (0..3).any(|i| amounts[i] > seen.largest[i]);
                    for (largest, now) in seen.largest.iter_mut().zip(amounts) {
                        *largest = (*largest).max(now);
                    }
                    seen.offer = o.clone();
                    if grew {
                        self.seen_version += 1;
                    }
                }
                None => {
                    self.seen_agents.insert(
                        o.agent_id.clone(),
                        SeenAgent {
                            largest: amounts,
                            offer: o.clone(),
                        },
                    );
                    self.seen_version += 1;
                }
            }
        }
    }

    /// After a round: the tasks still queued whose class no agent seen so far could hold get
    /// a message saying why they wait (once per change of what was seen); the message goes
    /// when an agent that could hold them has been seen (they then wait for room).
    pub(super) fn tell_waiting(&mut self, now: Now, step: &mut Step) {
        let version = self.seen_version;
        for ci in 0..self.classes.len() {
            let Some(class) = self.classes[ci].as_mut() else {
                continue;
            };
            if class.checked == version || class.queue.is_empty() {
                continue;
            }
            class.checked = version;
            let why = waiting_reason(&class.demand, &self.seen_agents);
            for tid in class.queue.values() {
                if let Some(t) = self.tasks.get_mut(tid) {
                    set_waiting(t, why.as_deref(), now, step);
                }
            }
        }
    }
}

/// Why tasks of `demand` cannot run on any agent seen so far, or `None` when one of them
/// could hold such a task (it then only waits for room).
fn waiting_reason(demand: &Demand, seen: &HashMap<String, SeenAgent>) -> Option<String> {
    let matching: Vec<&SeenAgent> = seen
        .values()
        .filter(|a| satisfies(&a.offer, &demand.constraints))
        .collect();
    if matching.is_empty() {
        return Some(format!(
            "{WAITING}none of the {} agent(s) that offered so far matches the task's \
             constraints",
            seen.len()
        ));
    }
    let holds = |a: &&SeenAgent| (0..3).all(|i| a.largest[i] >= demand.scalars[i]);
    if matching.iter().any(holds) {
        return None;
    }
    let amounts = |v: &[i64; 3]| {
        let mut parts = vec![
            format!("{} cpus", from_milli(v[0])),
            format!("{} MB", from_milli(v[1])),
        ];
        if demand.scalars[2] > 0 {
            parts.push(format!("{} MB of disk", from_milli(v[2])));
        }
        parts.join(", ")
    };
    let best = matching
        .iter()
        .max_by_key(|a| (a.largest[0], a.largest[1]))
        .expect("not empty");
    Some(format!(
        "{WAITING}no agent has offered {} at once yet (the largest offer so far: {}); the task \
         stays queued until one does",
        amounts(&demand.scalars),
        amounts(&best.largest)
    ))
}
