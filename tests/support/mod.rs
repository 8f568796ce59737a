//! Test support shared by the integration tests (`mod support;`) and the e2e bench: the fake
//! Mesos master (`fake_master`), access to the recorded real-Mesos traffic (`fixtures`), a thin
//! raw HTTP/RecordIO client for checking the fake itself (`raw_client`), a ZooKeeper helper that
//! publishes masters like real ones do (`zk`), and environment helpers for tests that need
//! external services (`env`); database outages (`outage`: a disk to fill, a PostgreSQL cluster
//! to stop).
#![allow(dead_code)]

pub mod env;
pub mod fake_master;
pub mod fixtures;
pub mod outage;
pub mod raw_client;
pub mod zk;
