//! The defaults of the `[mesos]` keys, in one table. The config loader applies them to keys
//! that are not set, `config show` prints them, and the constructors the backends and the core
//! offer for tests and embedding (`LocalBackendConfig::new`, `MesosBackendConfig::new`,
//! `CoreConfig::default`) start from the same values, so that the two can never disagree.
//! Defaults that depend on the environment (`$AIRFLOW_HOME` paths, `$USER`, the backend chosen
//! by whether a master is set) are computed by the loader.

// Airflow 1.10 keys.
pub const FRAMEWORK_NAME: &str = "Airflow";
/// CPUs of a task that does not say.
pub const TASK_CPU: f64 = 1.0;
/// MB of memory of a task that does not say.
pub const TASK_MEMORY: f64 = 256.0;
/// Airflow 1.10's default: agents do not checkpoint the framework's tasks.
pub const CHECKPOINT: bool = false;
/// Seconds the master keeps the framework's tasks while no scheduler is subscribed (a week).
pub const FAILOVER_TIMEOUT: f64 = 604_800.0;
pub const AUTHENTICATE: bool = false;

// AVENTER provider keys.
pub const MESOS_SSL: bool = false;
pub const FRAMEWORK_ROLE: &str = "*";
/// MB of disk of a task that does not say (0: none requested).
pub const TASK_DISK: f64 = 0.0;
pub const COMMAND_SHELL: bool = true;

// Keys this project adds.
pub const API_LISTEN: &str = "127.0.0.1:11000";
pub const API_MAX_CONNECTIONS: usize = 1024;
/// Seconds a client may take to send a request's headers.
pub const API_HEADER_TIMEOUT: f64 = 10.0;
/// Seconds an idle keep-alive connection is kept.
pub const API_IDLE_TIMEOUT: f64 = 60.0;
/// Seconds a client may take to send a request's body.
pub const API_BODY_TIMEOUT: f64 = 60.0;
pub const SEND_REGISTRY_CREDENTIALS: bool = true;
pub const FORCE_PULL: bool = false;
/// Seconds between the kill signal and SIGKILL.
pub const KILL_GRACE_PERIOD: f64 = 30.0;
/// New attempts after launch failures (the command never ran).
pub const LAUNCH_RETRIES: u32 = 3;
/// Seconds between periodic reconciliations.
pub const RECONCILIATION_INTERVAL: f64 = 900.0;
/// Seconds a declined offer's resources are not offered again.
pub const OFFER_REFUSE_SECONDS: f64 = 120.0;
/// Seconds a task may stay queued before it fails (0: forever).
pub const QUEUED_TIMEOUT: f64 = 0.0;
/// Seconds the daemon rides out an unavailable state database before it exits.
pub const STORE_OUTAGE_LIMIT: f64 = 300.0;
pub const DOCKER_PRIVILEGED: bool = false;
/// Seconds the sandbox of an ended task is kept (a week, as a Mesos agent's `--gc_delay`).
pub const SANDBOX_RETENTION: f64 = 604_800.0;
/// Seconds an ended task and old change-feed events are kept in the state database (30 days).
pub const TASK_RETENTION: f64 = 2_592_000.0;
/// Seconds a leader's lease lasts without renewal.
pub const LEADER_LEASE: f64 = 10.0;

#[cfg(test)]
mod tests {
    use crate::config::source::{NoSystem, Sources};
    use crate::config::MasterAddr;
    use crate::docker::local::LocalBackendConfig;
    use crate::mesos::backend::MesosBackendConfig;
    use crate::scheduler::CoreConfig;
    use std::collections::HashMap;

    /// What the loader makes of a `[mesos]` block that sets only `master`.
    fn loaded() -> crate::config::Config {
        let env = HashMap::from([
            ("AIRFLOW_HOME".to_string(), "/tmp/am-test-home".to_string()),
            ("USER".to_string(), "tester".to_string()),
        ]);
        let sys = NoSystem;
        let src = Sources::new(env, &sys).with_file("airflow.cfg", "[mesos]\nmaster = m:5050\n");
        crate::config::load(&src).expect("valid").config
    }

    #[test]
    fn the_backends_and_the_core_start_from_the_loaders_defaults() {
        let c = loaded();
        let from_config = MesosBackendConfig::from_config(&c).expect("maps");
        let new = MesosBackendConfig::new(
            MasterAddr::Hosts(vec!["http://m:5050".into()]),
            "Airflow",
            "tester",
        );
        assert_eq!(new.framework.checkpoint, from_config.framework.checkpoint);
        assert_eq!(
            new.framework.failover_timeout,
            from_config.framework.failover_timeout
        );
        assert_eq!(new.framework.role, from_config.framework.role);
        assert_eq!(
            new.send_registry_credentials,
            from_config.send_registry_credentials
        );

        let local = LocalBackendConfig::from_config(&c);
        let local_new = LocalBackendConfig::new(c.sandbox_dir.clone());
        assert_eq!(local_new.sandbox_retention, local.sandbox_retention);

        let core = CoreConfig::from_config(&c);
        let core_default = CoreConfig::default();
        assert_eq!(
            (
                core_default.task_cpus,
                core_default.task_mem,
                core_default.task_disk
            ),
            (core.task_cpus, core.task_mem, core.task_disk)
        );
        assert_eq!(core_default.kill_grace_secs, core.kill_grace_secs);
        assert_eq!(core_default.launch_retries, core.launch_retries);
        assert_eq!(core_default.command_shell, core.command_shell);
        assert_eq!(core_default.offer_refuse_seconds, core.offer_refuse_seconds);
        assert_eq!(
            core_default.reconciliation_interval,
            core.reconciliation_interval
        );
        assert_eq!(core_default.queued_timeout, core.queued_timeout);
    }
}
