//! ZooKeeper helper for `zk://` master-detection tests: publishes fake masters the way real
//! Mesos masters do (ephemeral sequential `json.info_NNNNNNNNNN` nodes holding MasterInfo JSON)
//! under a fresh, test-unique path.

use zookeeper_client as zk;

/// A ZooKeeper session that owns the `json.info_*` nodes it created (they vanish with it).
pub struct ZkMasters {
    client: zk::Client,
    /// The group path, e.g. `/mesos-test-<uuid>`.
    pub path: String,
    server: String,
}

impl ZkMasters {
    /// Connects to `server` (`host:port`) and creates a fresh persistent group path.
    pub async fn new(server: &str) -> ZkMasters {
        let client = zk::Client::connect(server)
            .await
            .unwrap_or_else(|e| panic!("connect to ZooKeeper at {server}: {e}"));
        let path = format!("/mesos-test-{}", uuid::Uuid::new_v4().simple());
        client
            .create(
                &path,
                b"",
                &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
            )
            .await
            .unwrap_or_else(|e| panic!("create {path}: {e}"));
        ZkMasters {
            client,
            path,
            server: server.to_string(),
        }
    }

    /// The `zk://` URL of the group.
    pub fn url(&self) -> String {
        format!("zk://{}{}", self.server, self.path)
    }

    /// Publishes a contender; returns its node path (`.../json.info_NNNNNNNNNN`).
    pub async fn publish(&self, master_info_json: &str) -> String {
        let prefix = format!("{}/json.info_", self.path);
        let (_, seq) = self
            .client
            .create(
                &prefix,
                master_info_json.as_bytes(),
                &zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all()),
            )
            .await
            .unwrap_or_else(|e| panic!("create {prefix}*: {e}"));
        format!("{prefix}{seq}")
    }

    /// Removes a contender's node (as when its session expires).
    pub async fn withdraw(&self, node: &str) {
        self.client
            .delete(node, None)
            .await
            .unwrap_or_else(|e| panic!("delete {node}: {e}"));
    }
}
