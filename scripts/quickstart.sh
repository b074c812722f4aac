#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, build Berth, start berthd,
# build a busybox image from the host's busybox-static, import it with berthctl and run a
# container from it with `berthctl run --rm`. berthd keeps running afterwards; the script
# prints how to reach and stop it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "berthd needs root (mounts, namespaces): run this as root" >&2; exit 1; }
scripts/install-deps.sh
# Built one by one: berthd must not be built with the shim's runc-driving half.
cargo build --release -p berthd
cargo build --release -p berth-shim
cargo build --release -p berthctl
cargo build --release -p berth-tests --bins

demo=${BERTH_DEMO_DIR:-/tmp/berth-demo}
sock=$demo/berthd.sock
berthctl=$PWD/target/release/berthctl
export BERTH_ADDRESS=$sock
mkdir -p "$demo"
if ! "$berthctl" version >/dev/null 2>&1; then
  target/release/berthd --root "$demo/root" --state "$demo/state" --address "$sock" \
    >"$demo/berthd.log" 2>&1 &
  echo $! >"$demo/berthd.pid"
  for _ in $(seq 100); do "$berthctl" version >/dev/null 2>&1 && break; sleep 0.1; done
  "$berthctl" version >/dev/null 2>&1 || { cat "$demo/berthd.log" >&2; exit 1; }
fi

target/release/berth-mkimage busybox "$demo/busybox.tar" localhost/busybox:latest
"$berthctl" images import "$demo/busybox.tar"
"$berthctl" images ls
"$berthctl" run --rm localhost/busybox:latest "hello-$$" echo hello from a berth container
cat <<MSG

berthd is running (pid $(cat "$demo/berthd.pid" 2>/dev/null || echo "?"), log $demo/berthd.log).
Talk to it with:  $berthctl --address $sock <command>
            or:   ctr --address $sock <command>
Stop it with:     kill $(cat "$demo/berthd.pid" 2>/dev/null || echo "<pid>")
MSG
