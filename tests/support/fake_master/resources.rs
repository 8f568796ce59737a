//! Resource arithmetic of the fake master: agents' resources as "flavors" (name + reservation
//! role), scalars in fixed-point milli-units as Mesos does, ports as inclusive ranges. Converts
//! to and from `mesos.v1.Resource` in the format a framework expects (old `role` format, or
//! `reservations` with RESERVATION_REFINEMENT; `allocation_info` for MULTI_ROLE).

use airflow_mesos::mesos::proto::v1 as pb;

/// What one resource entry holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Quantity {
    /// Milli-units (Mesos keeps 3 decimals).
    Scalar(i64),
    /// Inclusive ranges, sorted and merged.
    Ranges(Vec<(u64, u64)>),
    /// Set items, sorted.
    Set(Vec<String>),
}

/// One resource entry of an agent (its "flavor" is `name` + `reserved_for`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Res {
    pub name: String,
    pub quantity: Quantity,
    /// `None` = unreserved (`*`); `Some(role)` = statically reserved for `role`.
    pub reserved_for: Option<String>,
}

impl Res {
    /// A scalar resource (`cpus`, `mem`, `disk`, `gpus`).
    pub fn scalar(name: &str, value: f64) -> Res {
        Res {
            name: name.to_string(),
            quantity: Quantity::Scalar(to_milli(value)),
            reserved_for: None,
        }
    }

    /// A `ports`-style ranges resource with one inclusive range.
    pub fn ranges(name: &str, begin: u64, end: u64) -> Res {
        Res {
            name: name.to_string(),
            quantity: Quantity::Ranges(vec![(begin, end)]),
            reserved_for: None,
        }
    }

    /// A set resource.
    pub fn set(name: &str, items: &[&str]) -> Res {
        let mut items: Vec<String> = items.iter().map(|s| s.to_string()).collect();
        items.sort();
        Res {
            name: name.to_string(),
            quantity: Quantity::Set(items),
            reserved_for: None,
        }
    }

    /// The same resource, reserved for `role`.
    pub fn reserved(mut self, role: &str) -> Res {
        self.reserved_for = Some(role.to_string());
        self
    }

    fn same_flavor(&self, other: &Res) -> bool {
        self.name == other.name
            && self.reserved_for == other.reserved_for
            && std::mem::discriminant(&self.quantity) == std::mem::discriminant(&other.quantity)
    }

    fn is_empty(&self) -> bool {
        match &self.quantity {
            Quantity::Scalar(v) => *v <= 0,
            Quantity::Ranges(r) => r.is_empty(),
            Quantity::Set(s) => s.is_empty(),
        }
    }

    /// Mesos's text form, e.g. `cpus(allocated: *):1.9` or `ports:[31000-32000]`.
    pub fn describe(&self, allocation_role: Option<&str>) -> String {
        let mut s = self.name.clone();
        if let Some(role) = allocation_role {
            s.push_str(&format!("(allocated: {role})"));
        }
        if let Some(role) = &self.reserved_for {
            s.push_str(&format!("(reservations: [(STATIC,{role})])"));
        }
        s.push(':');
        match &self.quantity {
            Quantity::Scalar(v) => s.push_str(&format_milli(*v)),
            Quantity::Ranges(r) => {
                let parts: Vec<String> = r.iter().map(|(b, e)| format!("{b}-{e}")).collect();
                s.push_str(&format!("[{}]", parts.join(", ")));
            }
            Quantity::Set(items) => s.push_str(&format!("{{{}}}", items.join(", "))),
        }
        s
    }
}

/// Rounds to Mesos's fixed point (3 decimals).
pub fn to_milli(value: f64) -> i64 {
    (value * 1000.0).round() as i64
}

/// Formats milli-units the way Mesos prints scalars (`1.9`, `2016`, `0.1`).
pub fn format_milli(v: i64) -> String {
    let f = v as f64 / 1000.0;
    if v % 1000 == 0 {
        format!("{}", v / 1000)
    } else {
        format!("{f}")
    }
}

/// A bag of resources; entries of the same flavor are merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceSet(pub Vec<Res>);

impl ResourceSet {
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Res::is_empty)
    }

    /// Adds `other` flavor by flavor.
    pub fn add(&mut self, other: &ResourceSet) {
        for r in &other.0 {
            self.add_one(r);
        }
    }

    fn add_one(&mut self, r: &Res) {
        if r.is_empty() {
            return;
        }
        if let Some(mine) = self.0.iter_mut().find(|m| m.same_flavor(r)) {
            match (&mut mine.quantity, &r.quantity) {
                (Quantity::Scalar(a), Quantity::Scalar(b)) => *a += *b,
                (Quantity::Ranges(a), Quantity::Ranges(b)) => {
                    a.extend(b.iter().copied());
                    *a = normalize(std::mem::take(a));
                }
                (Quantity::Set(a), Quantity::Set(b)) => {
                    a.extend(b.iter().cloned());
                    a.sort();
                    a.dedup();
                }
                _ => unreachable!("same flavor means same kind"),
            }
        } else {
            self.0.push(r.clone());
        }
    }

    /// True if every entry of `other` fits in this set, flavor by flavor.
    pub fn contains(&self, other: &ResourceSet) -> bool {
        other.0.iter().filter(|r| !r.is_empty()).all(|r| {
            self.0.iter().any(|mine| {
                mine.same_flavor(r)
                    && match (&mine.quantity, &r.quantity) {
                        (Quantity::Scalar(a), Quantity::Scalar(b)) => b <= a,
                        (Quantity::Ranges(a), Quantity::Ranges(b)) => b
                            .iter()
                            .all(|(bb, be)| a.iter().any(|(ab, ae)| ab <= bb && be <= ae)),
                        (Quantity::Set(a), Quantity::Set(b)) => b.iter().all(|i| a.contains(i)),
                        _ => false,
                    }
            })
        })
    }

    /// Subtracts `other`, which must be contained in `self`.
    pub fn subtract(&mut self, other: &ResourceSet) {
        for r in &other.0 {
            let Some(mine) = self.0.iter_mut().find(|m| m.same_flavor(r)) else {
                continue;
            };
            match (&mut mine.quantity, &r.quantity) {
                (Quantity::Scalar(a), Quantity::Scalar(b)) => *a = (*a - *b).max(0),
                (Quantity::Ranges(a), Quantity::Ranges(b)) => {
                    *a = subtract_ranges(a, b);
                }
                (Quantity::Set(a), Quantity::Set(b)) => a.retain(|i| !b.contains(i)),
                _ => {}
            }
        }
        self.0.retain(|r| !r.is_empty());
    }

    /// The part of this set a framework role may be offered: unreserved resources (if
    /// `with_unreserved`) plus those reserved for `role`.
    pub fn offerable_to(&self, role: &str, with_unreserved: bool) -> ResourceSet {
        ResourceSet(
            self.0
                .iter()
                .filter(|r| match &r.reserved_for {
                    None => with_unreserved,
                    Some(res) => res == role,
                })
                .filter(|r| !r.is_empty())
                .cloned()
                .collect(),
        )
    }

    /// Mesos's text form of the whole set (`a; b; c`).
    pub fn describe(&self, allocation_role: Option<&str>) -> String {
        self.0
            .iter()
            .map(|r| r.describe(allocation_role))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Sum of the scalar named `name` over all flavors, in units.
    pub fn scalar_total(&self, name: &str) -> f64 {
        self.0
            .iter()
            .filter(|r| r.name == name)
            .map(|r| match r.quantity {
                Quantity::Scalar(v) => v as f64 / 1000.0,
                _ => 0.0,
            })
            .sum()
    }

    /// Protobuf resources in the format the framework expects.
    pub fn to_proto(&self, allocation_role: Option<&str>, refinement: bool) -> Vec<pb::Resource> {
        self.0
            .iter()
            .filter(|r| !r.is_empty())
            .map(|r| to_proto(r, allocation_role, refinement))
            .collect()
    }
}

#[allow(deprecated)] // `Resource.role` is deprecated but is what non-refinement frameworks get.
fn to_proto(r: &Res, allocation_role: Option<&str>, refinement: bool) -> pb::Resource {
    let mut out = pb::Resource {
        name: r.name.clone(),
        ..Default::default()
    };
    match &r.quantity {
        Quantity::Scalar(v) => {
            out.r#type = pb::value::Type::Scalar as i32;
            out.scalar = Some(pb::value::Scalar {
                value: *v as f64 / 1000.0,
            });
        }
        Quantity::Ranges(ranges) => {
            out.r#type = pb::value::Type::Ranges as i32;
            out.ranges = Some(pb::value::Ranges {
                range: ranges
                    .iter()
                    .map(|(b, e)| pb::value::Range { begin: *b, end: *e })
                    .collect(),
            });
        }
        Quantity::Set(items) => {
            out.r#type = pb::value::Type::Set as i32;
            out.set = Some(pb::value::Set {
                item: items.clone(),
            });
        }
    }
    if refinement {
        if let Some(role) = &r.reserved_for {
            out.reservations = vec![pb::resource::ReservationInfo {
                r#type: Some(pb::resource::reservation_info::Type::Static as i32),
                role: Some(role.clone()),
                ..Default::default()
            }];
        }
    } else {
        out.role = Some(r.reserved_for.clone().unwrap_or_else(|| "*".to_string()));
    }
    if let Some(role) = allocation_role {
        out.allocation_info = Some(pb::resource::AllocationInfo {
            role: Some(role.to_string()),
        });
    }
    out
}

/// Why a task's resources cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidResource(pub String);

/// Converts resources sent by a framework into a set, checking what the master checks: known
/// type with the matching value, positive scalars, no reservation for `*`, and (if set) an
/// allocation role equal to the offer's. Returns the set plus whether any allocation role
/// differs from `offer_role` (which makes containment fail, as on a real master).
#[allow(deprecated)]
pub fn from_proto(
    resources: &[pb::Resource],
    offer_role: Option<&str>,
) -> Result<(ResourceSet, bool), InvalidResource> {
    let mut set = ResourceSet::default();
    let mut role_mismatch = false;
    for r in resources {
        let reserved_for = if let Some(last) = r.reservations.last() {
            let role = last.role.clone().unwrap_or_default();
            if role == "*" || role.is_empty() {
                return Err(InvalidResource(format!(
                    "Invalid reservation role '{role}' for resource {}",
                    r.name
                )));
            }
            Some(role)
        } else {
            match r.role.as_deref() {
                None | Some("*") => None,
                Some(role) => Some(role.to_string()),
            }
        };
        if let Some(alloc) = r.allocation_info.as_ref().and_then(|a| a.role.as_deref()) {
            if Some(alloc) != offer_role && offer_role.is_some() {
                role_mismatch = true;
            }
        }
        let quantity = match pb::value::Type::try_from(r.r#type) {
            Ok(pb::value::Type::Scalar) => {
                let v = r.scalar.as_ref().map(|s| s.value).ok_or_else(|| {
                    InvalidResource(format!("Resource {} is SCALAR without 'scalar'", r.name))
                })?;
                let milli = to_milli(v);
                if !(v.is_finite() && milli > 0) {
                    return Err(InvalidResource(format!(
                        "Invalid scalar resource {}: value {v} must be positive",
                        r.name
                    )));
                }
                Quantity::Scalar(milli)
            }
            Ok(pb::value::Type::Ranges) => {
                let ranges = r.ranges.as_ref().ok_or_else(|| {
                    InvalidResource(format!("Resource {} is RANGES without 'ranges'", r.name))
                })?;
                if ranges.range.iter().any(|x| x.begin > x.end) {
                    return Err(InvalidResource(format!(
                        "Invalid ranges in resource {}",
                        r.name
                    )));
                }
                Quantity::Ranges(normalize(
                    ranges.range.iter().map(|x| (x.begin, x.end)).collect(),
                ))
            }
            Ok(pb::value::Type::Set) => {
                let s = r.set.as_ref().ok_or_else(|| {
                    InvalidResource(format!("Resource {} is SET without 'set'", r.name))
                })?;
                let mut items = s.item.clone();
                items.sort();
                Quantity::Set(items)
            }
            _ => {
                return Err(InvalidResource(format!(
                    "Unsupported resource type for {}",
                    r.name
                )))
            }
        };
        set.add_one(&Res {
            name: r.name.clone(),
            quantity,
            reserved_for,
        });
    }
    Ok((set, role_mismatch))
}

fn normalize(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (b, e) in ranges {
        match out.last_mut() {
            Some(last) if b <= last.1.saturating_add(1) => last.1 = last.1.max(e),
            _ => out.push((b, e)),
        }
    }
    out
}

fn subtract_ranges(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = a.to_vec();
    for &(bb, be) in b {
        let mut next = Vec::with_capacity(out.len() + 1);
        for &(ab, ae) in &out {
            if be < ab || bb > ae {
                next.push((ab, ae));
                continue;
            }
            if ab < bb {
                next.push((ab, bb - 1));
            }
            if be < ae {
                next.push((be + 1, ae));
            }
        }
        out = next;
    }
    out
}
