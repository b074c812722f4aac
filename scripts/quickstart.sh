#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, build Berth, start berthd,
# build a busybox image from the host's busybox-static, import it with Debian's ctr and
# run a container from it. berthd keeps running afterwards; the script prints how to
# reach and stop it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# Built one by one: berthd must not be built with the shim's runc-driving half.
cargo build --release -p berthd
cargo build --release -p berth-shim
cargo build --release -p berth-tests --bins

demo=${BERTH_DEMO_DIR:-/tmp/berth-demo}
sock=$demo/berthd.sock
mkdir -p "$demo"
if ! ctr --address "$sock" version >/dev/null 2>&1; then
  target/release/berthd --root "$demo/root" --state "$demo/state" --address "$sock" \
    >"$demo/berthd.log" 2>&1 &
  echo $! >"$demo/berthd.pid"
  for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
  [ -S "$sock" ] || { cat "$demo/berthd.log" >&2; exit 1; }
fi

target/release/berth-mkimage busybox "$demo/busybox.tar" localhost/busybox:latest
ctr --address "$sock" images import "$demo/busybox.tar"
ctr --address "$sock" images ls
ctr --address "$sock" run --rm localhost/busybox:latest "hello-$$" echo hello from a berth container
cat <<MSG

berthd is running (pid $(cat "$demo/berthd.pid"), log $demo/berthd.log).
Talk to it with:  ctr --address $sock <command>
Stop it with:     kill $(cat "$demo/berthd.pid")
MSG
