//! The call worker: every call but SUBSCRIBE, in two lanes (acknowledgements, many in flight;
//! the rest in order), with failures and unanswered ACCEPTs reported back as events.

use super::*;

/// Most ACKNOWLEDGE calls in flight at once. Acknowledgements are independent of each other
/// (an agent only sends a task's next update after the previous one was acknowledged), so
/// sending them concurrently is safe, and it is what makes thousands of updates per second
/// possible over HTTP. They are pipelined on the one call connection ([`super::pipeline`]), so
/// many in flight cost no more connections (BENCHMARKS.md has the figures).
pub(super) const MAX_ACKS_IN_FLIGHT: usize = 256;

/// Most other calls taken from the driver and waiting for their turn.
pub(super) const MAX_CALLS_WAITING: usize = 1024;

/// Sends the driver's actions on the live session, in two lanes that never wait for each
/// other: acknowledgements concurrently (up to [`MAX_ACKS_IN_FLIGHT`]), every other call one
/// at a time and in the driver's order. No other call depends on an acknowledgement (a master
/// handles ACKNOWLEDGE for the agent's status update manager alone), so an offer's DECLINE or a
/// LAUNCH does not hold the acknowledgements back, nor they it.
pub(super) async fn call_worker(
    client: MesosClient,
    session: watch::Receiver<Option<Arc<Session>>>,
    mut actions: mpsc::Receiver<Action>,
    events: mpsc::Sender<Event>,
    material: LaunchMaterial,
) {
    use futures::future::OptionFuture;
    use futures::stream::{FuturesUnordered, StreamExt};
    let mut acks = FuturesUnordered::new();
    let mut calls: VecDeque<Action> = VecDeque::new();
    let mut current: Option<BoxFuture<'_, ()>> = None;
    let (client, session, events, material) = (&client, &session, &events, &material);
    let mut open = true;
    loop {
        if current.is_none() {
            current = calls
                .pop_front()
                .map(|a| perform(client, session, events, material, a).boxed());
        }
        if !open && current.is_none() && acks.is_empty() {
            break;
        }
        let room = acks.len() < MAX_ACKS_IN_FLIGHT && calls.len() < MAX_CALLS_WAITING;
        tokio::select! {
            biased;
            Some(()) = acks.next(), if !acks.is_empty() => {}
            Some(()) = OptionFuture::from(current.as_mut()), if current.is_some() => {
                current = None;
            }
            action = actions.recv(), if open && room => match action {
                Some(a @ Action::Acknowledge { .. }) => {
                    acks.push(perform(client, session, events, material, a));
                }
                Some(a) => calls.push_back(a),
                None => open = false,
            },
        }
    }
}

/// The action as an encoded call. Not async, so that the `Call` (over a kilobyte) is never
/// part of [`perform`]'s future, which is allocated for every acknowledgement.
fn encoded_call(
    client: &MesosClient,
    framework_id: &str,
    action: &Action,
    contexts: &[LaunchContext],
) -> Result<EncodedCall, convert::ConvertError> {
    convert::action_to_call(framework_id, action, contexts).map(|c| client.encode(&c))
}

/// Hands an event to the driver. Boxed: these are the rare outcomes of a call, and a send's
/// future (with its event) would otherwise be part of every [`perform`] future.
fn report(events: &mpsc::Sender<Event>, event: Event) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        let _ = events.send(event).await;
    })
}

/// Sends one action as a call; a failure is reported to the driver as `ActionFailed`.
pub(super) async fn perform(
    client: &MesosClient,
    session: &watch::Receiver<Option<Arc<Session>>>,
    events: &mpsc::Sender<Event>,
    material: &LaunchMaterial,
    action: Action,
) {
    let current = session.borrow().clone();
    let failed = |error: String, fatal: bool| Event::ActionFailed {
        action: action.clone(),
        error,
        fatal,
    };
    let Some(s) = current else {
        if matches!(action, Action::Suppress(_) | Action::Revive(_)) {
            // Carried by the next SUBSCRIBE's suppressed_roles.
            return;
        }
        report(
            events,
            failed("not subscribed to a Mesos master".into(), false),
        )
        .await;
        return;
    };
    let contexts = match &action {
        Action::Launch { tasks, .. } => {
            match tasks
                .iter()
                .map(|t| material.context(t))
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(c) => c,
                Err(e) => {
                    report(events, failed(e.to_string(), true)).await;
                    return;
                }
            }
        }
        _ => Vec::new(),
    };
    let call = match encoded_call(client, &s.framework_id, &action, &contexts) {
        Ok(c) => c,
        Err(e) => {
            report(events, failed(e.to_string(), true)).await;
            return;
        }
    };
    let kind = call.kind();
    match client.send(&s, call).await {
        Ok(()) => {
            if let Action::VoidOffers { offer_ids, .. } = &action {
                let offer_ids = offer_ids.clone();
                report(events, Event::OffersVoided { offer_ids }).await;
            }
        }
        // Written, or perhaps written, and no answer: the master may have taken it.
        Err(e) if e.may_have_been_taken() && matches!(action, Action::Launch { .. }) => {
            tracing::warn!(error = %e, "no answer to an ACCEPT; the master may have taken it");
            let error = e.to_string();
            report(events, Event::ActionUnconfirmed { action, error }).await;
        }
        Err(e) => {
            let fatal = e.disposition(CallKind::Call) == Disposition::Fatal;
            tracing::warn!(error = %e, fatal, call = ?kind, "Mesos call failed");
            report(events, failed(e.to_string(), fatal)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One `perform` future is allocated per call, so per acknowledgement: it must stay small.
    /// It was 3.8 kB (the `Call` it held across the send, a connect and a one-per-request
    /// fallback inline, a cloned session); glibc's malloc consolidates its free lists on every
    /// request of 1 kB or more, and the allocation, its copy and its free were half of the call
    /// worker's samples in a flat-out profile.
    #[test]
    fn the_future_of_one_call_is_small() {
        let c = MesosBackendConfig::new(
            crate::mesos::detect::parse_master("m:5050", false).unwrap(),
            "f",
            "nobody",
        );
        let files = Arc::new(crate::onetime::OneTimeFiles::new(None, b"k", None));
        let material = LaunchMaterial::new(&c, files).unwrap();
        let client = MesosClient::new(c.client.clone()).unwrap();
        let (_session_tx, session) = watch::channel(None);
        let (events, _rx) = mpsc::channel(1);
        let ack = Action::Acknowledge {
            agent_id: "a".into(),
            backend_task_id: "t".into(),
            uuid: vec![1; 16],
        };
        let f = perform(&client, &session, &events, &material, ack);
        let size = std::mem::size_of_val(&f);
        assert!(size < 1000, "perform's future is {size} bytes");
    }
}
