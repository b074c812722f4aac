#!/usr/bin/env bash
# Benchmark: start latency of `run --rm localhost/busybox:latest <id> true`: Debian's ctr
# against berthd and against containerd, and berthctl against berthd, side by side, each
# daemon on its own temp root with the busybox image imported, with a bare `runc run` of an
# equivalent bundle (the same image's rootfs, `runc spec`'s config running `true`) as the
# floor. Prints the median and p90 of each, each one's overhead beyond bare runc, and the
# ratios of berth's overhead to containerd's (target <= 0.5): berth with the same client
# (ctr), and berth as shipped (berthctl) against containerd as shipped (ctr).
#
#   bench/start-latency.sh [ROUNDS]        (as root; default 20 rounds; builds in release mode)
#
# Each start gets a quiet machine: after it, the script waits SETTLE seconds (default 0.3)
# before the next one. Both daemons finish work after their client is gone (berthd's shim
# exit and runc delete, containerd's shim exit and garbage collection); without the pause
# that work is timed as part of whichever start comes next, on this 2-core machine mostly
# to the benefit of the daemon that defers more.
#
# Each round runs all three once, rotating which goes first, so the noise of a shared machine
# falls on all three alike (hyperfine would run each command's rounds back to back, and every
# `ctr run` needs a container id of its own). One untimed warm-up round comes first.
set -euo pipefail
shopt -s inherit_errexit
export LC_ALL=C
source "$(dirname "$0")/lib.sh"
ROUNDS=${1:-20}
SETTLE=${SETTLE:-0.3}

build_task_binaries
WORK=$BENCH_TMP/start-latency.$$
NS=$(unique_namespace)
declare -A PIDS=()

cleanup() {
  local d
  set +e
  for d in berthd containerd; do
    [ -n "${PIDS[$d]:-}" ] && teardown "$d" "$WORK/$d" "$NS" "${PIDS[$d]}"
  done
  for d in $(runc --root "$WORK/runc-root" list -q 2>/dev/null); do
    runc --root "$WORK/runc-root" delete --force "$d" >/dev/null 2>&1 || true
  done
  remove_namespace_leftovers "$NS"
  rm -rf "$WORK"
}
trap cleanup EXIT
trap "exit 130" INT TERM
mkdir -p "$WORK"

"$REPO/target/release/berth-mkimage" busybox "$WORK/busybox.tar" localhost/busybox:latest >/dev/null
runc_bundle_from_archive "$WORK/busybox.tar" "$WORK/bundle"
declare -A SOCKS=()
for d in berthd containerd; do
  "start_$d" "$WORK/$d"
  PIDS[$d]=$DAEMON_PID
  SOCKS[$d]=$SOCK
  ctr --address "$SOCK" -n "$NS" images import "$WORK/busybox.tar" >/dev/null
done

# start_once WHO ROUND: runs one start of WHO to completion; prints its wall time in ms.
start_once() {
  local who=$1 round=$2 t0 t1
  if [ "$who" = runc ]; then
    t0=$EPOCHREALTIME
    runc --root "$WORK/runc-root" run --bundle "$WORK/bundle" "bare-$$-$round" >/dev/null </dev/null
    t1=$EPOCHREALTIME
  elif [ "$who" = berthctl ]; then
    t0=$EPOCHREALTIME
    "$REPO/target/release/berthctl" --address "${SOCKS[berthd]}" -n "$NS" run --rm localhost/busybox:latest "latb-$round" true >/dev/null </dev/null
    t1=$EPOCHREALTIME
  else
    t0=$EPOCHREALTIME
    ctr --address "${SOCKS[$who]}" -n "$NS" run --rm localhost/busybox:latest "lat-$round" true >/dev/null </dev/null
    t1=$EPOCHREALTIME
  fi
  ms_between "$t0" "$t1"
}

ALL="runc berthd berthctl containerd"
for who in $ALL; do start_once "$who" warmup >/dev/null; done

ORDERS=("runc berthd berthctl containerd" "berthd berthctl containerd runc"
  "berthctl containerd runc berthd" "containerd runc berthd berthctl")
for r in $(seq "$ROUNDS"); do
  for who in ${ORDERS[$((r % 4))]}; do
    ms=$(start_once "$who" "$r")
    sleep "$SETTLE"
    echo "$ms" >>"$WORK/$who.ms"
    printf 'round %2d %-10s %8.1f ms\n' "$r" "$who" "$ms"
  done
done

declare -A MED=() P90=()
for who in $ALL; do
  MED[$who]=$(median <"$WORK/$who.ms")
  P90[$who]=$(percentile 90 <"$WORK/$who.ms")
  printf '%-10s median %7.1f ms   p90 %7.1f ms   (%d rounds)\n' "$who" "${MED[$who]}" "${P90[$who]}" "$ROUNDS"
done
printf '(berthd = ctr against berthd; berthctl = berthctl against berthd)\n'
bc_over=$(awk -v a="${MED[berthctl]}" -v b="${MED[runc]}" 'BEGIN { printf "%.1f", a - b }')
bc_over90=$(awk -v a="${P90[berthctl]}" -v b="${P90[runc]}" 'BEGIN { printf "%.1f", a - b }')
b_over=$(awk -v a="${MED[berthd]}" -v b="${MED[runc]}" 'BEGIN { printf "%.1f", a - b }')
c_over=$(awk -v a="${MED[containerd]}" -v b="${MED[runc]}" 'BEGIN { printf "%.1f", a - b }')
b_over90=$(awk -v a="${P90[berthd]}" -v b="${P90[runc]}" 'BEGIN { printf "%.1f", a - b }')
c_over90=$(awk -v a="${P90[containerd]}" -v b="${P90[runc]}" 'BEGIN { printf "%.1f", a - b }')
echo "overhead beyond bare runc (median): berthd $b_over ms, containerd $c_over ms"
echo "overhead beyond bare runc (p90):    berthd $b_over90 ms, containerd $c_over90 ms"
echo "overhead beyond bare runc, berthctl: $bc_over ms (median), $bc_over90 ms (p90)"
echo "start latency, same client (ctr): overhead ratio berthd/containerd $(ratio "$b_over" "$c_over") (median), $(ratio "$b_over90" "$c_over90") (p90) (target <= 0.5)"
echo "start latency, as shipped (berthctl vs ctr): overhead ratio $(ratio "$bc_over" "$c_over") (median), $(ratio "$bc_over90" "$c_over90") (p90) (target <= 0.5)"
