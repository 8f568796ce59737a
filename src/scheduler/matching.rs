//! Offer matching: classes of queued tasks × offers → placements.
//!
//! Queued tasks are grouped by *class* (what they ask for: cpus, mem, disk, ports and agent
//! constraints); every task of a class fits exactly the offers the others fit. A matching round
//! walks the tasks of all classes oldest first (a k-way merge over the classes' queues) and puts
//! each on the first offer that still holds its request (first fit). Each class keeps a cursor
//! into the offer list that only moves forward: an offer that cannot hold one task of a class
//! (constraints unmet, or not enough left) can never hold the next one in the same round, since
//! what an offer holds only shrinks. A round therefore costs
//! O(tasks · log classes + classes · offers), not tasks × offers.
//!
//! Resources are taken flavour by flavour ([`Flavour`] equality): a task asking for 2 cpus from
//! an offer with 1 reserved and 4 unreserved cpus gets two `cpus` entries, each carrying the
//! flavour of the entry it came from. Entries reserved for a role are used before unreserved
//! ones. Revocable entries are never used; `whole` entries (MOUNT disks, persistent volumes)
//! are not used either, so every task gets exactly what it asked for. Scalars are fixed point
//! (thousandths). Host ports are taken from the offer's `ports` ranges: fixed ports as asked,
//! the others from the lowest free port up.

use super::types::{Offer, Quantity, Resource};
use crate::task::spec::AttrMatch;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::iter::Peekable;

/// The scalar resources a task asks for, in the order of [`Demand::scalars`].
pub const SCALAR_NAMES: [&str; 3] = ["cpus", "mem", "disk"];

/// What one task of a class asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demand {
    /// Thousandths of `cpus`, `mem` (MB) and `disk` (MB); 0 = not requested.
    pub scalars: [i64; 3],
    /// Host ports asked for by number (sorted, no duplicates).
    pub fixed_ports: Vec<u64>,
    /// How many further host ports are to be picked from the offer.
    pub dynamic_ports: u32,
    /// Agent constraints: every constraint must hold; a constraint holds when any of its
    /// alternatives matches (see [`satisfies`]).
    pub constraints: Vec<Vec<AttrMatch>>,
}

/// Whether `offer` satisfies every constraint. An alternative `name:value` matches when the
/// offer has an attribute `name` whose text value is `value` (both case-insensitive), or when
/// `name` is `hostname` and the offer's hostname is `value`. An offer without the attribute
/// fails the alternative.
pub fn satisfies(offer: &Offer, constraints: &[Vec<AttrMatch>]) -> bool {
    constraints
        .iter()
        .all(|alts| alts.iter().any(|a| alternative_matches(offer, a)))
}

fn alternative_matches(offer: &Offer, a: &AttrMatch) -> bool {
    if a.name.eq_ignore_ascii_case("hostname") && offer.hostname.eq_ignore_ascii_case(&a.value) {
        return true;
    }
    offer
        .attributes
        .iter()
        .any(|at| at.name.eq_ignore_ascii_case(&a.name) && at.value.eq_ignore_ascii_case(&a.value))
}

/// What one task took from an offer, as resources to launch with.
#[derive(Debug, Clone, PartialEq)]
pub struct Take {
    /// Resource entries, each a copy of an offered entry's name and flavour with the quantity
    /// taken from it.
    pub resources: Vec<Resource>,
    /// The host ports picked for the task's dynamic ports, in order.
    pub dynamic_ports: Vec<u64>,
}

/// One piece of what a task took: `amount` of the scalar entry `res` of the offer, or the
/// ports `lo..=hi` of its ranges entry `res`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Scalar { res: u32, amount: i64 },
    Ports { res: u32, lo: u64, hi: u64 },
}

/// One task placed on one offer. What it took is in the [`Plan`] (no allocation per task
/// while matching).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Index into the offers given to [`place`].
    pub offer: usize,
    /// Index into the classes given to [`place`].
    pub class: usize,
    /// The task's queue position (as yielded by its class's iterator).
    pub seq: u64,
    parts: std::ops::Range<u32>,
    dynamic: std::ops::Range<u32>,
}

/// The result of a matching round: placements in the order they were made (oldest task
/// first), and what each took.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub placements: Vec<Placement>,
    parts: Vec<Part>,
    dynamic_ports: Vec<u64>,
}

impl Plan {
    /// The pieces `p` took from its offer.
    pub fn parts(&self, p: &Placement) -> &[Part] {
        &self.parts[p.parts.start as usize..p.parts.end as usize]
    }

    /// The host ports picked for `p`'s dynamic ports, in order.
    pub fn dynamic_ports(&self, p: &Placement) -> &[u64] {
        &self.dynamic_ports[p.dynamic.start as usize..p.dynamic.end as usize]
    }

    /// What `p` took, as resources copied from `offer` (the offer `p` was placed on): one
    /// entry per scalar flavour, one `ports` entry per ranges flavour.
    pub fn take(&self, p: &Placement, offer: &Offer) -> Take {
        let mut resources: Vec<Resource> = Vec::with_capacity(p.parts.len());
        let mut ports: Vec<(u32, Vec<(u64, u64)>)> = Vec::new();
        for part in self.parts(p) {
            match *part {
                Part::Scalar { res, amount } => {
                    let src = &offer.resources[res as usize];
                    resources.push(Resource {
                        name: src.name.clone(),
                        quantity: Quantity::Scalar(amount),
                        flavour: src.flavour.clone(),
                    });
                }
                Part::Ports { res, lo, hi } => match ports.iter_mut().find(|(r, _)| *r == res) {
                    Some((_, rs)) => rs.push((lo, hi)),
                    None => ports.push((res, vec![(lo, hi)])),
                },
            }
        }
        for (res, mut rs) in ports {
            rs.sort_unstable();
            let mut merged: Vec<(u64, u64)> = Vec::with_capacity(rs.len());
            for (lo, hi) in rs {
                match merged.last_mut() {
                    Some(last) if lo == last.1 + 1 => last.1 = hi,
                    _ => merged.push((lo, hi)),
                }
            }
            let src = &offer.resources[res as usize];
            resources.push(Resource {
                name: src.name.clone(),
                quantity: Quantity::Ranges(merged),
                flavour: src.flavour.clone(),
            });
        }
        Take {
            resources,
            dynamic_ports: self.dynamic_ports(p).to_vec(),
        }
    }
}

#[derive(Debug, Clone)]
struct ScalarEntry {
    /// Index into `Offer::resources`.
    res: usize,
    avail: i64,
}

#[derive(Debug, Clone)]
struct PortEntry {
    res: usize,
    /// Free inclusive ranges, sorted, non-overlapping.
    ranges: Vec<(u64, u64)>,
}

/// What is left of one offer during a matching round.
#[derive(Debug, Clone)]
pub struct Pool<'a> {
    offer: &'a Offer,
    /// Per scalar name: usable entries, reserved ones first.
    scalars: [Vec<ScalarEntry>; 3],
    totals: [i64; 3],
    ports: Vec<PortEntry>,
    free_ports: u64,
}

impl<'a> Pool<'a> {
    /// The usable part of an offer: non-revocable, non-`whole` `cpus`/`mem`/`disk` scalars and
    /// `ports` ranges.
    pub fn new(offer: &'a Offer) -> Pool<'a> {
        let mut scalars: [Vec<ScalarEntry>; 3] = Default::default();
        let mut ports = Vec::new();
        for (i, r) in offer.resources.iter().enumerate() {
            if r.flavour.revocable || r.flavour.whole {
                continue;
            }
            match &r.quantity {
                Quantity::Scalar(v) if *v > 0 => {
                    if let Some(k) = SCALAR_NAMES.iter().position(|n| *n == r.name) {
                        scalars[k].push(ScalarEntry { res: i, avail: *v });
                    }
                }
                Quantity::Ranges(rs) if r.name == "ports" => {
                    let mut ranges: Vec<(u64, u64)> =
                        rs.iter().copied().filter(|(lo, hi)| lo <= hi).collect();
                    ranges.sort_unstable();
                    ranges.dedup();
                    // Merge overlaps defensively: the master sends disjoint ranges.
                    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
                    for (lo, hi) in ranges {
                        match merged.last_mut() {
                            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                            _ => merged.push((lo, hi)),
                        }
                    }
                    if !merged.is_empty() {
                        ports.push(PortEntry {
                            res: i,
                            ranges: merged,
                        });
                    }
                }
                _ => {}
            }
        }
        for entries in &mut scalars {
            // Reserved (for our role) before unreserved; stable, so the offer's order stays.
            entries.sort_by_key(|e| offer.resources[e.res].flavour.reserved_role.is_none());
        }
        let totals = [0, 1, 2].map(|k| scalars[k].iter().map(|e| e.avail).sum());
        let free_ports = ports
            .iter()
            .flat_map(|p| p.ranges.iter())
            .map(|(lo, hi)| hi - lo + 1)
            .sum();
        Pool {
            offer,
            scalars,
            totals,
            ports,
            free_ports,
        }
    }

    #[cfg(test)]
    /// The offer this pool is carved from.
    pub fn offer(&self) -> &'a Offer {
        self.offer
    }

    #[cfg(test)]
    /// What is left of `cpus`, `mem`, `disk` (thousandths).
    pub fn totals(&self) -> [i64; 3] {
        self.totals
    }

    /// Whether what is left holds one task of `d` (resources only; constraints are separate).
    pub fn fits(&self, d: &Demand) -> bool {
        if (0..3).any(|k| self.totals[k] < d.scalars[k]) {
            return false;
        }
        let wanted = d.fixed_ports.len() as u64 + u64::from(d.dynamic_ports);
        if wanted == 0 {
            return true;
        }
        if self.free_ports < wanted {
            return false;
        }
        d.fixed_ports
            .iter()
            .all(|p| self.port_entry_of(*p).is_some())
    }

    fn port_entry_of(&self, port: u64) -> Option<(usize, usize)> {
        self.ports.iter().enumerate().find_map(|(e, entry)| {
            let idx = entry.ranges.partition_point(|(_, hi)| *hi < port);
            match entry.ranges.get(idx) {
                Some((lo, _)) if *lo <= port => Some((e, idx)),
                _ => None,
            }
        })
    }

    /// Takes one task of `d`, appending what it took to `parts` and the dynamic ports picked
    /// to `dynamic`. Call only after [`Pool::fits`] said yes.
    pub fn take(&mut self, d: &Demand, parts: &mut Vec<Part>, dynamic: &mut Vec<u64>) {
        for k in 0..3 {
            let mut need = d.scalars[k];
            if need <= 0 {
                continue;
            }
            self.totals[k] -= need;
            for e in self.scalars[k].iter_mut() {
                if e.avail == 0 {
                    continue;
                }
                let t = e.avail.min(need);
                e.avail -= t;
                need -= t;
                parts.push(Part::Scalar {
                    res: e.res as u32,
                    amount: t,
                });
                if need == 0 {
                    break;
                }
            }
            debug_assert_eq!(need, 0, "take() without fits()");
        }
        for &p in &d.fixed_ports {
            if let Some((e, idx)) = self.port_entry_of(p) {
                let ranges = &mut self.ports[e].ranges;
                let (lo, hi) = ranges[idx];
                if lo == hi {
                    ranges.remove(idx);
                } else if p == lo {
                    ranges[idx].0 = lo + 1;
                } else if p == hi {
                    ranges[idx].1 = hi - 1;
                } else {
                    ranges[idx].1 = p - 1;
                    ranges.insert(idx + 1, (p + 1, hi));
                }
                self.free_ports -= 1;
                parts.push(Part::Ports {
                    res: self.ports[e].res as u32,
                    lo: p,
                    hi: p,
                });
            }
        }
        let mut need = u64::from(d.dynamic_ports);
        for entry in self.ports.iter_mut() {
            if need == 0 {
                break;
            }
            let mut consumed = 0;
            for r in entry.ranges.iter_mut() {
                if need == 0 {
                    break;
                }
                let n = (r.1 - r.0 + 1).min(need);
                dynamic.extend(r.0..r.0 + n);
                parts.push(Part::Ports {
                    res: entry.res as u32,
                    lo: r.0,
                    hi: r.0 + n - 1,
                });
                need -= n;
                self.free_ports -= n;
                if r.0 + n - 1 == r.1 {
                    consumed += 1;
                } else {
                    r.0 += n;
                }
            }
            entry.ranges.drain(..consumed);
        }
    }
}

#[cfg(test)]
/// Places queued tasks on offers. `classes` gives, per class, its demand and the queue
/// positions of its tasks in increasing order (oldest first; positions are unique across
/// classes). Tasks are considered oldest first across all classes; each goes to the first
/// offer whose remaining resources hold it and whose agent meets the class's constraints.
/// Tasks that fit nowhere are left out of the result (they stay queued).
pub fn place<I>(classes: Vec<(&Demand, I)>, offers: &[Offer]) -> Plan
where
    I: Iterator<Item = u64>,
{
    let mut plan = Plan::default();
    place_into(&mut plan, classes, offers);
    plan
}

/// [`place`] into `plan`, whose previous content is cleared but whose buffers are kept: a
/// caller that places round after round reuses them instead of having the allocator map (and
/// the kernel fault in) fresh memory for every large round.
pub fn place_into<I>(plan: &mut Plan, classes: Vec<(&Demand, I)>, offers: &[Offer])
where
    I: Iterator<Item = u64>,
{
    plan.placements.clear();
    plan.parts.clear();
    plan.dynamic_ports.clear();
    let mut pools: Vec<Pool<'_>> = offers.iter().map(Pool::new).collect();
    let mut demands = Vec::with_capacity(classes.len());
    let mut queues: Vec<Peekable<I>> = Vec::with_capacity(classes.len());
    let mut heap = BinaryHeap::with_capacity(classes.len());
    for (k, (d, it)) in classes.into_iter().enumerate() {
        let mut it = it.peekable();
        if let Some(&seq) = it.peek() {
            heap.push(Reverse((seq, k)));
        }
        demands.push(d);
        queues.push(it);
    }
    // Per class: the first offer that may still hold a task of it, and whether the agent
    // constraints were already checked for that offer.
    let mut cursor = vec![0usize; demands.len()];
    let mut checked = vec![false; demands.len()];
    while let Some(Reverse((seq, k))) = heap.pop() {
        let d = demands[k];
        let mut c = cursor[k];
        while c < pools.len() {
            let ok = (checked[k] || satisfies(pools[c].offer, &d.constraints)) && pools[c].fits(d);
            if ok {
                checked[k] = true;
                break;
            }
            c += 1;
            checked[k] = false;
        }
        cursor[k] = c;
        if c == pools.len() {
            // No offer holds this class any more: the rest of its tasks stay queued.
            continue;
        }
        let (p0, d0) = (plan.parts.len() as u32, plan.dynamic_ports.len() as u32);
        pools[c].take(d, &mut plan.parts, &mut plan.dynamic_ports);
        plan.placements.push(Placement {
            offer: c,
            class: k,
            seq,
            parts: p0..plan.parts.len() as u32,
            dynamic: d0..plan.dynamic_ports.len() as u32,
        });
        queues[k].next();
        if let Some(&next) = queues[k].peek() {
            heap.push(Reverse((next, k)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::types::{to_milli, Attribute, Flavour};
    use proptest::prelude::*;
    use std::collections::{HashMap, HashSet};

    fn scalar(name: &str, v: f64, flavour: &Flavour) -> Resource {
        Resource {
            name: name.into(),
            quantity: Quantity::Scalar(to_milli(v)),
            flavour: flavour.clone(),
        }
    }

    fn reserved(key: &str) -> Flavour {
        Flavour {
            reserved_role: Some("airflow".into()),
            ..Flavour::plain(key)
        }
    }

    fn offer(id: &str, resources: Vec<Resource>, attrs: &[(&str, &str)]) -> Offer {
        Offer {
            id: id.into(),
            agent_id: format!("agent-{id}"),
            hostname: format!("host-{id}"),
            agent_url: None,
            resources,
            attributes: attrs
                .iter()
                .map(|(n, v)| Attribute {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            allocation_role: None,
        }
    }

    fn demand(cpus: f64, mem: f64) -> Demand {
        Demand {
            scalars: [to_milli(cpus), to_milli(mem), 0],
            fixed_ports: vec![],
            dynamic_ports: 0,
            constraints: vec![],
        }
    }

    fn take_one(pool: &mut Pool<'_>, d: &Demand) -> Take {
        let mut plan = Plan::default();
        pool.take(d, &mut plan.parts, &mut plan.dynamic_ports);
        let p = Placement {
            offer: 0,
            class: 0,
            seq: 0,
            parts: 0..plan.parts.len() as u32,
            dynamic: 0..plan.dynamic_ports.len() as u32,
        };
        plan.take(&p, pool.offer())
    }

    fn sum_of(take: &Take, name: &str) -> i64 {
        take.resources
            .iter()
            .filter(|r| r.name == name)
            .map(|r| match r.quantity {
                Quantity::Scalar(v) => v,
                _ => 0,
            })
            .sum()
    }

    #[test]
    fn takes_reserved_first_then_unreserved_as_separate_entries() {
        let un = Flavour::plain("cpus-unreserved");
        let re = reserved("cpus-reserved");
        let o = offer(
            "o1",
            vec![
                scalar("cpus", 4.0, &un),
                scalar("cpus", 1.0, &re),
                scalar("mem", 1024.0, &un),
            ],
            &[],
        );
        let mut pool = Pool::new(&o);
        let t = take_one(&mut pool, &demand(1.5, 100.0));
        let cpus: Vec<_> = t.resources.iter().filter(|r| r.name == "cpus").collect();
        assert_eq!(cpus.len(), 2);
        assert_eq!(cpus[0].flavour, re);
        assert_eq!(cpus[0].quantity, Quantity::Scalar(1000));
        assert_eq!(cpus[1].flavour, un);
        assert_eq!(cpus[1].quantity, Quantity::Scalar(500));
        assert_eq!(pool.totals(), [3500, 924_000, 0]);
    }

    #[test]
    fn revocable_and_whole_entries_are_not_used() {
        let revocable = Flavour {
            revocable: true,
            ..Flavour::plain("rev")
        };
        let mount = Flavour {
            whole: true,
            ..Flavour::plain("mount")
        };
        let o = offer(
            "o1",
            vec![
                scalar("cpus", 8.0, &revocable),
                scalar("cpus", 0.5, &Flavour::plain("c")),
                scalar("mem", 512.0, &Flavour::plain("m")),
                scalar("disk", 10000.0, &mount),
            ],
            &[],
        );
        let pool = Pool::new(&o);
        assert!(
            !pool.fits(&demand(1.0, 10.0)),
            "revocable cpus must not count"
        );
        assert!(pool.fits(&demand(0.5, 10.0)));
        let mut d = demand(0.1, 10.0);
        d.scalars[2] = 100_000;
        assert!(!pool.fits(&d), "a MOUNT disk is never split");
    }

    #[test]
    fn fixed_and_dynamic_ports() {
        let f = Flavour::plain("ports");
        let o = offer(
            "o1",
            vec![
                scalar("cpus", 8.0, &f),
                scalar("mem", 8192.0, &f),
                Resource {
                    name: "ports".into(),
                    quantity: Quantity::Ranges(vec![(31000, 31002), (31010, 31010)]),
                    flavour: f.clone(),
                },
            ],
            &[],
        );
        let mut pool = Pool::new(&o);
        let mut d = demand(0.1, 1.0);
        d.fixed_ports = vec![31001];
        d.dynamic_ports = 2;
        assert!(pool.fits(&d));
        let t = take_one(&mut pool, &d);
        assert_eq!(t.dynamic_ports, vec![31000, 31002]);
        let ports = t.resources.iter().find(|r| r.name == "ports").unwrap();
        assert_eq!(ports.quantity, Quantity::Ranges(vec![(31000, 31002)]));
        assert!(!pool.fits(&d), "31001 is taken");
        let mut one = demand(0.1, 1.0);
        one.dynamic_ports = 1;
        assert!(pool.fits(&one));
        assert_eq!(take_one(&mut pool, &one).dynamic_ports, vec![31010]);
        assert!(!pool.fits(&one), "no port left");
    }

    #[test]
    fn constraints_alternatives_hostname_and_case() {
        let o = offer("o1", vec![], &[("Airflow", "TRUE"), ("zone", "a")]);
        let c = |s: &str| crate::task::spec::parse_constraint(s).unwrap();
        assert!(satisfies(&o, &[c("airflow:true")]));
        assert!(
            satisfies(&o, &[c("gpu:true?:zone:a")]),
            "second alternative"
        );
        assert!(!satisfies(&o, &[c("gpu:true")]), "missing attribute fails");
        assert!(
            !satisfies(&o, &[c("airflow:true"), c("zone:b")]),
            "all must hold"
        );
        assert!(satisfies(&o, &[c("hostname:HOST-o1")]));
        assert!(!satisfies(&o, &[c("hostname:other")]));
        assert!(satisfies(&o, &[]));
    }

    #[test]
    fn older_tasks_first_across_classes() {
        let f = Flavour::plain("x");
        let offers = vec![offer(
            "o1",
            vec![scalar("cpus", 2.0, &f), scalar("mem", 1000.0, &f)],
            &[],
        )];
        let big = demand(1.0, 100.0);
        let small = demand(0.5, 100.0);
        // Ages: small 0, big 1, small 2, big 3 ...: capacity 2 cpus = small(0) + big(1) + small(2).
        let p = place(
            vec![
                (&big, vec![1u64, 3, 5].into_iter()),
                (&small, vec![0u64, 2, 4].into_iter()),
            ],
            &offers,
        );
        let seqs: Vec<u64> = p.placements.iter().map(|p| p.seq).collect();
        assert_eq!(seqs, vec![0, 1, 2]);
    }

    /// The offered total of `name` per flavour key.
    fn offered(offers: &[Offer]) -> HashMap<(usize, String, Vec<u8>), i64> {
        let mut m = HashMap::new();
        for (i, o) in offers.iter().enumerate() {
            for r in &o.resources {
                if let Quantity::Scalar(v) = r.quantity {
                    *m.entry((i, r.name.clone(), r.flavour.key.to_vec()))
                        .or_insert(0) += v;
                }
            }
        }
        m
    }

    #[derive(Debug, Clone)]
    struct Case {
        offers: Vec<Offer>,
        demands: Vec<Demand>,
        /// (class, seq) in seq order.
        tasks: Vec<usize>,
    }

    fn arb_offer(i: usize) -> impl Strategy<Value = Offer> {
        (
            0u32..4000,
            0u32..4000,
            0u32..3000,
            0u32..8000,
            proptest::collection::vec((31000u64..31100, 0u64..5), 0..3),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(move |(cu, cr, mu, mr, ports, gpu, revocable)| {
                let un = Flavour::plain("unreserved");
                let re = reserved("reserved");
                let rev = Flavour {
                    revocable: true,
                    ..Flavour::plain("revocable")
                };
                let mut resources = vec![
                    Resource {
                        name: "cpus".into(),
                        quantity: Quantity::Scalar(i64::from(cu)),
                        flavour: un.clone(),
                    },
                    Resource {
                        name: "cpus".into(),
                        quantity: Quantity::Scalar(i64::from(cr)),
                        flavour: re.clone(),
                    },
                    Resource {
                        name: "mem".into(),
                        quantity: Quantity::Scalar(i64::from(mu) * 100),
                        flavour: un.clone(),
                    },
                    Resource {
                        name: "mem".into(),
                        quantity: Quantity::Scalar(i64::from(mr) * 100),
                        flavour: re,
                    },
                ];
                if revocable {
                    resources.push(Resource {
                        name: "cpus".into(),
                        quantity: Quantity::Scalar(50_000),
                        flavour: rev,
                    });
                }
                let mut ranges: Vec<(u64, u64)> =
                    ports.into_iter().map(|(lo, n)| (lo, lo + n)).collect();
                ranges.sort_unstable();
                let mut disjoint: Vec<(u64, u64)> = Vec::new();
                for (lo, hi) in ranges {
                    match disjoint.last() {
                        Some(last) if lo <= last.1 + 1 => {}
                        _ => disjoint.push((lo, hi)),
                    }
                }
                if !disjoint.is_empty() {
                    resources.push(Resource {
                        name: "ports".into(),
                        quantity: Quantity::Ranges(disjoint),
                        flavour: un,
                    });
                }
                let attrs: &[(&str, &str)] = if gpu { &[("gpu", "true")] } else { &[] };
                offer(&format!("o{i}"), resources, attrs)
            })
    }

    fn arb_demand() -> impl Strategy<Value = Demand> {
        (
            1i64..3000,
            1i64..4000,
            0u32..3,
            proptest::option::of(31000u64..31010),
            any::<bool>(),
        )
            .prop_map(|(c, m, dynamic, fixed, gpu)| Demand {
                scalars: [c, m * 100, 0],
                fixed_ports: fixed.into_iter().collect(),
                dynamic_ports: dynamic,
                constraints: if gpu {
                    vec![crate::task::spec::parse_constraint("gpu:true").unwrap()]
                } else {
                    vec![]
                },
            })
    }

    fn arb_case() -> impl Strategy<Value = Case> {
        (
            (0usize..12).prop_flat_map(|n| (0..n).map(arb_offer).collect::<Vec<_>>()),
            proptest::collection::vec(arb_demand(), 1..5),
        )
            .prop_flat_map(|(offers, demands)| {
                let nd = demands.len();
                (
                    Just(offers),
                    Just(demands),
                    proptest::collection::vec(0..nd, 0..60),
                )
            })
            .prop_map(|(offers, demands, tasks)| Case {
                offers,
                demands,
                tasks,
            })
    }

    fn classes_of(case: &Case) -> Vec<(&Demand, std::vec::IntoIter<u64>)> {
        case.demands
            .iter()
            .enumerate()
            .map(|(k, d)| {
                let seqs: Vec<u64> = case
                    .tasks
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| **c == k)
                    .map(|(s, _)| s as u64)
                    .collect();
                (d, seqs.into_iter())
            })
            .collect()
    }

    fn run(case: &Case) -> Vec<(Placement, Take)> {
        let plan = place(classes_of(case), &case.offers);
        plan.placements
            .iter()
            .map(|p| (p.clone(), plan.take(p, &case.offers[p.offer])))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Never more than an offer holds, flavour by flavour; every placed task gets exactly
        /// its request, from usable entries only; ports unique and inside the offered ranges;
        /// constraints respected; each task placed at most once.
        #[test]
        fn placements_are_sound(case in arb_case()) {
            let placements = run(&case);
            let offered = offered(&case.offers);
            let mut used: HashMap<(usize, String, Vec<u8>), i64> = HashMap::new();
            let mut ports_used: HashMap<String, HashSet<u64>> = HashMap::new();
            let mut seen = HashSet::new();
            for (p, take) in &placements {
                prop_assert!(seen.insert(p.seq), "task {} placed twice", p.seq);
                let d = &case.demands[p.class];
                prop_assert_eq!(case.tasks[p.seq as usize], p.class);
                let o = &case.offers[p.offer];
                prop_assert!(satisfies(o, &d.constraints));
                for (k, name) in SCALAR_NAMES.iter().enumerate() {
                    prop_assert_eq!(sum_of(take, name), d.scalars[k], "{} of task {}", name, p.seq);
                }
                for r in &take.resources {
                    prop_assert!(!r.flavour.revocable);
                    let src_exists = o.resources.iter().any(|s| s.name == r.name && s.flavour == r.flavour);
                    prop_assert!(src_exists, "flavour not offered: {:?}", r);
                    match &r.quantity {
                        Quantity::Scalar(v) => {
                            prop_assert!(*v > 0, "zero entries are left out");
                            *used.entry((p.offer, r.name.clone(), r.flavour.key.to_vec())).or_insert(0) += v;
                        }
                        Quantity::Ranges(rs) => {
                            let offered_ranges: Vec<(u64, u64)> = o.resources.iter()
                                .filter(|s| s.name == "ports")
                                .flat_map(|s| match &s.quantity { Quantity::Ranges(x) => x.clone(), _ => vec![] })
                                .collect();
                            let set = ports_used.entry(o.agent_id.clone()).or_default();
                            for (lo, hi) in rs {
                                for port in *lo..=*hi {
                                    prop_assert!(offered_ranges.iter().any(|(a, b)| *a <= port && port <= *b),
                                        "port {} not offered", port);
                                    prop_assert!(set.insert(port), "port {} used twice on an agent", port);
                                }
                            }
                        }
                        Quantity::Set(_) => prop_assert!(false, "no set resources requested"),
                    }
                }
                let task_ports: u64 = take.resources.iter().map(|r| match &r.quantity {
                    Quantity::Ranges(rs) => rs.iter().map(|(a, b)| b - a + 1).sum(),
                    _ => 0,
                }).sum();
                prop_assert_eq!(task_ports, d.fixed_ports.len() as u64 + u64::from(d.dynamic_ports));
                prop_assert_eq!(take.dynamic_ports.len() as u32, d.dynamic_ports);
                for fp in &d.fixed_ports {
                    let has = take.resources.iter().any(|r| matches!(&r.quantity,
                        Quantity::Ranges(rs) if rs.iter().any(|(a, b)| a <= fp && fp <= b)));
                    prop_assert!(has, "fixed port {} not taken", fp);
                }
            }
            for (key, u) in &used {
                let o = offered.get(key).copied().unwrap_or(0);
                prop_assert!(*u <= o, "{:?}: used {} of {}", key, u, o);
            }
        }

        /// A plan reused from an earlier round (as the core reuses its own) holds exactly
        /// what a fresh one would: nothing of the earlier round is left in it.
        #[test]
        fn a_reused_plan_holds_what_a_fresh_one_would(first in arb_case(), second in arb_case()) {
            let mut plan = place(classes_of(&first), &first.offers);
            place_into(&mut plan, classes_of(&second), &second.offers);
            prop_assert_eq!(plan, place(classes_of(&second), &second.offers));
        }

        /// A task left queued fits no offer's remainder (first fit leaves no usable gap), and
        /// with an offer per task big enough for any task, every task is placed.
        #[test]
        fn with_enough_offers_every_task_is_placed(demands in proptest::collection::vec(arb_demand(), 1..4),
                                                  tasks in proptest::collection::vec(0usize..4, 0..40)) {
            let tasks: Vec<usize> = tasks.into_iter().map(|t| t % demands.len()).collect();
            let f = Flavour::plain("u");
            let offers: Vec<Offer> = (0..tasks.len()).map(|i| offer(&format!("o{i}"), vec![
                Resource { name: "cpus".into(), quantity: Quantity::Scalar(3000), flavour: f.clone() },
                Resource { name: "mem".into(), quantity: Quantity::Scalar(400_000), flavour: f.clone() },
                Resource { name: "ports".into(), quantity: Quantity::Ranges(vec![(31000, 31010)]), flavour: f.clone() },
            ], &[("gpu", "true")])).collect();
            let case = Case { offers, demands, tasks };
            let placements = run(&case);
            prop_assert_eq!(placements.len(), case.tasks.len());
        }
    }
}
