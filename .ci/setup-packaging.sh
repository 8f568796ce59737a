#!/usr/bin/env bash
# Prepares what the Debian package and its test (tests/package_deb.rs) need:
#   cargo-deb                   `cargo install cargo-deb --locked` (a few minutes the first time;
#                               kept in ~/.cargo/bin afterwards)
#   am-test/debian-systemd:bookworm  am-test/debian (.ci/setup-docker.sh) plus systemd,
#                               adduser and man-db, to install the package into and run
#                               `systemd-analyze verify` on its unit (which opens the unit's
#                               Documentation= man page); made once, then cached
# Writes AM_TEST_DEB_IMAGE to .ci/test-env-packaging.sh (sourced by .ci/run). The package
# itself is built after the code by .ci/run (packaging/deb/build.sh).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cargo_deb_version=3.8.0
base_image=am-test/debian:bookworm
image=am-test/debian-systemd:bookworm
log() { echo "setup-packaging: $*" >&2; }

if cargo deb --version 2>/dev/null | grep -q "$cargo_deb_version"; then
    log "cargo-deb $cargo_deb_version is installed"
else
    log "installing cargo-deb $cargo_deb_version (a few minutes)"
    cargo install --quiet --locked --version "$cargo_deb_version" cargo-deb
fi

if docker image inspect "$image" >/dev/null 2>&1 \
    && docker run --rm --network none "$image" sh -c 'command -v man && command -v systemd-analyze && command -v adduser' >/dev/null 2>&1; then
    log "$image exists"
else
    docker image inspect "$base_image" >/dev/null 2>&1 || {
        log "$base_image is missing: run .ci/setup-docker.sh first"
        exit 1
    }
    log "making $image"
    ctx="$(mktemp -d)"
    trap 'rm -rf "$ctx"' EXIT
    printf '%s\n' "FROM $base_image" \
        'RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd adduser man-db && rm -rf /var/lib/apt/lists/*' \
        >"$ctx/Dockerfile"
    docker build -q -t "$image" "$ctx" >/dev/null
fi

echo "export AM_TEST_DEB_IMAGE=$image" >"$here/test-env-packaging.sh"
cat "$here/test-env-packaging.sh"
