//! The pure scheduler core: queued tasks × offers → launches; status updates → task state
//! transitions; kills, retries, reconciliation, suppress/revive. No I/O: inputs and the current
//! time are passed in, outputs (state changes to commit, actions for the backend) come back.

pub mod types;
