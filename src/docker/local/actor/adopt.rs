//! Adoption at start: the containers a previous run of this framework left are watched,
//! reported again or started.

use super::*;
use crate::docker::engine_message;
use crate::docker::local::launch::{start_if_created, watch};
use crate::docker::local::sandbox::check_task_dir_name;
use crate::scheduler::types::BackendState;
use bollard::query_parameters::ListContainersOptions;
use std::collections::HashMap;
use tokio_util::sync::CancellationToken;

impl Backend {
    /// Adopts the containers of this framework that a previous run left: running ones are
    /// watched to completion, exited ones reported again, created ones started.
    pub(super) async fn adopt_existing(&mut self) {
        let mut filters = HashMap::new();
        filters.insert(
            "label".to_string(),
            vec![format!("{LABEL_FRAMEWORK}={}", self.framework_id)],
        );
        let opts = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let list = match self.docker.list_containers(Some(opts)).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %engine_message(&e), "local backend: cannot list containers to adopt");
                return;
            }
        };
        for c in list {
            let (Some(cid), Some(labels)) = (c.id, c.labels) else {
                continue;
            };
            let Some(id) = labels.get(LABEL_BACKEND_TASK_ID).cloned() else {
                continue;
            };
            if check_task_dir_name(&id).is_err() || self.tasks.contains_key(&id) {
                continue;
            }
            let num = |k: &str| {
                labels
                    .get(k)
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or(0)
            };
            let usage = Usage {
                cpus: num(LABEL_CPUS),
                mem: num(LABEL_MEM),
                disk: num(LABEL_DISK),
                ports: labels
                    .get(LABEL_PORTS)
                    .map(|p| p.split(',').filter_map(|x| x.parse().ok()).collect())
                    .unwrap_or_default(),
            };
            let grace = labels
                .get(LABEL_GRACE)
                .and_then(|g| g.parse::<f64>().ok())
                .unwrap_or(3.0);
            tracing::info!(task = %id, container = %cid, "local backend: adopting a container from a previous run");
            self.book.hold(&id, usage.clone());
            let cancel = CancellationToken::new();
            self.tasks.insert(
                id.clone(),
                TaskEntry {
                    container_id: Some(cid.clone()),
                    state: BackendState::Running,
                    exit_code: None,
                    message: None,
                    reason: None,
                    kill_requested: false,
                    grace_secs: grace,
                    cancel,
                    mem_mb: usage.mem as f64 / 1000.0,
                },
            );
            let docker = self.docker.clone();
            let sandbox = self.sandbox_of(&id);
            let reports = self.reports_tx.clone();
            self.jobs.spawn(async move {
                let started = start_if_created(&docker, &cid).await;
                if let Err(message) = started {
                    let _ = reports
                        .send(Report::LaunchFailed {
                            backend_task_id: id,
                            message,
                        })
                        .await;
                    return;
                }
                let exit = watch(&docker, &cid, &sandbox, None).await;
                let _ = reports
                    .send(Report::Exited {
                        backend_task_id: id,
                        exit,
                    })
                    .await;
            });
        }
    }
}

pub(super) fn is_terminal(s: BackendState) -> bool {
    matches!(
        s,
        BackendState::Finished
            | BackendState::Failed
            | BackendState::Killed
            | BackendState::Error
            | BackendState::Dropped
            | BackendState::Gone
            | BackendState::GoneByOperator
    )
}
