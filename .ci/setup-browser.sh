#!/usr/bin/env bash
# Installs what the browser test (tests/web_browser.rs) needs: Debian's headless Chromium and
# its WebDriver server, chromium-driver. Idempotent: nothing is installed when both are there.
# The test starts chromedriver itself; it reads AM_TEST_CHROMEDRIVER and AM_TEST_CHROMIUM,
# which this script writes to .ci/test-env-browser.sh (sourced by .ci/run).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { echo "setup-browser: $*" >&2; }

if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
    log "installing chromium and chromium-driver"
    apt-get update -qq >/dev/null
    # --no-install-recommends: no fonts beyond the dependencies, no desktop integration (about
    # half the download).
    env -u REQUESTS_CA_BUNDLE -u PIP_CERT -u CURL_CA_BUNDLE -u SSL_CERT_FILE -u SSL_CERT_DIR \
        DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
else
    log "chromium and chromedriver are installed"
fi

cat >"$here/test-env-browser.sh" <<EOF
export AM_TEST_CHROMEDRIVER=$(command -v chromedriver)
export AM_TEST_CHROMIUM=$(command -v chromium)
EOF
cat "$here/test-env-browser.sh"
