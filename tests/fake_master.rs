//! Checks of the fake Mesos master (tests/support/fake_master) against traffic recorded from a
//! real Mesos 1.12 master (../shared/fixtures/mesos-1.12-real).

mod support;

#[tokio::test]
async fn placeholder_compiles() {
    let m = support::fake_master::FakeMaster::start(Default::default()).await;
    assert!(m.url().starts_with("http://127.0.0.1:"));
}
