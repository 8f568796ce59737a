//! The subscription loop: SUBSCRIBE, the event stream and its heartbeat watchdog, backoff
//! between attempts, and the driver's actions turned into calls on the live session.

use super::*;

/// The open stream and what it was opened with.
pub(super) struct Pending {
    pub(super) endpoint: url::Url,
    pub(super) stream_id: String,
    pub(super) events: crate::mesos::client::EventStream,
    pub(super) deadline: Instant,
    pub(super) timeout: Duration,
}

pub(super) struct SubscriptionLoop {
    pub(super) cfg: MesosBackendConfig,
    pub(super) client: MesosClient,
    pub(super) masters: MasterSource,
    pub(super) events: mpsc::Sender<Event>,
    pub(super) session_tx: watch::Sender<Option<Arc<Session>>>,
    pub(super) framework_id: Option<String>,
    /// Roles currently suppressed (re-declared on every SUBSCRIBE).
    pub(super) suppressed: BTreeSet<String>,
    pub(super) pending: Option<Pending>,
}

pub(super) type Connecting =
    Fuse<BoxFuture<'static, Result<crate::mesos::client::Subscription, ClientError>>>;

impl SubscriptionLoop {
    pub(super) async fn emit(&mut self, e: Event) -> bool {
        self.events.send(e).await.is_ok()
    }

    pub(super) async fn run(
        &mut self,
        shutdown: &CancellationToken,
        actions: &mut mpsc::Receiver<Action>,
        work: &mpsc::Sender<Action>,
    ) {
        let mut state = SubState::initial(Instant::now());
        let mut connecting: Connecting = Fuse::terminated();
        loop {
            let waiting_until = match &state {
                SubState::Waiting { until, .. } => Some(*until),
                _ => None,
            };
            let deadline = self.pending.as_ref().map(|p| p.deadline);
            let has_stream = self.pending.is_some();
            let pending = &mut self.pending;
            let masters = &mut self.masters;
            let input = tokio::select! {
                biased;
                _ = shutdown.cancelled() => SubInput::Shutdown,
                item = async { pending.as_mut().expect("guarded").events.next().await },
                    if has_stream =>
                {
                    match item {
                        Some(Ok(ev)) => match self.on_event(ev).await {
                            Ok(Some(input)) => input,
                            Ok(None) => continue,
                            Err(()) => SubInput::Shutdown,
                        },
                        Some(Err(e)) => SubInput::Failed {
                            reason: format!("event stream broken: {e}"),
                            fatal: false,
                        },
                        None => SubInput::Failed {
                            reason: "the master closed the event stream".into(),
                            fatal: false,
                        },
                    }
                }
                _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await },
                    if deadline.is_some() => {
                    let timeout = self.pending.as_ref().map(|p| p.timeout).unwrap_or_default();
                    SubInput::Failed {
                        reason: format!("no event from the master for {timeout:?} (heartbeats lost)"),
                        fatal: false,
                    }
                }
                res = &mut connecting, if !connecting.is_terminated() => match res {
                    Ok(s) => {
                        tracing::debug!(endpoint = %s.endpoint, "SUBSCRIBE accepted; waiting for SUBSCRIBED");
                        let timeout = self.cfg.heartbeat_timeout(None);
                        self.pending = Some(Pending {
                            endpoint: s.endpoint,
                            stream_id: s.stream_id,
                            events: s.events,
                            deadline: Instant::now() + timeout,
                            timeout,
                        });
                        continue;
                    }
                    Err(e) => {
                        let fatal = e.disposition(CallKind::Subscribe) == Disposition::Fatal;
                        let reason = one_line(&e.to_string());
                        match &e {
                            // Normal at start-up: the ZooKeeper watch has not reported yet.
                            ClientError::NoMaster => {
                                tracing::info!("no leading master known yet; waiting for ZooKeeper")
                            }
                            _ if fatal => {}
                            _ => tracing::warn!(error = %reason, "cannot subscribe to Mesos; retrying"),
                        }
                        tracing::debug!(error = ?e, "SUBSCRIBE failed");
                        SubInput::Failed { reason, fatal }
                    }
                },
                a = actions.recv() => match a {
                    Some(a) => {
                        self.note_action(&a);
                        if work.send(a).await.is_err() {
                            SubInput::Shutdown
                        } else {
                            continue;
                        }
                    }
                    // The driver is gone.
                    None => SubInput::Shutdown,
                },
                _ = async { tokio::time::sleep_until(waiting_until.expect("guarded")).await },
                    if waiting_until.is_some() => SubInput::Connect,
                _ = masters.changed() => {
                    tracing::info!(candidates = ?self.masters.candidates(), "leading master changed");
                    SubInput::LeaderChanged
                }
            };
            let (next, effects) = step(
                &state,
                input,
                Instant::now(),
                &self.cfg.backoff,
                rand::random(),
            );
            if let SubState::Waiting { until, attempt } = &next {
                let wait = until.saturating_duration_since(Instant::now());
                if matches!(state, SubState::Subscribed { .. }) {
                    tracing::info!(?wait, "reconnecting to Mesos after a pause");
                } else {
                    tracing::debug!(?wait, attempt, "next SUBSCRIBE after a pause");
                }
            }
            state = next;
            let mut stop = false;
            for e in effects {
                match e {
                    Effect::Subscribe => {
                        let call = self
                            .cfg
                            .subscribe_call(self.framework_id.as_deref(), &self.suppressed);
                        let client = self.client.clone();
                        let candidates = self.masters.candidates();
                        let lease = self.cfg.lease.clone();
                        connecting = async move {
                            if lease.is_some_and(|l| !l.valid()) {
                                // Deposed: the daemon is stepping down; wait for the stop.
                                tracing::warn!(
                                    "not subscribing: this daemon no longer holds the leader lease"
                                );
                                std::future::pending::<()>().await;
                            }
                            client.subscribe(&candidates, &call).await
                        }
                        .boxed()
                        .fuse();
                    }
                    Effect::CloseStream => {
                        self.pending = None;
                        connecting = Fuse::terminated();
                        self.session_tx.send_replace(None);
                    }
                    Effect::EmitDisconnected(reason) => {
                        tracing::warn!(%reason, "Mesos subscription lost");
                        stop |= !self.emit(Event::Disconnected { reason }).await;
                    }
                    Effect::EmitError(message) => {
                        tracing::error!(%message, "Mesos subscription failed; giving up");
                        stop |= !self.emit(Event::Error(message)).await;
                    }
                    Effect::Stop => stop = true,
                }
            }
            if stop {
                break;
            }
        }
    }

    /// Remembers Suppress/Revive so that a re-SUBSCRIBE declares the same suppressed roles.
    pub(super) fn note_action(&mut self, a: &Action) {
        let all = [self.cfg.framework.role.clone()];
        match a {
            Action::Suppress(roles) if roles.is_empty() => self.suppressed.extend(all),
            Action::Suppress(roles) => self.suppressed.extend(roles.iter().cloned()),
            Action::Revive(roles) if roles.is_empty() => self.suppressed.clear(),
            Action::Revive(roles) => {
                for r in roles {
                    self.suppressed.remove(r);
                }
            }
            _ => {}
        }
    }

    /// Handles one event of the stream. `Err` when the driver is gone.
    pub(super) async fn on_event(&mut self, ev: scheduler::Event) -> Result<Option<SubInput>, ()> {
        if let Some(p) = self.pending.as_mut() {
            p.deadline = Instant::now() + p.timeout;
        }
        match ev.r#type() {
            event::Type::Subscribed => {
                let Some(s) = &ev.subscribed else {
                    return Ok(Some(SubInput::Failed {
                        reason: "SUBSCRIBED event without its payload".into(),
                        fatal: false,
                    }));
                };
                let fid = s.framework_id.value.clone();
                let timeout = self.cfg.heartbeat_timeout(s.heartbeat_interval_seconds);
                let Some(p) = self.pending.as_mut() else {
                    return Ok(None);
                };
                p.timeout = timeout;
                p.deadline = Instant::now() + timeout;
                tracing::info!(framework_id = %fid, endpoint = %p.endpoint, "subscribed to Mesos");
                self.framework_id = Some(fid.clone());
                self.session_tx.send_replace(Some(Arc::new(Session {
                    endpoint: p.endpoint.clone(),
                    stream_id: p.stream_id.clone(),
                    framework_id: fid,
                })));
                if let Ok(Some(domain)) = convert::event_from_proto(ev) {
                    if !self.emit(domain).await {
                        return Err(());
                    }
                }
                Ok(Some(SubInput::Subscribed))
            }
            event::Type::Error => Ok(Some(SubInput::MasterError(
                ev.error.map(|e| e.message).unwrap_or_default(),
            ))),
            _ => {
                match convert::event_from_proto(ev) {
                    Ok(Some(domain)) => {
                        if !self.emit(domain).await {
                            return Err(());
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "ignoring an event that cannot be converted")
                    }
                }
                Ok(None)
            }
        }
    }
}

/// `text` on one line: a log line per event, whatever the causes' own text holds.
pub(super) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
