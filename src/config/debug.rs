//! `Debug` for [`Config`] that never prints secrets: [`Secret`](super::Secret) fields print
//! `***` by themselves; here the password inside `database_url` and the values of
//! `docker_environment` (often credentials) are masked too.

use super::Config;
use crate::store::redact_url;
use std::fmt;

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Destructured so that a new field cannot be forgotten here.
        let Config {
            path,
            airflow_home,
            master,
            framework_name,
            framework_user,
            task_cpu,
            task_memory,
            checkpoint,
            failover_timeout,
            authenticate,
            default_principal,
            default_secret,
            docker_image_slave,
            mesos_ssl,
            framework_role,
            task_disk,
            command_shell,
            docker_network_mode,
            docker_volumes,
            docker_sock,
            docker_user_group_id,
            docker_environment,
            mesos_attributes,
            mesos_fetch_uri,
            mesos_fetch_uri_username,
            api_username,
            api_password,
            backend,
            containerizer,
            database_url,
            api_listen,
            api_max_connections,
            api_header_timeout,
            api_body_timeout,
            api_idle_timeout,
            api_token,
            api_token_file,
            api_url,
            public_url,
            registry,
            send_registry_credentials,
            force_pull,
            kill_grace_period,
            launch_retries,
            reconciliation_interval,
            offer_refuse_seconds,
            store_outage_limit,
            queued_timeout,
            mesos_ca_cert,
            docker_privileged,
            local_cpus,
            local_memory,
            sandbox_dir,
            sandbox_retention,
            task_retention,
            leader_election,
            leader_lease,
            policy,
            allowed_origins,
        } = self;
        let env_names: Vec<String> = docker_environment
            .iter()
            .map(|(name, _)| format!("{name}=***"))
            .collect();
        f.debug_struct("Config")
            .field("path", path)
            .field("airflow_home", airflow_home)
            .field("master", master)
            .field("framework_name", framework_name)
            .field("framework_user", framework_user)
            .field("task_cpu", task_cpu)
            .field("task_memory", task_memory)
            .field("checkpoint", checkpoint)
            .field("failover_timeout", failover_timeout)
            .field("authenticate", authenticate)
            .field("default_principal", default_principal)
            .field("default_secret", default_secret)
            .field("docker_image_slave", docker_image_slave)
            .field("mesos_ssl", mesos_ssl)
            .field("framework_role", framework_role)
            .field("task_disk", task_disk)
            .field("command_shell", command_shell)
            .field("docker_network_mode", docker_network_mode)
            .field("docker_volumes", docker_volumes)
            .field("docker_sock", docker_sock)
            .field("docker_user_group_id", docker_user_group_id)
            .field("docker_environment", &env_names)
            .field("mesos_attributes", mesos_attributes)
            .field("mesos_fetch_uri", mesos_fetch_uri)
            .field("mesos_fetch_uri_username", mesos_fetch_uri_username)
            .field("api_username", api_username)
            .field("api_password", api_password)
            .field("backend", backend)
            .field("containerizer", containerizer)
            .field("database_url", &redact_url(database_url))
            .field("api_listen", api_listen)
            .field("api_max_connections", api_max_connections)
            .field("api_header_timeout", api_header_timeout)
            .field("api_body_timeout", api_body_timeout)
            .field("api_idle_timeout", api_idle_timeout)
            .field("api_token", api_token)
            .field("api_token_file", api_token_file)
            .field("api_url", api_url)
            .field("public_url", public_url)
            .field("registry", registry)
            .field("send_registry_credentials", send_registry_credentials)
            .field("force_pull", force_pull)
            .field("kill_grace_period", kill_grace_period)
            .field("launch_retries", launch_retries)
            .field("reconciliation_interval", reconciliation_interval)
            .field("offer_refuse_seconds", offer_refuse_seconds)
            .field("store_outage_limit", store_outage_limit)
            .field("queued_timeout", queued_timeout)
            .field("mesos_ca_cert", mesos_ca_cert)
            .field("docker_privileged", docker_privileged)
            .field("local_cpus", local_cpus)
            .field("local_memory", local_memory)
            .field("sandbox_dir", sandbox_dir)
            .field("sandbox_retention", sandbox_retention)
            .field("task_retention", task_retention)
            .field("leader_election", leader_election)
            .field("leader_lease", leader_lease)
            .field("policy", policy)
            .field("allowed_origins", allowed_origins)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{load, NoSystem, Sources};
    use std::collections::HashMap;

    #[test]
    fn debug_masks_database_password_and_environment_values() {
        let env: HashMap<String, String> = [
            ("HOME", "/h"),
            ("AIRFLOW__MESOS__DATABASE_URL", "postgresql://u:db-pw@h/d"),
            ("AIRFLOW__MESOS__DOCKER_ENVIRONMENT", "{'TOKEN': 'env-pw'}"),
            ("AIRFLOW__MESOS__API_TOKEN", "api-pw"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let l = load(&Sources::new(env, &NoSystem)).unwrap();
        let d = format!("{:?}", l.config);
        assert!(
            d.contains("postgres://u:***@h/d") && d.contains("TOKEN=***"),
            "{d}"
        );
        for s in ["db-pw", "env-pw", "api-pw"] {
            assert!(!d.contains(s), "{s} in {d}");
        }
    }
}
