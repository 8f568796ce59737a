//! Test support shared by the integration tests (`mod support;`): the fake Mesos master, a
//! ZooKeeper helper, and environment helpers for tests that need external services.
#![allow(dead_code)]

pub mod env;
pub mod fake_master;
pub mod fixtures;
pub mod raw_client;
pub mod zk;
