//! The machine's capacity and the offers made of it, as a Mesos allocator holds them (pure:
//! time is passed in).

use crate::scheduler::types::{to_milli, Flavour, LaunchTask, Offer, Quantity, Resource};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What a task holds: thousandths of cpus, mem (MB) and disk (MB), and host ports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpus: i64,
    pub mem: i64,
    pub disk: i64,
    pub ports: Vec<u64>,
}

impl Usage {
    /// The resources a launch took from the offer (falls back to the spec when the launch
    /// lists none).
    pub fn of(task: &LaunchTask) -> Usage {
        let mut u = Usage::default();
        for r in &task.resources {
            match (&*r.name, &r.quantity) {
                ("cpus", Quantity::Scalar(v)) => u.cpus += v,
                ("mem", Quantity::Scalar(v)) => u.mem += v,
                ("disk", Quantity::Scalar(v)) => u.disk += v,
                ("ports", Quantity::Ranges(rs)) => {
                    for (a, b) in rs {
                        u.ports.extend(*a..=*b);
                    }
                }
                _ => {}
            }
        }
        if task.resources.is_empty() {
            u.cpus = task.spec.cpus.map(to_milli).unwrap_or(0);
            u.mem = task.spec.mem.map(to_milli).unwrap_or(0);
            u.disk = task.spec.disk.map(to_milli).unwrap_or(0);
        }
        for m in &task.port_mappings {
            if !u.ports.contains(&(m.host_port as u64)) {
                u.ports.push(m.host_port as u64);
            }
        }
        u
    }
}

/// The machine's capacity, what is in use, and the outstanding offers. As a Mesos allocator
/// does, an offer stays valid until it is used or declined (SUPPRESS stops further offers only,
/// as in Mesos): capacity
/// freed meanwhile goes out as a further offer of its own, so that a launch in flight on an
/// earlier offer always finds its resources still there.
#[derive(Debug, Clone)]
pub struct OfferBook {
    total: Usage,
    port_range: (u64, u64),
    used: HashMap<String, Usage>,
    /// Offers out, each with the disjoint slice of the free capacity it holds.
    outstanding: Vec<(String, Usage)>,
    seq: u64,
    refuse_until: Option<Instant>,
    suppressed: bool,
    max_refuse: Duration,
}

impl OfferBook {
    pub fn new(
        cpus: f64,
        mem_mb: f64,
        disk_mb: f64,
        port_range: (u64, u64),
        max_refuse: Duration,
    ) -> OfferBook {
        OfferBook {
            total: Usage {
                cpus: to_milli(cpus),
                mem: to_milli(mem_mb),
                disk: to_milli(disk_mb),
                ports: Vec::new(),
            },
            port_range,
            used: HashMap::new(),
            outstanding: Vec::new(),
            seq: 0,
            refuse_until: None,
            suppressed: false,
            max_refuse,
        }
    }

    /// What is free now.
    pub fn free(&self) -> Usage {
        let mut f = self.total.clone();
        let mut used_ports: Vec<u64> = Vec::new();
        for u in self.used.values() {
            f.cpus -= u.cpus;
            f.mem -= u.mem;
            f.disk -= u.disk;
            used_ports.extend(&u.ports);
        }
        f.ports = (self.port_range.0..=self.port_range.1)
            .filter(|p| !used_ports.contains(p))
            .collect();
        f
    }

    /// Records what a task holds (replacing what it held).
    pub fn hold(&mut self, backend_task_id: &str, usage: Usage) {
        self.used.insert(backend_task_id.to_string(), usage);
    }

    /// Gives back what a task held. Returns true when it held something.
    pub fn release(&mut self, backend_task_id: &str) -> bool {
        self.used.remove(backend_task_id).is_some()
    }

    /// What is free and in no outstanding offer.
    fn unoffered(&self) -> Usage {
        let mut f = self.free();
        for (_, o) in &self.outstanding {
            f.cpus -= o.cpus;
            f.mem -= o.mem;
            f.disk -= o.disk;
            f.ports.retain(|p| !o.ports.contains(p));
        }
        f
    }

    /// Whether `usage` fits in what is free and not promised to an outstanding offer.
    pub fn fits(&self, usage: &Usage) -> bool {
        let f = self.unoffered();
        usage.cpus <= f.cpus
            && usage.mem <= f.mem
            && usage.disk <= f.disk
            && usage.ports.iter().all(|p| f.ports.contains(p))
    }

    /// An offer of the free capacity no outstanding offer holds, if one should go out now:
    /// not suppressed or refused, and some cpus and memory of that kind.
    pub fn next_offer(&mut self, now: Instant, agent_id: &str, hostname: &str) -> Option<Offer> {
        if self.suppressed {
            return None;
        }
        if matches!(self.refuse_until, Some(t) if now < t) {
            return None;
        }
        self.refuse_until = None;
        let f = self.unoffered();
        if f.cpus <= 0 || f.mem <= 0 {
            return None;
        }
        self.seq += 1;
        let id = format!("{agent_id}-O{}", self.seq);
        self.outstanding.push((id.clone(), f.clone()));
        let mut resources = vec![
            Resource {
                name: "cpus".into(),
                quantity: Quantity::Scalar(f.cpus),
                flavour: Flavour::plain("cpus"),
            },
            Resource {
                name: "mem".into(),
                quantity: Quantity::Scalar(f.mem),
                flavour: Flavour::plain("mem"),
            },
        ];
        if f.disk > 0 {
            resources.push(Resource {
                name: "disk".into(),
                quantity: Quantity::Scalar(f.disk),
                flavour: Flavour::plain("disk"),
            });
        }
        let ranges = to_ranges(&f.ports);
        if !ranges.is_empty() {
            resources.push(Resource {
                name: "ports".into(),
                quantity: Quantity::Ranges(ranges),
                flavour: Flavour::plain("ports"),
            });
        }
        Some(Offer {
            id,
            agent_id: agent_id.to_string(),
            hostname: hostname.to_string(),
            agent_url: None,
            resources,
            attributes: Vec::new(),
            allocation_role: None,
        })
    }

    /// Takes the outstanding offers `offer_ids` names, if all of them are outstanding (their
    /// capacity is the launch's from now on). False: some offer is not valid, nothing taken.
    pub fn take(&mut self, offer_ids: &[String]) -> bool {
        let valid = !offer_ids.is_empty()
            && offer_ids
                .iter()
                .all(|i| self.outstanding.iter().any(|(o, _)| o == i));
        if valid {
            self.outstanding.retain(|(o, _)| !offer_ids.contains(o));
        }
        valid
    }

    /// Declines: offers are held back for `refuse_seconds` (at most `max_refuse`).
    pub fn decline(&mut self, offer_ids: &[String], refuse_seconds: f64, now: Instant) {
        if self.take(offer_ids) {
            let secs = if refuse_seconds.is_finite() && refuse_seconds > 0.0 {
                refuse_seconds
            } else {
                0.0
            };
            let d = Duration::from_secs_f64(secs).min(self.max_refuse);
            self.refuse_until = (!d.is_zero()).then(|| now + d);
        }
    }

    /// Stops further offers until [`OfferBook::revive`]; outstanding ones stay valid (the
    /// framework may be launching on them, or declines them).
    pub fn suppress(&mut self) {
        self.suppressed = true;
    }

    /// Resumes offers and clears a decline's hold.
    pub fn revive(&mut self) {
        self.suppressed = false;
        self.refuse_until = None;
    }

    /// When the next offer may go out because a decline's hold ends (never while suppressed:
    /// only a revive brings offers back then, and a hold that ended must not wake the backend's
    /// loop again and again).
    pub fn wake_at(&self) -> Option<Instant> {
        if self.suppressed {
            return None;
        }
        self.refuse_until
    }
}

pub(super) fn to_ranges(ports: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &p in ports {
        match out.last_mut() {
            Some((_, hi)) if *hi + 1 == p => *hi = p,
            _ => out.push((p, p)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suppressed_book_never_asks_to_be_woken_for_a_hold_that_ended() {
        let t0 = Instant::now();
        let mut b = OfferBook::new(2.0, 1024.0, 0.0, (31000, 31003), Duration::from_secs(5));
        let o = b.next_offer(t0, "a", "h").unwrap();
        // Nothing is queued: the offer is declined and offers are suppressed (an idle daemon).
        b.decline(std::slice::from_ref(&o.id), 120.0, t0);
        b.suppress();
        let later = t0 + Duration::from_secs(6);
        assert!(b.next_offer(later, "a", "h").is_none(), "suppressed");
        assert_eq!(
            b.wake_at(),
            None,
            "a wake-up in the past would spin the backend's loop"
        );
        b.revive();
        assert!(
            b.next_offer(later, "a", "h").is_some(),
            "revive brings offers back"
        );
    }

    #[test]
    fn offers_stay_valid_while_capacity_frees_or_offers_are_suppressed() {
        let t0 = Instant::now();
        let mut b = OfferBook::new(2.0, 1024.0, 0.0, (31000, 31003), Duration::from_secs(5));
        let cpus = |n: i64| Usage {
            cpus: n,
            mem: 100_000,
            ..Usage::default()
        };
        b.hold("x", cpus(1000));
        let o1 = b.next_offer(t0, "a", "h").unwrap();
        // Capacity freed while o1 is out goes into a further offer; o1 keeps its share.
        assert!(b.release("x"));
        let o2 = b.next_offer(t0, "a", "h").unwrap();
        assert!(
            b.next_offer(t0, "a", "h").is_none(),
            "everything is offered"
        );
        let scalar = |o: &Offer| {
            o.resources
                .iter()
                .find(|r| r.name == "cpus")
                .unwrap()
                .quantity
                .clone()
        };
        assert_eq!(scalar(&o1), Quantity::Scalar(1000));
        assert_eq!(scalar(&o2), Quantity::Scalar(1000));
        assert!(b.take(std::slice::from_ref(&o2.id)));
        assert!(b.fits(&cpus(1000)), "o2's share is the launch's");
        assert!(!b.fits(&cpus(1001)), "o1's share is not");
        b.hold("y", cpus(1000));
        assert!(b.take(std::slice::from_ref(&o1.id)), "o1 is still valid");
        assert!(b.fits(&cpus(1000)));
        assert!(!b.take(std::slice::from_ref(&o1.id)), "used once");
        assert!(!b.take(&[o1.id.clone(), "never-made".into()]));
        b.hold("z", cpus(1000));
        // SUPPRESS stops further offers; one already out stays valid.
        b.release("z");
        let o3 = b.next_offer(t0, "a", "h").unwrap();
        b.suppress();
        b.release("y");
        assert!(b.next_offer(t0, "a", "h").is_none(), "suppressed");
        assert!(b.take(std::slice::from_ref(&o3.id)));
    }

    #[test]
    fn offers_follow_free_capacity_declines_and_revive() {
        let t0 = Instant::now();
        let mut b = OfferBook::new(2.0, 1024.0, 0.0, (31000, 31003), Duration::from_secs(5));
        let o = b.next_offer(t0, "a", "h").unwrap();
        assert!(b.next_offer(t0, "a", "h").is_none(), "one offer at a time");
        let scalar = |o: &Offer, n: &str| {
            o.resources
                .iter()
                .find(|r| r.name == n)
                .map(|r| r.quantity.clone())
        };
        assert_eq!(scalar(&o, "cpus"), Some(Quantity::Scalar(2000)));
        assert_eq!(
            scalar(&o, "ports"),
            Some(Quantity::Ranges(vec![(31000, 31003)]))
        );
        assert!(b.take(std::slice::from_ref(&o.id)));
        assert!(
            !b.take(std::slice::from_ref(&o.id)),
            "an offer is used once"
        );
        b.hold(
            "x",
            Usage {
                cpus: 1500,
                mem: 512_000,
                disk: 0,
                ports: vec![31001],
            },
        );
        let o2 = b.next_offer(t0, "a", "h").unwrap();
        assert_eq!(scalar(&o2, "cpus"), Some(Quantity::Scalar(500)));
        assert_eq!(scalar(&o2, "mem"), Some(Quantity::Scalar(512_000)));
        assert_eq!(
            scalar(&o2, "ports"),
            Some(Quantity::Ranges(vec![(31000, 31000), (31002, 31003)]))
        );
        // A decline holds offers back, capped at max_refuse.
        b.decline(std::slice::from_ref(&o2.id), 3600.0, t0);
        assert!(b
            .next_offer(t0 + Duration::from_secs(4), "a", "h")
            .is_none());
        assert_eq!(b.wake_at(), Some(t0 + Duration::from_secs(5)));
        let o3 = b.next_offer(t0 + Duration::from_secs(5), "a", "h").unwrap();
        b.decline(std::slice::from_ref(&o3.id), 60.0, t0);
        b.revive();
        let o4 = b.next_offer(t0, "a", "h").unwrap();
        b.suppress();
        assert!(b.take(std::slice::from_ref(&o4.id)), "still valid");
        assert!(b.next_offer(t0, "a", "h").is_none(), "suppressed");
        b.revive();
        assert!(b.release("x"));
        let o5 = b.next_offer(t0, "a", "h").unwrap();
        assert_eq!(scalar(&o5, "cpus"), Some(Quantity::Scalar(2000)));
        // Nothing free, nothing offered.
        b.take(std::slice::from_ref(&o5.id));
        b.hold(
            "y",
            Usage {
                cpus: 2000,
                mem: 1,
                disk: 0,
                ports: vec![],
            },
        );
        assert!(b.next_offer(t0, "a", "h").is_none());
        assert!(!b.fits(&Usage {
            cpus: 1,
            ..Usage::default()
        }));
    }
}
