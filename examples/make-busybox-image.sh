#!/usr/bin/env bash
# Makes a tiny local image NAME (default am-local/busybox) from Debian's busybox-static, for
# machines whose Docker engine cannot pull from a registry. Does nothing if NAME exists.
set -euo pipefail
name="${1:-am-local/busybox}"
if docker image inspect "$name" >/dev/null 2>&1; then
    exit 0
fi
bin=/bin/busybox
if [ ! -x "$bin" ]; then
    echo "installing busybox-static (needs apt-get)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
fi
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/mnt/mesos/sandbox"
cp "$bin" "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done
chmod 1777 "$root/tmp"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
echo "making image $name" >&2
tar -C "$root" -c . | docker import -c 'ENV PATH=/bin' -c 'CMD ["/bin/sh"]' - "$name" >/dev/null
