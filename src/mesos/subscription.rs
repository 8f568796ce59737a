//! The subscription lifecycle as an explicit state machine: one pure [`step`] function from
//! (state, input, now, random number) to (next state, effects). The async loop in
//! `backend.rs` only carries out the [`Effect`]s; everything that decides *when* to reconnect
//! and *whether* to give up lives here and is unit-tested without sockets or clocks.
//!
//! ```text
//!            Connect                 SUBSCRIBED event
//!  Waiting ──────────► Connecting ─────────────────► Subscribed
//!     ▲                   │  retryable failure           │ retryable failure / heartbeat lost /
//!     └───────────────────┴──────────────────────────────┘ leader changed
//!  (backoff with jitter; the attempt counter resets after a healthy period)
//!
//!  any state ── fatal failure / ERROR event / shutdown ──► Stopped
//! ```

use std::time::Duration;
use tokio::time::Instant;

/// Exponential backoff with jitter, capped, reset after a healthy period. Validated on
/// construction, so a zero or inverted range cannot make a tight loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    multiplier: f64,
    /// Fraction of each delay that is random (0 = none, 1 = "full jitter").
    jitter: f64,
    /// A subscription that lasted this long counts as healthy: the next failure starts
    /// again from `initial`.
    reset_after: Duration,
}

/// An invalid backoff setting.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackoffError {
    #[error("backoff: initial delay must be > 0")]
    ZeroInitial,
    #[error("backoff: max delay {max:?} is below the initial delay {initial:?}")]
    MaxBelowInitial { initial: Duration, max: Duration },
}

impl Backoff {
    /// `initial` doubling up to `max`, half jittered, reset after `reset_after` of health.
    pub fn new(
        initial: Duration,
        max: Duration,
        reset_after: Duration,
    ) -> Result<Backoff, BackoffError> {
        if initial.is_zero() {
            return Err(BackoffError::ZeroInitial);
        }
        if max < initial {
            return Err(BackoffError::MaxBelowInitial { initial, max });
        }
        Ok(Backoff {
            initial,
            max,
            multiplier: 2.0,
            jitter: 0.5,
            reset_after,
        })
    }

    /// The delay before attempt number `attempt` (0-based), given a uniform random number in
    /// `[0, 1)`. Never more than `max`; never less than `(1 - jitter)` of the capped base.
    pub fn delay(&self, attempt: u32, unit_random: f64) -> Duration {
        let base = self.initial.as_secs_f64() * self.multiplier.powi(attempt.min(64) as i32);
        let base = base.min(self.max.as_secs_f64());
        let r = unit_random.clamp(0.0, 1.0);
        let d = base * (1.0 - self.jitter) + base * self.jitter * r;
        Duration::from_secs_f64(d.min(self.max.as_secs_f64()))
    }
}

impl Default for Backoff {
    /// 0.5 s doubling to 15 s (the Mesos docs' cap), half jittered, reset after 60 s healthy.
    fn default() -> Backoff {
        Backoff::new(
            Duration::from_millis(500),
            Duration::from_secs(15),
            Duration::from_secs(60),
        )
        .expect("valid defaults")
    }
}

/// Where the subscription is.
#[derive(Debug, Clone, PartialEq)]
pub enum SubState {
    /// Not connected; the next SUBSCRIBE goes out at `until`.
    Waiting { attempt: u32, until: Instant },
    /// A SUBSCRIBE is in flight, or its stream is open but SUBSCRIBED has not arrived.
    Connecting { attempt: u32 },
    /// SUBSCRIBED arrived at `since`.
    Subscribed { attempt: u32, since: Instant },
    /// Given up (fatal error, master ERROR, shutdown). Terminal.
    Stopped { reason: String },
}

impl SubState {
    /// The state a backend starts in: connect right away.
    pub fn initial(now: Instant) -> SubState {
        SubState::Waiting {
            attempt: 0,
            until: now,
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum SubInput {
    /// The backoff timer fired.
    Connect,
    /// The stream delivered SUBSCRIBED.
    Subscribed,
    /// The SUBSCRIBE request failed, the stream broke or ended, no event arrived in time,
    /// or a record could not be decoded. `fatal` errors are not retried.
    Failed {
        reason: String,
        fatal: bool,
    },
    /// The master sent an ERROR event (e.g. "Framework failed over", "Framework has been
    /// removed"): another instance took over or the framework is gone, so we stop.
    MasterError(String),
    /// Master detection saw a new leader.
    LeaderChanged,
    Shutdown,
}

/// What the loop must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send SUBSCRIBE (to the current candidates).
    Subscribe,
    /// Drop the stream / the SUBSCRIBE in flight.
    CloseStream,
    /// Tell the driver the subscription ended (offers are void).
    EmitDisconnected(String),
    /// Tell the driver the subscription failed for good.
    EmitError(String),
    /// End the loop.
    Stop,
}

/// The one transition function. `unit_random` in `[0, 1)` jitters the backoff.
pub fn step(
    state: &SubState,
    input: SubInput,
    now: Instant,
    backoff: &Backoff,
    unit_random: f64,
) -> (SubState, Vec<Effect>) {
    use Effect as E;
    use SubInput as I;
    use SubState as S;
    let retry = |attempt: u32| S::Waiting {
        attempt: attempt.saturating_add(1),
        until: now + backoff.delay(attempt, unit_random),
    };
    match (state, input) {
        (S::Stopped { .. }, _) => (state.clone(), vec![]),

        (_, I::Shutdown) => (
            S::Stopped {
                reason: "shutdown".into(),
            },
            vec![E::CloseStream, E::Stop],
        ),

        (S::Waiting { attempt, .. }, I::Connect) => {
            (S::Connecting { attempt: *attempt }, vec![E::Subscribe])
        }
        (S::Waiting { attempt, .. }, I::LeaderChanged) => (
            S::Waiting {
                attempt: *attempt,
                until: now,
            },
            vec![],
        ),

        (S::Connecting { attempt }, I::Subscribed) => (
            S::Subscribed {
                attempt: *attempt,
                since: now,
            },
            vec![],
        ),

        (
            S::Subscribed { .. },
            I::Failed {
                reason,
                fatal: true,
            },
        )
        | (S::Subscribed { .. }, I::MasterError(reason)) => (
            S::Stopped {
                reason: reason.clone(),
            },
            vec![
                E::CloseStream,
                E::EmitError(reason.clone()),
                E::EmitDisconnected(reason),
                E::Stop,
            ],
        ),
        // Not subscribed: the driver already knows it is disconnected.
        (
            S::Connecting { .. },
            I::Failed {
                reason,
                fatal: true,
            },
        )
        | (S::Connecting { .. }, I::MasterError(reason)) => (
            S::Stopped {
                reason: reason.clone(),
            },
            vec![E::CloseStream, E::EmitError(reason), E::Stop],
        ),
        (
            S::Waiting { .. },
            I::Failed {
                reason,
                fatal: true,
            },
        ) => (
            S::Stopped {
                reason: reason.clone(),
            },
            vec![E::EmitError(reason), E::Stop],
        ),

        (
            S::Connecting { attempt },
            I::Failed {
                reason,
                fatal: false,
            },
        ) => {
            tracing::debug!(%reason, attempt, "subscribe attempt failed");
            (retry(*attempt), vec![E::CloseStream])
        }
        (
            S::Subscribed { attempt, since },
            I::Failed {
                reason,
                fatal: false,
            },
        ) => {
            // A subscription that stayed up long enough was healthy: start over.
            let attempt = if now.saturating_duration_since(*since) >= backoff.reset_after {
                0
            } else {
                *attempt
            };
            (
                retry(attempt),
                vec![E::CloseStream, E::EmitDisconnected(reason)],
            )
        }

        (S::Connecting { attempt }, I::LeaderChanged) => (
            S::Waiting {
                attempt: *attempt,
                until: now,
            },
            vec![E::CloseStream],
        ),
        (S::Subscribed { .. }, I::LeaderChanged) => (
            S::Waiting {
                attempt: 0,
                until: now,
            },
            vec![
                E::CloseStream,
                E::EmitDisconnected("the leading master changed".into()),
            ],
        ),

        // Inputs that do not apply in a state (a stale timer, a duplicate SUBSCRIBED, a
        // failure report after we already moved on) change nothing.
        (_, _) => (state.clone(), vec![]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b() -> Backoff {
        Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(15),
            Duration::from_secs(60),
        )
        .unwrap()
    }

    fn fail(fatal: bool) -> SubInput {
        SubInput::Failed {
            reason: "boom".into(),
            fatal,
        }
    }

    #[test]
    fn backoff_grows_caps_and_jitters_within_bounds() {
        let b = b();
        // Without randomness (r = 1): the full base.
        let full: Vec<u64> = (0..6).map(|a| b.delay(a, 1.0).as_millis() as u64).collect();
        assert_eq!(full, vec![1000, 2000, 4000, 8000, 15000, 15000]);
        // r = 0: half of it (jitter 0.5).
        assert_eq!(b.delay(2, 0.0), Duration::from_secs(2));
        for a in 0..100 {
            for r in [0.0, 0.3, 0.999] {
                let d = b.delay(a, r);
                assert!(d <= Duration::from_secs(15), "{a} {r} {d:?}");
                assert!(d >= Duration::from_millis(500), "{a} {r} {d:?}");
            }
        }
        // Huge attempt counts do not overflow.
        assert_eq!(b.delay(u32::MAX, 1.0), Duration::from_secs(15));
    }

    #[test]
    fn backoff_is_validated() {
        assert_eq!(
            Backoff::new(Duration::ZERO, Duration::from_secs(1), Duration::ZERO),
            Err(BackoffError::ZeroInitial)
        );
        assert!(matches!(
            Backoff::new(
                Duration::from_secs(2),
                Duration::from_secs(1),
                Duration::ZERO
            ),
            Err(BackoffError::MaxBelowInitial { .. })
        ));
        assert_eq!(Backoff::default().max, Duration::from_secs(15));
    }

    #[test]
    fn happy_path_connects_and_subscribes() {
        let t0 = Instant::now();
        let s = SubState::initial(t0);
        let (s, e) = step(&s, SubInput::Connect, t0, &b(), 0.5);
        assert_eq!(s, SubState::Connecting { attempt: 0 });
        assert_eq!(e, vec![Effect::Subscribe]);
        let (s, e) = step(&s, SubInput::Subscribed, t0, &b(), 0.5);
        assert_eq!(
            s,
            SubState::Subscribed {
                attempt: 0,
                since: t0
            }
        );
        assert!(e.is_empty());
    }

    #[test]
    fn repeated_connect_failures_back_off_further_each_time() {
        let t0 = Instant::now();
        let mut s = SubState::Connecting { attempt: 0 };
        let mut delays = Vec::new();
        for _ in 0..6 {
            let (next, e) = step(&s, fail(false), t0, &b(), 1.0);
            assert_eq!(
                e,
                vec![Effect::CloseStream],
                "no Disconnected while never subscribed"
            );
            let SubState::Waiting { until, attempt } = next else {
                panic!("{next:?}")
            };
            delays.push((until - t0).as_secs());
            let (c, e) = step(&next, SubInput::Connect, until, &b(), 1.0);
            assert_eq!(e, vec![Effect::Subscribe]);
            assert_eq!(c, SubState::Connecting { attempt });
            s = c;
        }
        assert_eq!(delays, vec![1, 2, 4, 8, 15, 15]);
    }

    #[test]
    fn a_flapping_subscription_keeps_its_backoff_a_healthy_one_resets() {
        let t0 = Instant::now();
        // Subscribed only briefly on attempt 3: the next delay keeps growing.
        let s = SubState::Subscribed {
            attempt: 3,
            since: t0,
        };
        let (next, e) = step(&s, fail(false), t0 + Duration::from_secs(1), &b(), 1.0);
        assert_eq!(
            e,
            vec![Effect::CloseStream, Effect::EmitDisconnected("boom".into())]
        );
        assert_eq!(
            next,
            SubState::Waiting {
                attempt: 4,
                until: t0 + Duration::from_secs(1) + Duration::from_secs(8)
            }
        );
        // Healthy for 60 s: start over from the initial delay.
        let later = t0 + Duration::from_secs(61);
        let (next, _) = step(&s, fail(false), later, &b(), 1.0);
        assert_eq!(
            next,
            SubState::Waiting {
                attempt: 1,
                until: later + Duration::from_secs(1)
            }
        );
    }

    #[test]
    fn fatal_errors_and_master_errors_stop_for_good() {
        let t0 = Instant::now();
        let subscribed_effects = vec![
            Effect::CloseStream,
            Effect::EmitError("boom".into()),
            Effect::EmitDisconnected("boom".into()),
            Effect::Stop,
        ];
        let connecting_effects = vec![
            Effect::CloseStream,
            Effect::EmitError("boom".into()),
            Effect::Stop,
        ];
        for (s, want) in [
            (SubState::Connecting { attempt: 2 }, connecting_effects),
            (
                SubState::Subscribed {
                    attempt: 0,
                    since: t0,
                },
                subscribed_effects,
            ),
        ] {
            let (next, e) = step(&s, fail(true), t0, &b(), 0.5);
            assert_eq!(
                next,
                SubState::Stopped {
                    reason: "boom".into()
                }
            );
            assert_eq!(e, want);
            let (next, e) = step(
                &s,
                SubInput::MasterError("Framework failed over".into()),
                t0,
                &b(),
                0.5,
            );
            assert!(matches!(next, SubState::Stopped { .. }));
            assert!(e.contains(&Effect::EmitError("Framework failed over".into())));
            // Nothing brings a stopped subscription back.
            for input in [
                SubInput::Connect,
                SubInput::Subscribed,
                SubInput::LeaderChanged,
                fail(false),
            ] {
                let (again, e) = step(&next, input, t0, &b(), 0.5);
                assert_eq!(again, next);
                assert!(e.is_empty());
            }
        }
    }

    #[test]
    fn leader_change_reconnects_at_once() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(5);
        let (s, e) = step(
            &SubState::Subscribed {
                attempt: 4,
                since: t0,
            },
            SubInput::LeaderChanged,
            t1,
            &b(),
            0.5,
        );
        assert_eq!(
            s,
            SubState::Waiting {
                attempt: 0,
                until: t1
            }
        );
        assert_eq!(e[0], Effect::CloseStream);
        assert!(matches!(e[1], Effect::EmitDisconnected(_)));
        // While waiting out a backoff: connect now instead.
        let (s, e) = step(
            &SubState::Waiting {
                attempt: 3,
                until: t1 + Duration::from_secs(10),
            },
            SubInput::LeaderChanged,
            t1,
            &b(),
            0.5,
        );
        assert_eq!(
            s,
            SubState::Waiting {
                attempt: 3,
                until: t1
            }
        );
        assert!(e.is_empty());
        let (s, e) = step(
            &SubState::Connecting { attempt: 2 },
            SubInput::LeaderChanged,
            t1,
            &b(),
            0.5,
        );
        assert_eq!(
            s,
            SubState::Waiting {
                attempt: 2,
                until: t1
            }
        );
        assert_eq!(e, vec![Effect::CloseStream]);
    }

    #[test]
    fn shutdown_stops_from_anywhere_without_error() {
        let t0 = Instant::now();
        for s in [
            SubState::initial(t0),
            SubState::Connecting { attempt: 1 },
            SubState::Subscribed {
                attempt: 0,
                since: t0,
            },
        ] {
            let (next, e) = step(&s, SubInput::Shutdown, t0, &b(), 0.5);
            assert!(matches!(next, SubState::Stopped { .. }));
            assert_eq!(e, vec![Effect::CloseStream, Effect::Stop]);
        }
    }

    #[test]
    fn stale_inputs_change_nothing() {
        let t0 = Instant::now();
        let s = SubState::Subscribed {
            attempt: 0,
            since: t0,
        };
        assert_eq!(
            step(&s, SubInput::Subscribed, t0, &b(), 0.5),
            (s.clone(), vec![])
        );
        assert_eq!(
            step(&s, SubInput::Connect, t0, &b(), 0.5),
            (s.clone(), vec![])
        );
        let w = SubState::initial(t0);
        assert_eq!(step(&w, fail(false), t0, &b(), 0.5), (w.clone(), vec![]));
    }
}
