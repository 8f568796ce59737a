//! What the daemon currently sees of its cluster, for the web UI: the subscription (master,
//! framework id, since when, the last error), the agents that made offers with what they
//! offered last, and the latest offers with what was done with them.
//!
//! The driver feeds every backend event and every action it sends to [`ClusterView`]; readers
//! take a [`Seen`] snapshot. Offers are never held by the core (each is used or declined at
//! once), so "the offers the daemon sees" are the latest ones and their outcome.

use crate::scheduler::types::{Action, Event, Offer, Quantity};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

/// Latest offers kept.
pub const MAX_OFFERS: usize = 50;
/// Agents kept; beyond, the one that offered longest ago is forgotten.
pub const MAX_AGENTS: usize = 10_000;

/// The driver's record of the cluster; cheap to update, snapshotted by readers.
#[derive(Debug, Default)]
pub struct ClusterView(Mutex<Seen>);

/// A snapshot of what the driver has seen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Seen {
    pub subscribed: bool,
    pub framework_id: Option<String>,
    /// The leading master (`host:port`), as the backend reported it.
    pub master: Option<String>,
    /// When the subscription last started or ended (ms since the epoch).
    pub since_ms: Option<i64>,
    /// The last disconnection reason or backend error, with when it came.
    pub last_error: Option<(i64, String)>,
    /// True after SUPPRESS (nothing queued: no offers expected), false after REVIVE.
    pub suppressed: bool,
    /// By agent id.
    pub agents: BTreeMap<String, AgentSeen>,
    /// Newest first, at most [`MAX_OFFERS`].
    pub offers: VecDeque<OfferSeen>,
}

/// An agent, as its offers showed it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSeen {
    pub id: String,
    pub hostname: String,
    /// Its last offer's resources, e.g. `cpus 4 · mem 15.6 GB · ports 31000-32000`.
    pub resources: String,
    pub attributes: Vec<(String, String)>,
    pub last_offer_ms: i64,
    pub offers: u64,
}

/// One offer and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferSeen {
    pub id: String,
    pub agent_id: String,
    pub hostname: String,
    pub resources: String,
    pub at_ms: i64,
    pub outcome: OfferOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferOutcome {
    /// Not answered yet.
    Pending,
    /// Accepted with this many task launches.
    Used(usize),
    Declined,
    Rescinded,
}

impl std::fmt::Display for OfferOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OfferOutcome::Pending => f.write_str("pending"),
            OfferOutcome::Used(1) => f.write_str("used: 1 task"),
            OfferOutcome::Used(n) => write!(f, "used: {n} tasks"),
            OfferOutcome::Declined => f.write_str("declined"),
            OfferOutcome::Rescinded => f.write_str("rescinded"),
        }
    }
}

impl ClusterView {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        // Plain data: a panic elsewhere while holding the lock leaves nothing half-done.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of what has been seen.
    pub fn snapshot(&self) -> Seen {
        self.seen().clone()
    }

    /// A copy of what has been seen, without the agents (cheap however many there are).
    pub fn summary(&self) -> Seen {
        let s = self.seen();
        Seen {
            subscribed: s.subscribed,
            framework_id: s.framework_id.clone(),
            master: s.master.clone(),
            since_ms: s.since_ms,
            last_error: s.last_error.clone(),
            suppressed: s.suppressed,
            agents: BTreeMap::new(),
            offers: s.offers.clone(),
        }
    }

    /// Notes a backend event received at `now_ms`.
    pub fn observe(&self, ev: &Event, now_ms: i64) {
        match ev {
            Event::Subscribed {
                framework_id,
                master,
                ..
            } => {
                let mut s = self.seen();
                s.subscribed = true;
                s.framework_id = Some(framework_id.clone());
                s.master.clone_from(master);
                s.since_ms = Some(now_ms);
            }
            Event::Disconnected { reason } => self.lost(now_ms, reason),
            Event::Error(message) => self.lost(now_ms, message),
            Event::Offers(offers) => {
                let mut s = self.seen();
                for o in offers {
                    s.offer(o, now_ms);
                }
            }
            Event::Rescind(id) => self.answer(std::slice::from_ref(id), OfferOutcome::Rescinded),
            _ => {}
        }
    }

    /// Notes an action the driver sends.
    pub fn observe_action(&self, action: &Action) {
        match action {
            Action::Launch {
                offer_ids, tasks, ..
            } => self.answer(offer_ids, OfferOutcome::Used(tasks.len())),
            Action::Decline { offer_ids, .. } => self.answer(offer_ids, OfferOutcome::Declined),
            Action::Suppress(_) => self.seen().suppressed = true,
            Action::Revive(_) => self.seen().suppressed = false,
            _ => {}
        }
    }

    fn lost(&self, now_ms: i64, why: &str) {
        let mut s = self.seen();
        if s.subscribed {
            s.since_ms = Some(now_ms);
        }
        s.subscribed = false;
        s.last_error = Some((now_ms, why.to_string()));
    }

    fn answer(&self, ids: &[String], outcome: OfferOutcome) {
        let mut s = self.seen();
        for o in s.offers.iter_mut().filter(|o| ids.contains(&o.id)) {
            // A launch's leftovers are declined by the master, not by us: keep "used".
            if o.outcome == OfferOutcome::Pending {
                o.outcome = outcome;
            }
        }
    }
}

impl Seen {
    fn offer(&mut self, o: &Offer, now_ms: i64) {
        let resources = summarize(o);
        let count = self.agents.get(&o.agent_id).map_or(0, |a| a.offers);
        if count == 0 && self.agents.len() >= MAX_AGENTS {
            let oldest = self
                .agents
                .values()
                .min_by_key(|a| a.last_offer_ms)
                .map(|a| a.id.clone());
            if let Some(id) = oldest {
                self.agents.remove(&id);
            }
        }
        self.agents.insert(
            o.agent_id.clone(),
            AgentSeen {
                id: o.agent_id.clone(),
                hostname: o.hostname.clone(),
                resources: resources.clone(),
                attributes: o
                    .attributes
                    .iter()
                    .map(|a| (a.name.clone(), a.value.clone()))
                    .collect(),
                last_offer_ms: now_ms,
                offers: count + 1,
            },
        );
        self.offers.push_front(OfferSeen {
            id: o.id.clone(),
            agent_id: o.agent_id.clone(),
            hostname: o.hostname.clone(),
            resources,
            at_ms: now_ms,
            outcome: OfferOutcome::Pending,
        });
        self.offers.truncate(MAX_OFFERS);
    }
}

/// `cpus 4 · mem 15.6 GB · disk 100 GB · ports 31000-32000`: each resource name once, its
/// quantities summed over roles and reservations (a role's share is shown as `(role)`).
pub fn summarize(o: &Offer) -> String {
    let mut scalars: BTreeMap<&str, i64> = BTreeMap::new();
    let mut other: Vec<String> = Vec::new();
    let mut roles: Vec<&str> = Vec::new();
    for r in &o.resources {
        if let Some(role) = r.flavour.reserved_role.as_deref() {
            if !roles.contains(&role) {
                roles.push(role);
            }
        }
        match &r.quantity {
            Quantity::Scalar(m) => *scalars.entry(r.name.as_str()).or_default() += m,
            Quantity::Ranges(rs) => other.push(format!(
                "{} {}",
                r.name,
                rs.iter()
                    .map(|(a, b)| if a == b {
                        a.to_string()
                    } else {
                        format!("{a}-{b}")
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            )),
            Quantity::Set(items) => other.push(format!("{} {{{}}}", r.name, items.join(","))),
        }
    }
    let mut parts: Vec<String> = scalars
        .into_iter()
        .map(|(name, m)| match name {
            "mem" | "disk" => format!("{name} {}", megabytes(m)),
            _ => format!("{name} {}", crate::scheduler::types::from_milli(m)),
        })
        .collect();
    parts.extend(other);
    if !roles.is_empty() {
        parts.push(format!("({})", roles.join(", ")));
    }
    parts.join(" · ")
}

/// Thousandths of a MB, as `512 MB` or `15.6 GB`.
fn megabytes(milli: i64) -> String {
    let mb = milli as f64 / 1000.0;
    if mb >= 1024.0 {
        format!("{:.1} GB", mb / 1024.0)
    } else {
        format!("{mb:.0} MB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::types::{Flavour, Resource};

    fn offer(id: &str, agent: &str) -> Offer {
        let scalar = |name: &str, v: i64| Resource {
            name: name.into(),
            quantity: Quantity::Scalar(v),
            flavour: Flavour::plain(name),
        };
        Offer {
            id: id.into(),
            agent_id: agent.into(),
            hostname: format!("{agent}.example"),
            agent_url: None,
            resources: vec![
                scalar("cpus", 4000),
                scalar("mem", 16_000_000),
                Resource {
                    name: "ports".into(),
                    quantity: Quantity::Ranges(vec![(31000, 32000)]),
                    flavour: Flavour::plain("ports"),
                },
            ],
            attributes: vec![],
            allocation_role: None,
        }
    }

    #[test]
    fn offers_agents_and_the_subscription_are_followed() {
        let v = ClusterView::default();
        v.observe(
            &Event::Subscribed {
                framework_id: "fw-1".into(),
                heartbeat_interval_secs: Some(15.0),
                master: Some("m1:5050".into()),
            },
            1_000,
        );
        v.observe(
            &Event::Offers(vec![offer("o1", "a1"), offer("o2", "a2")]),
            2_000,
        );
        v.observe(&Event::Offers(vec![offer("o3", "a1")]), 3_000);
        v.observe_action(&Action::Launch {
            offer_ids: vec!["o1".into()],
            agent_id: "a1".into(),
            tasks: vec![],
            refuse_seconds: 5.0,
        });
        v.observe_action(&Action::Decline {
            offer_ids: vec!["o2".into(), "o1".into()],
            refuse_seconds: 5.0,
        });
        v.observe(&Event::Rescind("o3".into()), 3_500);
        v.observe_action(&Action::Suppress(vec![]));
        let summary = v.summary();
        assert!(summary.agents.is_empty());
        let s = v.snapshot();
        assert_eq!(
            Seen {
                agents: s.agents.clone(),
                ..summary
            },
            s
        );
        assert!(s.subscribed && s.suppressed);
        assert_eq!(s.framework_id.as_deref(), Some("fw-1"));
        assert_eq!(s.master.as_deref(), Some("m1:5050"));
        assert_eq!(s.since_ms, Some(1_000));
        assert_eq!(s.agents.len(), 2);
        assert_eq!(s.agents["a1"].offers, 2);
        assert_eq!(s.agents["a1"].last_offer_ms, 3_000);
        assert_eq!(
            s.agents["a1"].resources,
            "cpus 4 · mem 15.6 GB · ports 31000-32000"
        );
        let outcomes: Vec<_> = s
            .offers
            .iter()
            .map(|o| (o.id.as_str(), o.outcome))
            .collect();
        assert_eq!(
            outcomes,
            vec![
                ("o3", OfferOutcome::Rescinded),
                ("o2", OfferOutcome::Declined),
                ("o1", OfferOutcome::Used(0)),
            ]
        );

        v.observe(
            &Event::Disconnected {
                reason: "master gone".into(),
            },
            4_000,
        );
        let s = v.snapshot();
        assert!(!s.subscribed);
        assert_eq!(s.since_ms, Some(4_000));
        assert_eq!(s.last_error, Some((4_000, "master gone".to_string())));
    }

    #[test]
    fn only_the_latest_offers_and_a_bounded_number_of_agents_are_kept() {
        let v = ClusterView::default();
        for i in 0..(MAX_OFFERS + 10) {
            v.observe(
                &Event::Offers(vec![offer(&format!("o{i}"), "a1")]),
                i as i64,
            );
        }
        let s = v.snapshot();
        assert_eq!(s.offers.len(), MAX_OFFERS);
        assert_eq!(s.offers[0].id, format!("o{}", MAX_OFFERS + 9));

        let mut s = Seen::default();
        for i in 0..=MAX_AGENTS {
            s.offer(&offer("o", &format!("a{i}")), i as i64 + 1);
        }
        assert_eq!(s.agents.len(), MAX_AGENTS);
        assert!(
            !s.agents.contains_key("a0"),
            "the agent seen longest ago goes"
        );
    }
}
