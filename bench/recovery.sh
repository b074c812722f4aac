#!/usr/bin/env bash
# Benchmark: recovery after the daemon is killed. Runs COUNT detached `sleep 100000` busybox
# containers on a daemon, kill -9s it, starts it again on the same root and state, and times
# from that start until `ctr tasks ls` shows all COUNT RUNNING (polled every 10 ms). Done for
# berthd and containerd side by side (each on its own temp root, the order alternating between
# rounds); prints each time, whether the pids survived unchanged, and the ratio
# berthd/containerd of the medians (target <= 0.5).
#
#   bench/recovery.sh [COUNT] [ROUNDS]   (as root; defaults 100 and 1; builds first)
set -euo pipefail
shopt -s inherit_errexit
export LC_ALL=C
source "$(dirname "$0")/lib.sh"
COUNT=${1:-100}
ROUNDS=${2:-1}
RECOVERY_TIMEOUT_S=120

build_task_binaries
WORK=$BENCH_TMP/recovery.$$
NS=$(unique_namespace)
CURRENT=""

cleanup() {
  set +e
  [ -n "$CURRENT" ] && teardown "${CURRENT%%.*}" "$WORK/$CURRENT" "$NS" "$DAEMON_PID"
  remove_namespace_leftovers "$NS"
  rm -rf "$WORK"
}
trap cleanup EXIT
trap "exit 130" INT TERM
mkdir -p "$WORK"
"$REPO/target/release/berth-mkimage" busybox "$WORK/busybox.tar" localhost/busybox:latest >/dev/null

# recover_once DAEMON ROUND: one kill -9 and restart of a fresh DAEMON holding COUNT running
# containers; sets RECOVERY_MS to the milliseconds from the restart until all COUNT are listed
# RUNNING and PIDS_KEPT to "same" or "CHANGED".
recover_once() {
  local daemon=$1 round=$2 dir
  CURRENT=$daemon.$round
  dir=$WORK/$CURRENT
  "start_$daemon" "$dir"
  ctr --address "$SOCK" -n "$NS" images import "$WORK/busybox.tar" >/dev/null
  run_idle_containers "$SOCK" "$NS" "$WORK/fifo" "$COUNT" "rec-$round-"
  local running
  running=$(running_count "$SOCK" "$NS")
  [ "$running" -eq "$COUNT" ] || { echo "$daemon: only $running of $COUNT running before the kill" >&2; return 1; }
  task_table "$SOCK" "$NS" | sort >"$WORK/before"

  kill -9 "$DAEMON_PID"
  wait "$DAEMON_PID" 2>/dev/null || true
  local t0 t1 deadline
  t0=$EPOCHREALTIME
  "launch_$daemon" "$dir"
  deadline=$((EPOCHSECONDS + RECOVERY_TIMEOUT_S))
  until [ "$(running_count "$SOCK" "$NS")" -eq "$COUNT" ]; do
    if ! kill -0 "$DAEMON_PID" 2>/dev/null || [ "$EPOCHSECONDS" -ge "$deadline" ]; then
      echo "$daemon: not all $COUNT tasks RUNNING after the restart; it lists:" >&2
      task_table "$SOCK" "$NS" | awk '{ print $3 }' | sort | uniq -c >&2
      tail -5 "$dir/daemon.log" >&2
      return 1
    fi
    sleep 0.01
  done
  t1=$EPOCHREALTIME
  task_table "$SOCK" "$NS" | sort >"$WORK/after"
  if cmp -s "$WORK/before" "$WORK/after"; then PIDS_KEPT=same; else PIDS_KEPT=CHANGED; fi

  remove_all_tasks "$SOCK" "$NS"
  stop_daemon "$dir"
  CURRENT=""
  RECOVERY_MS=$(ms_between "$t0" "$t1")
}

for r in $(seq "$ROUNDS"); do
  if ((r % 2)); then order="containerd berthd"; else order="berthd containerd"; fi
  for daemon in $order; do
    recover_once "$daemon" "$r"
    echo "$RECOVERY_MS" >>"$WORK/$daemon.ms"
    printf 'round %d %-10s all %d RUNNING %8.1f ms after the restart (pids %s)\n' \
      "$r" "$daemon" "$COUNT" "$RECOVERY_MS" "$PIDS_KEPT"
  done
done
b=$(median <"$WORK/berthd.ms")
c=$(median <"$WORK/containerd.ms")
printf 'recovery of %d running tasks (median of %d): berthd %.1f ms, containerd %.1f ms, ratio berthd/containerd %s (target <= 0.5)\n' \
  "$COUNT" "$ROUNDS" "$b" "$c" "$(ratio "$b" "$c")"
