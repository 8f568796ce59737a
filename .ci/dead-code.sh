#!/usr/bin/env bash
# Dead code that `pub` would hide: builds the library with every module private except what
# the binary uses (cli, commands, config), so rustc reports what nothing in the product reaches.
# An item it reports is allowed only when the integration tests or benches name it (the public
# API they drive); anything else must be used, made `#[cfg(test)]`, or deleted.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
backup="$(mktemp)"
cp src/lib.rs "$backup"
trap 'cp "$backup" src/lib.rs; rm -f "$backup"' EXIT
sed -i -E 's/^pub mod (api|client|cluster|docker|driver|leader|mesos|onetime|registry|scheduler|store|task|token|web);/mod \1;/' src/lib.rs
cargo check --lib --locked --message-format json 2>/dev/null | python3 -c '
import json, re, subprocess, sys
names = set()
for path in ("tests", "benches"):
    out = subprocess.run(["grep", "-rhoE", r"[A-Za-z_][A-Za-z0-9_]*", path], capture_output=True, text=True).stdout
    names.update(out.split())
bad = []
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") != "compiler-message" or m["message"]["level"] != "warning":
        continue
    msg = m["message"]
    span = msg["spans"][0]
    if "/out/" in span["file_name"]:
        continue  # generated protobuf code
    items = re.findall(r"`([^`]+)`", msg["message"])
    unknown = [i for i in items if i.split("::")[-1] not in names]
    if unknown:
        bad.append("%s:%d: %s" % (span["file_name"], span["line_start"], msg["message"]))
if bad:
    print("dead code (not reached by the binary, not named by tests/ or benches/):")
    print("\n".join(bad))
    sys.exit(1)
print("dead-code check: nothing unreached")
'
