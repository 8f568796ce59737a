//! The prost types generated from `proto/mesos/v1/*.proto` (see `build.rs`).
//!
//! `v1` is the Mesos package `mesos.v1`; `scheduler` is `mesos.v1.scheduler` (nested inside
//! `v1` because the generated code refers to `super::` for the shared types, and re-exported
//! here for short paths). These types never leave the [`crate::mesos`] module: `convert`
//! turns them into domain types.

/// `package mesos.v1` (mesos.proto).
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/mesos.v1.rs"));

    /// `package mesos.v1.scheduler` (scheduler.proto).
    #[allow(clippy::all, missing_docs)]
    pub mod scheduler {
        include!(concat!(env!("OUT_DIR"), "/mesos.v1.scheduler.rs"));
    }
}

pub use v1::scheduler;

/// The encoded `FileDescriptorSet` of both files (for `prost-reflect`, used by the JSON codec).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/mesos_descriptor.bin"));
