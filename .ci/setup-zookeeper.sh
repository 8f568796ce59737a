#!/usr/bin/env bash
# Installs and starts a standalone ZooKeeper (Debian `zookeeperd`) on 127.0.0.1:2181 for the
# `zk://` master-detection tests in tests/mesos_client.rs. Idempotent: a running server is kept.
# Tests read AM_TEST_ZK=127.0.0.1:2181; this script writes that export to .ci/test-env-zookeeper.sh,
# which .ci/run sources.
set -euo pipefail

port=2181
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
write_env() {
    echo "export AM_TEST_ZK=127.0.0.1:${port}" >"${here}/test-env-zookeeper.sh"
    cat "${here}/test-env-zookeeper.sh"
}

zk_up() {
    # `ruok` needs the four-letter-word whitelist; a plain TCP connect is enough here.
    (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null
}

if zk_up; then
    echo "setup-zookeeper: ZooKeeper already listening on 127.0.0.1:${port}"
    write_env
    exit 0
fi

if [ ! -x /usr/share/zookeeper/bin/zkServer.sh ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends zookeeperd >/dev/null
fi

# Debian's package ships /etc/zookeeper/conf with dataDir=/var/lib/zookeeper and clientPort=2181.
mkdir -p /var/lib/zookeeper /var/log/zookeeper
/usr/share/zookeeper/bin/zkServer.sh start

for _ in $(seq 1 120); do
    if zk_up; then
        echo "setup-zookeeper: ZooKeeper is up on 127.0.0.1:${port}"
        write_env
        exit 0
    fi
    sleep 0.5
done
echo "setup-zookeeper: ZooKeeper did not open 127.0.0.1:${port} within 60 s" >&2
exit 1
