//! Matching benchmarks (criterion): how long one matching round takes, and how it grows.
//!
//! * `place/10k_tasks_x_1k_offers`: the placement algorithm alone ([`matching::place`]) on
//!   10,000 queued tasks in 4 classes against 1,000 offers (more work than capacity). The
//!   classes (a class is the tasks of one resource shape and constraint set, placed together):
//!   1 cpu / 256 MB; 0.5 cpu / 1 GB on zone z1 or z2; 0.25 cpu / 512 MB with one host port;
//!   2 cpus / 4 GB on `airflow:true` agents; 2,500 tasks each. Every offer is an agent of 8
//!   unreserved + 2 reserved cpus, 32 + 8 GB, 100 GB disk, ports 31000-32000, in zone z0-z2.
//! * `place/10k_tasks_x_1k_offers_each_its_own_size` and
//!   `core_round/10k_tasks_x_1k_offers_each_its_own_size`: the same, but every task has a
//!   size of its own (cpus 0.05-2.0 and mem 64-313 MB, no two alike), as when each DAG task
//!   sets its `executor_config`: 10,000 classes of one task.
//! * `core_round/10k_tasks_x_1k_offers`: a whole `Core::handle_event(Offers)` round: placement,
//!   launch specs, state changes and the LAUNCH/DECLINE actions.
//! * `place_growth/*` and `core_round_growth/*`: 1k, 10k and 100k tasks with tasks/10 offers
//!   (every task fits), to show the time per task stays flat (linear growth).
//! * `place/10k_tasks_x_1k_offers_nothing_fits`: every offer fails every class's constraint,
//!   the case a per-task × per-offer scan would pay 10^7 checks for.
//!
//! Run with `cargo bench --bench matching`.

use airflow_mesos::scheduler::matching::{place_into, Demand, Plan};
use airflow_mesos::scheduler::types::{
    to_milli, Attribute, Event, Flavour, Now, Offer, Quantity, Resource,
};
use airflow_mesos::scheduler::{Core, CoreConfig};
use airflow_mesos::task::spec::parse_constraint;
use airflow_mesos::task::{PortSpec, TaskRecord, TaskSpec};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn scalar(name: &str, v: f64, f: &Flavour) -> Resource {
    Resource {
        name: name.into(),
        quantity: Quantity::Scalar(to_milli(v)),
        flavour: f.clone(),
    }
}

/// An agent-sized offer: 8 unreserved + 2 reserved cpus, 32 + 8 GB, disk, 1,001 ports.
fn offers(n: usize) -> Vec<Offer> {
    let un = Flavour::plain("unreserved");
    let re = Flavour {
        reserved_role: Some("airflow".into()),
        ..Flavour::plain("reserved")
    };
    (0..n)
        .map(|i| Offer {
            id: format!("offer-{i}"),
            agent_id: format!("agent-{i}"),
            hostname: format!("agent-{i}.example"),
            agent_url: None,
            resources: vec![
                scalar("cpus", 8.0, &un),
                scalar("cpus", 2.0, &re),
                scalar("mem", 32768.0, &un),
                scalar("mem", 8192.0, &re),
                scalar("disk", 100_000.0, &un),
                Resource {
                    name: "ports".into(),
                    quantity: Quantity::Ranges(vec![(31000, 32000)]),
                    flavour: un.clone(),
                },
            ],
            attributes: vec![
                Attribute {
                    name: "airflow".into(),
                    value: "true".into(),
                },
                Attribute {
                    name: "zone".into(),
                    value: format!("z{}", i % 3),
                },
            ],
            allocation_role: None,
        })
        .collect()
}

/// Four task shapes, one constrained to a zone, one with a host port.
fn demands() -> Vec<Demand> {
    let d = |cpus: f64, mem: f64, ports: u32, constraint: Option<&str>| Demand {
        scalars: [to_milli(cpus), to_milli(mem), 0],
        fixed_ports: vec![],
        dynamic_ports: ports,
        constraints: constraint
            .map(|c| parse_constraint(c).unwrap())
            .into_iter()
            .collect(),
    };
    vec![
        d(1.0, 256.0, 0, None),
        d(0.5, 1024.0, 0, Some("zone:z1?:zone:z2")),
        d(0.25, 512.0, 1, None),
        d(2.0, 4096.0, 0, Some("airflow:true")),
    ]
}

/// One round into `plan`, reused across rounds as the core reuses its own; how many tasks
/// were placed.
fn run_place(plan: &mut Plan, demands: &[Demand], tasks: u64, offers: &[Offer]) -> usize {
    let k = demands.len() as u64;
    let classes = demands
        .iter()
        .enumerate()
        .map(|(i, d)| (d, (i as u64..tasks).step_by(k as usize)))
        .collect();
    place_into(plan, classes, offers);
    plan.placements.len()
}

/// A size of its own for task `i` (no two of the first 10,000 alike): cpus 0.05-2.0, mem
/// 64-313 MB.
fn own_size(i: usize) -> (f64, f64) {
    (0.05 * (1 + i % 40) as f64, 64.0 + (i / 40) as f64)
}

/// One class per task, each of its own size.
fn run_place_own_sizes(plan: &mut Plan, demands: &[Demand], offers: &[Offer]) -> usize {
    let classes = demands
        .iter()
        .enumerate()
        .map(|(i, d)| (d, (i as u64..i as u64 + 1).step_by(1)))
        .collect();
    place_into(plan, classes, offers);
    plan.placements.len()
}

fn spec(i: usize) -> TaskSpec {
    let mut s = TaskSpec::shell(format!("airflow tasks run dag task_{i} 2024-01-01"));
    match i % 4 {
        0 => {}
        1 => {
            s.cpus = Some(0.5);
            s.mem = Some(1024.0);
            s.constraints = vec!["zone:z1?:zone:z2".into()];
        }
        2 => {
            s.cpus = Some(0.25);
            s.mem = Some(512.0);
            s.ports = vec![PortSpec {
                container_port: 8080,
                host_port: None,
                protocol: "tcp".into(),
            }];
        }
        _ => {
            s.cpus = Some(2.0);
            s.mem = Some(4096.0);
        }
    }
    s.external_key = Some(format!("dag.task_{i}.2024-01-01"));
    s
}

fn now() -> Now {
    Now {
        instant: Instant::now(),
        unix_ms: 1_700_000_000_000,
    }
}

/// A connected core holding `n` queued tasks, of the 4 shapes of [`spec`].
fn core_with(n: usize) -> Core {
    core_with_specs((0..n).map(spec).collect())
}

/// A connected core holding `specs` as queued tasks.
fn core_with_specs(specs: Vec<TaskSpec>) -> Core {
    let mut core = Core::new(CoreConfig {
        default_image: Some("airflow:2".into()),
        task_mem: 256.0,
        ..CoreConfig::default()
    });
    core.handle_event(
        Event::Subscribed {
            framework_id: "fw".into(),
            heartbeat_interval_secs: None,
            master: None,
        },
        now(),
    );
    let records = specs
        .into_iter()
        .enumerate()
        .map(|(i, s)| TaskRecord {
            seq: i as i64,
            ..TaskRecord::queued(format!("t-{i:08}"), s, i as i64)
        })
        .collect();
    core.submit(records, now());
    core
}

fn bench(c: &mut Criterion) {
    let ds = demands();
    let offers_1k = offers(1000);

    let mut g = c.benchmark_group("place");
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("10k_tasks_x_1k_offers", |b| {
        let mut plan = Plan::default();
        b.iter(|| black_box(run_place(&mut plan, &ds, 10_000, black_box(&offers_1k))))
    });
    let fenced: Vec<Demand> = ds
        .iter()
        .map(|d| Demand {
            constraints: vec![parse_constraint("zone:nowhere").unwrap()],
            ..d.clone()
        })
        .collect();
    g.bench_function("10k_tasks_x_1k_offers_nothing_fits", |b| {
        let mut plan = Plan::default();
        b.iter(|| black_box(run_place(&mut plan, &fenced, 10_000, black_box(&offers_1k))))
    });
    let own: Vec<Demand> = (0..10_000)
        .map(|i| {
            let (cpus, mem) = own_size(i);
            Demand {
                scalars: [to_milli(cpus), to_milli(mem), 0],
                fixed_ports: vec![],
                dynamic_ports: 0,
                constraints: vec![],
            }
        })
        .collect();
    g.bench_function("10k_tasks_x_1k_offers_each_its_own_size", |b| {
        let mut plan = Plan::default();
        b.iter(|| black_box(run_place_own_sizes(&mut plan, &own, black_box(&offers_1k))))
    });
    g.finish();

    let mut g = c.benchmark_group("place_growth");
    for tasks in [1_000u64, 10_000, 100_000] {
        let os = offers(tasks as usize / 10);
        g.throughput(Throughput::Elements(tasks));
        g.bench_function(format!("{tasks}_tasks_x_{}_offers", os.len()), |b| {
            let mut plan = Plan::default();
            b.iter(|| black_box(run_place(&mut plan, &ds, tasks, black_box(&os))))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("core_round");
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(10_000));
    let core = core_with(10_000);
    bench_round(&mut g, "10k_tasks_x_1k_offers", &core, &offers_1k);
    let core = core_with_specs(
        (0..10_000)
            .map(|i| {
                let mut s = TaskSpec::shell(format!("airflow tasks run dag task_{i} 2024-01-01"));
                let (cpus, mem) = own_size(i);
                s.cpus = Some(cpus);
                s.mem = Some(mem);
                s
            })
            .collect(),
    );
    bench_round(
        &mut g,
        "10k_tasks_x_1k_offers_each_its_own_size",
        &core,
        &offers_1k,
    );
    g.finish();

    let mut g = c.benchmark_group("core_round_growth");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    for tasks in [1_000usize, 10_000, 100_000] {
        let core = core_with(tasks);
        let os = offers(tasks / 10);
        g.throughput(Throughput::Elements(tasks as u64));
        g.bench_function(format!("{tasks}_tasks_x_{}_offers", os.len()), |b| {
            b.iter_batched(
                || (core.clone(), os.clone()),
                |(mut core, offers)| {
                    let step = core.handle_event(Event::Offers(offers), now());
                    // Returned, so that dropping the core is not timed.
                    (core, black_box(step))
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

/// One whole core round: `core` (cloned per iteration, untimed) handles `offers`.
fn bench_round(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    core: &Core,
    offers: &[Offer],
) {
    g.bench_function(name, |b| {
        b.iter_batched(
            || (core.clone(), offers.to_vec()),
            |(mut core, offers)| {
                let step = core.handle_event(Event::Offers(offers), now());
                // Returned, so that dropping the core is not timed.
                (core, black_box(step))
            },
            BatchSize::PerIteration,
        )
    });
}
