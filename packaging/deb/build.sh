#!/usr/bin/env bash
# Builds the Debian package: target/debian/airflow-mesos_<version>-1_<arch>.deb.
#
#   bash packaging/deb/build.sh               release build (what to ship)
#   bash packaging/deb/build.sh --profile dev the debug build `cargo test` already made (CI: the
#                                             package's contents and install are tested, not
#                                             the optimizer; saves a release build)
#
# Needs cargo-deb (`cargo install cargo-deb --locked`; .ci/setup-packaging.sh installs it).
# The man pages and shell completions are made by the binary itself (`airflow-mesos
# generate`), from the same clap definitions as `--help`, into target/deb-assets/.
# Prints the path of the package on its last line.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

profile=release
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile="$2"; shift 2 ;;
        *) echo "usage: $0 [--profile release|dev]" >&2; exit 2 ;;
    esac
done
case "$profile" in
    dev) dir=debug ;;
    *) dir="$profile" ;;
esac

command -v cargo-deb >/dev/null || { echo "build.sh: cargo-deb is not installed (cargo install cargo-deb --locked)" >&2; exit 1; }

cargo build --locked --profile "$profile" --bin airflow-mesos >&2
bin="target/$dir/airflow-mesos"
assets=target/deb-assets
rm -rf "$assets"
mkdir -p "$assets/completions"
"$bin" generate man --out-dir "$assets/man"
"$bin" generate bash >"$assets/completions/airflow-mesos.bash"
"$bin" generate zsh >"$assets/completions/_airflow-mesos"
"$bin" generate fish >"$assets/completions/airflow-mesos.fish"

# --no-build: the binary above; cargo-deb maps the target/release/ asset to the profile's dir.
cargo deb --no-build --locked --profile "$profile" --output target/debian/ >&2
ls -t target/debian/airflow-mesos_*.deb | head -n1
