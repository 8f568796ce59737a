//! The pure scheduler core: queued tasks × offers → launches; status updates → task state
//! transitions; kills, retries, reconciliation, suppress/revive. No I/O: inputs and the current
//! time are passed in, outputs (state changes to commit, actions for the backend) come back.
//!
//! # Layout
//!
//! | file | role |
//! |---|---|
//! | [`types`] | domain types shared with the backends and the driver (events, actions, offers) |
//! | [`config`] | [`CoreConfig`]: the `[mesos]` defaults and the core's policies |
//! | [`matching`] | offer matching: classes of queued tasks × offers → placements, flavour by flavour |
//! | [`launch`] | the launch-spec builder: spec + defaults + taken resources → [`types::LaunchTask`] |
//! | [`core`] | [`Core`]: the state machine tying them together (lifecycle, reconciliation, kills) |

pub mod config;
pub mod core;
pub mod launch;
pub mod matching;
pub mod types;

#[cfg(test)]
mod tests;

pub use self::config::CoreConfig;
pub use self::core::{Core, CoreStats, KillError, Step};
