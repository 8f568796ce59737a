#!/usr/bin/env bash
# Prepares what the Docker tests (tests/docker_local.rs, tests/docker_images.rs) need on a machine
# whose Docker engine has no images and cannot reach any registry. Idempotent and cached: an
# image that exists already is not made again, a registry that answers is not restarted.
#
#   am-test/busybox          busybox-static in an empty rootfs (fast task containers)
#   am-test/debian:bookworm  debootstrap --variant=minbase bookworm, with the host's CA bundle
#   am-test/python:bookworm  am-test/debian plus python3: stands in for apache/airflow when
#                            the Dockerfile's airflow target is built in tests
#   am-test/rust:bookworm    only with --rust: am-test/debian plus gcc and the host's Rust
#                            toolchain, to run the full multi-stage build of docker/Dockerfile
#   registry on 127.0.0.1:5000 (Debian's docker-registry, htpasswd auth, plain http; dockerd
#                            treats 127.0.0.0/8 as an insecure registry by default)
#
# The registry credentials are fixed test values on loopback, not secrets. The variables the
# tests read are printed at the end and written to .ci/test-env-docker.sh (source it):
#   AM_TEST_BUSYBOX, AM_TEST_BASE_IMAGE, AM_TEST_PYTHON_IMAGE, AM_TEST_REGISTRY, AM_TEST_REGISTRY_USER,
#   AM_TEST_REGISTRY_PASSWORD
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
want_rust=0
[ "${1:-}" = "--rust" ] && want_rust=1

busybox_image=am-test/busybox
debian_image=am-test/debian:bookworm
rust_image=am-test/rust:bookworm
python_image=am-test/python:bookworm
reg_addr=127.0.0.1
reg_port=5000
reg_user=amtest
reg_pass=amtest-registry-pw
reg_dir=/var/lib/am-test-registry

log() { echo "setup-docker: $*" >&2; }

wait_port() { # host port name
    for _ in $(seq 1 120); do
        if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
        sleep 0.5
    done
    log "$3 did not open $1:$2 within 60 s"
    return 1
}

has_image() { docker image inspect "$1" >/dev/null 2>&1; }

# apt must not see the host's Python/requests CA overrides (they point at files that may not
# exist inside a chroot) nor pip settings.
clean_env() {
    env -u REQUESTS_CA_BUNDLE -u PIP_CERT -u PIP_FIND_LINKS -u PIP_DEFAULT_TIMEOUT \
        -u PIP_DISABLE_PIP_VERSION_CHECK -u CURL_CA_BUNDLE -u SSL_CERT_FILE -u SSL_CERT_DIR \
        DEBIAN_FRONTEND=noninteractive "$@"
}

export DEBIAN_FRONTEND=noninteractive
if ! docker info >/dev/null 2>&1; then
    log "the Docker engine does not answer (docker info failed); start dockerd first"
    exit 1
fi
need=()
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
[ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || need+=(busybox-static)
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || need+=(apache2-utils)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    clean_env apt-get update -qq
    clean_env apt-get install -y -qq "${need[@]}" >/dev/null
fi
# busybox-static installs a static /bin/busybox (the image has no libc).
busybox_bin=/bin/busybox
[ -x "$busybox_bin" ] || busybox_bin="$(command -v busybox)"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# ---- am-test/busybox ----
if has_image "$busybox_image"; then
    log "$busybox_image exists"
else
    log "making $busybox_image"
    root="$tmp/busybox"
    mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/mnt/mesos/sandbox"
    cp "$busybox_bin" "$root/bin/busybox"
    for applet in $("$root/bin/busybox" --list); do
        [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
    done
    chmod 1777 "$root/tmp"
    echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
    echo 'nobody:x:65534:65534:nobody:/:/bin/sh' >>"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
    tar -C "$root" -c . | docker import \
        -c 'ENV PATH=/bin' -c 'CMD ["/bin/sh"]' - "$busybox_image" >/dev/null
fi

# ---- am-test/debian:bookworm ----
if has_image "$debian_image"; then
    log "$debian_image exists"
else
    log "making $debian_image with debootstrap (a few minutes)"
    root="$tmp/debian"
    clean_env debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >"$tmp/debootstrap.log" 2>&1 || {
        tail -n 30 "$tmp/debootstrap.log" >&2
        exit 1
    }
    mkdir -p "$root/etc/ssl/certs"
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
    tar -C "$root" -c . | docker import \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'CMD ["bash"]' - "$debian_image" >/dev/null
fi

# ---- am-test/python:bookworm ----
if has_image "$python_image"; then
    log "$python_image exists"
else
    log "making $python_image"
    ctx="$tmp/python"
    mkdir -p "$ctx"
    printf '%s\n' "FROM $debian_image" \
        'RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends python3 && rm -rf /var/lib/apt/lists/*' \
        >"$ctx/Dockerfile"
    docker build -q -t "$python_image" "$ctx" >/dev/null
fi

# ---- am-test/rust:bookworm (optional: the full multi-stage build) ----
if [ "$want_rust" = 1 ]; then
    if has_image "$rust_image"; then
        log "$rust_image exists"
    else
        toolchain="$(rustc --print sysroot)"
        log "making $rust_image from $debian_image + gcc + $toolchain"
        ctx="$tmp/rust"
        mkdir -p "$ctx"
        cp -a "$toolchain" "$ctx/toolchain"
        cat >"$ctx/Dockerfile" <<EOF
FROM $debian_image
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends gcc libc6-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
COPY toolchain /usr/local/rust
ENV PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    CARGO_HOME=/usr/local/cargo
EOF
        docker build -q -t "$rust_image" "$ctx" >/dev/null
    fi
fi

# ---- registry with htpasswd auth on 127.0.0.1:5000 ----
if (exec 3<>"/dev/tcp/$reg_addr/$reg_port") 2>/dev/null; then
    log "a registry already listens on $reg_addr:$reg_port"
else
    log "starting docker-registry on $reg_addr:$reg_port"
    mkdir -p "$reg_dir/data"
    htpasswd -Bbc "$reg_dir/htpasswd" "$reg_user" "$reg_pass" >/dev/null 2>&1
    cat >"$reg_dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $reg_dir/data
  delete:
    enabled: true
http:
  addr: $reg_addr:$reg_port
auth:
  htpasswd:
    realm: am-test-registry
    path: $reg_dir/htpasswd
EOF
    nohup docker-registry serve "$reg_dir/config.yml" >"$reg_dir/registry.log" 2>&1 &
    wait_port "$reg_addr" "$reg_port" docker-registry
fi

cat >"$here/test-env-docker.sh" <<EOF
export AM_TEST_BUSYBOX=$busybox_image
export AM_TEST_BASE_IMAGE=$debian_image
export AM_TEST_PYTHON_IMAGE=$python_image
export AM_TEST_REGISTRY=$reg_addr:$reg_port
export AM_TEST_REGISTRY_USER=$reg_user
export AM_TEST_REGISTRY_PASSWORD=$reg_pass
EOF
[ "$want_rust" = 1 ] && echo "export AM_TEST_RUST_IMAGE=$rust_image" >>"$here/test-env-docker.sh"
cat "$here/test-env-docker.sh"
