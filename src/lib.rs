//! airflow-mesos: run Apache Airflow tasks (or any command) in Docker containers on an Apache
//! Mesos cluster, through the Mesos v1 HTTP scheduler API, with durable state in SQL.
//!
//! # Layout
//!
//! The crate is a fat library behind a thin binary (`src/main.rs`). Data flows top to bottom:
//!
//! | module | role in the architecture |
//! |---|---|
//! | [`config`] | `airflow.cfg` `[mesos]` block + `AIRFLOW__MESOS__*` env → typed, validated [`config::Config`] (pure) |
//! | [`task`] | what a user asks for ([`task::TaskSpec`]), the task state machine, the Airflow state mapping |
//! | [`scheduler`] | the pure core: offers × queued tasks → launches, status updates → transitions, reconciliation; no I/O, time passed in |
//! | [`mesos`] | wire boundary: protobuf types, RecordIO codec, HTTP client, master detection, wire ↔ domain conversion |
//! | [`docker`] | bollard: image build/push, and the local Docker backend (`backend = docker`) |
//! | [`store`] | durable state: [`store::Store`], one sqlx implementation for SQLite, PostgreSQL and MySQL/MariaDB |
//! | [`driver`] | the async loop that owns all I/O and connects backend, core, store, timers and shutdown |
//! | [`cluster`] | what the driver currently sees of the cluster (subscription, agents, latest offers), for the web UI |
//! | [`leader`] | leadership among daemons sharing one database: a lease in it, renewal, stepping down, fencing |
//! | [`onetime`] | one-time files (workload JSON, registry credentials) that agents fetch into a sandbox |
//! | [`registry`] | registry credentials as docker config JSON, `docker.tar.gz`, or user/password for the engine |
//! | [`api`] | the axum HTTP API (token auth), `/metrics`, `/healthz` |
//! | [`token`] | the API token a daemon generates when none is configured, and the file clients read it from |
//! | [`web`] | the web UI under `/ui/` (server-rendered HTML, login with the API token), the framework's `webui_url` |
//! | [`client`] | HTTP client of the API, used by the CLI verbs |
//! | [`cli`], [`commands`] | clap argument types; one file per subcommand (the binary only parses and dispatches) |
//!
//! The scheduler core sees only domain types ([`scheduler::types`]); protobuf types never leave
//! [`mesos`]. Both backends (Mesos and local Docker) speak the same domain events and actions,
//! so the driver and the core are shared.
#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod docker;
pub mod driver;
pub mod leader;
pub mod mesos;
pub mod onetime;
pub mod registry;
pub mod scheduler;
pub mod store;
pub mod task;
pub mod token;
pub mod web;
