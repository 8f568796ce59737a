#!/usr/bin/env bash
# Starts the PostgreSQL and MariaDB servers that the store tests (tests/store.rs and the unit
# tests in src/store/) run against, without systemd. Idempotent: safe to run again while the
# servers are up.
#
# Test credentials are fixed, loopback-only, and not secret:
#   AM_TEST_PG_URL=postgres://am_test:am_test_pw@127.0.0.1:5432/am_test
#   AM_TEST_MYSQL_URL=mysql://am_test:am_test_pw@127.0.0.1:3306/am_test
# The role/user may create databases: every test makes its own fresh database.
# The export lines are printed at the end and written to .ci/test-env.sh (source it).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
user=am_test
pass=am_test_pw
db=am_test

log() { echo "setup-databases: $*" >&2; }

wait_port() { # host port name
    for _ in $(seq 1 120); do
        if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
        sleep 0.5
    done
    log "$3 did not open $1:$2 within 60 s"
    return 1
}

export DEBIAN_FRONTEND=noninteractive
need=()
command -v pg_ctlcluster >/dev/null 2>&1 && ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
[ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
# strace: tests/store.rs checks which system call SQLite syncs its files with.
command -v strace >/dev/null 2>&1 || need+=(strace)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi

# ---- PostgreSQL ----
ver="$(ls /usr/lib/postgresql | sort -V | tail -n1)"
if ! pg_lsclusters -h | awk -v v="$ver" '$1 == v && $2 == "main"' | grep -q .; then
    log "creating PostgreSQL $ver cluster main"
    pg_createcluster "$ver" main >/dev/null
fi
if ! pg_lsclusters -h | awk -v v="$ver" '$1 == v && $2 == "main" && $4 == "online"' | grep -q .; then
    log "starting PostgreSQL $ver"
    pg_ctlcluster "$ver" main start
fi
port="$(pg_lsclusters -h | awk -v v="$ver" '$1 == v && $2 == "main" {print $3}')"
if [ "$port" != 5432 ]; then
    log "PostgreSQL $ver main listens on $port, expected 5432"
    exit 1
fi
wait_port 127.0.0.1 5432 PostgreSQL
psql_su() { su postgres -c "psql -v ON_ERROR_STOP=1 -qtA -c \"$1\""; }
if [ "$(psql_su "SELECT 1 FROM pg_roles WHERE rolname = '$user'")" != 1 ]; then
    psql_su "CREATE ROLE $user LOGIN CREATEDB PASSWORD '$pass'"
else
    psql_su "ALTER ROLE $user LOGIN CREATEDB PASSWORD '$pass'"
fi
if [ "$(psql_su "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]; then
    psql_su "CREATE DATABASE $db OWNER $user"
fi

# ---- MariaDB ----
install -d -o mysql -g mysql -m 0755 /run/mysqld
if [ ! -d /var/lib/mysql/mysql ]; then
    log "initialising the MariaDB data directory"
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/3306) 2>/dev/null; then
    log "starting MariaDB"
    start-stop-daemon --start --background --oknodo --exec /usr/sbin/mariadbd -- --user=mysql
fi
wait_port 127.0.0.1 3306 MariaDB
for _ in $(seq 1 60); do
    mariadb -uroot -e 'SELECT 1' >/dev/null 2>&1 && break
    sleep 0.5
done
mariadb -uroot <<SQL
CREATE USER IF NOT EXISTS '$user'@'localhost' IDENTIFIED BY '$pass';
CREATE USER IF NOT EXISTS '$user'@'127.0.0.1' IDENTIFIED BY '$pass';
ALTER USER '$user'@'localhost' IDENTIFIED BY '$pass';
ALTER USER '$user'@'127.0.0.1' IDENTIFIED BY '$pass';
GRANT ALL PRIVILEGES ON *.* TO '$user'@'localhost';
GRANT ALL PRIVILEGES ON *.* TO '$user'@'127.0.0.1';
CREATE DATABASE IF NOT EXISTS $db;
FLUSH PRIVILEGES;
SQL

cat > "$here/test-env.sh" <<ENV
export AM_TEST_PG_URL=postgres://$user:$pass@127.0.0.1:5432/$db
export AM_TEST_MYSQL_URL=mysql://$user:$pass@127.0.0.1:3306/$db
ENV
cat "$here/test-env.sh"
log "PostgreSQL $ver and MariaDB are up; source .ci/test-env.sh"
