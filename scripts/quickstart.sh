#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, build Berth, start berthd,
# build a busybox image from the host's busybox-static and import it with Debian's ctr.
# berthd keeps running afterwards; the script prints how to reach and stop it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -p berthd -p berth-tests --bins

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
ctr --address "$sock" snapshots ls
cat <<MSG

berthd is running (pid $(cat "$demo/berthd.pid"), log $demo/berthd.log).
Talk to it with:  ctr --address $sock <command>
Stop it with:     kill $(cat "$demo/berthd.pid")
MSG
