//! TEARDOWN, sent only when asked for explicitly (`framework reset`), never on shutdown.

use super::*;

/// Why [`teardown`] failed.
#[derive(Debug, thiserror::Error)]
pub enum TeardownError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Detect(#[from] DetectError),
    #[error("the master answered SUBSCRIBE with an error: {0}")]
    Master(String),
    #[error("event stream: {0}")]
    Stream(#[from] StreamError),
    #[error("no SUBSCRIBED from the master within {0:?}")]
    Timeout(Duration),
}

/// Removes the framework for good: all its tasks are killed and its id can never subscribe
/// again. Subscribes with `framework_id` (TEARDOWN needs a live stream) and sends TEARDOWN.
/// Never called on a normal shutdown.
pub async fn teardown(cfg: &MesosBackendConfig, framework_id: &str) -> Result<(), TeardownError> {
    let client = MesosClient::new(cfg.client.clone())?;
    let stop = CancellationToken::new();
    let _guard = stop.clone().drop_guard();
    let mut masters = MasterSource::start(&cfg.master, cfg.ssl, cfg.zk_retry, &stop)?;
    let limit = cfg.client.call_timeout;
    let work = async {
        while masters.candidates().is_empty() {
            masters.changed().await;
        }
        let call = cfg.subscribe_call(Some(framework_id), &BTreeSet::new());
        let mut sub = client.subscribe(&masters.candidates(), &call).await?;
        loop {
            match sub.events.next().await {
                Some(Ok(ev)) => match ev.r#type() {
                    event::Type::Subscribed => break,
                    event::Type::Error => {
                        return Err(TeardownError::Master(
                            ev.error.map(|e| e.message).unwrap_or_default(),
                        ))
                    }
                    _ => {}
                },
                Some(Err(e)) => return Err(e.into()),
                None => {
                    return Err(TeardownError::Master(
                        "stream closed before SUBSCRIBED".into(),
                    ))
                }
            }
        }
        let session = Session {
            endpoint: sub.endpoint.clone(),
            stream_id: sub.stream_id.clone(),
            framework_id: framework_id.to_string(),
        };
        client
            .call(&session, &convert::teardown_call(framework_id))
            .await?;
        tracing::warn!(%framework_id, "framework torn down");
        Ok(())
    };
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| TeardownError::Timeout(limit))?
}
