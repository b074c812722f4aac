#!/usr/bin/env bash
# Benchmark: memory of the per-container shim with idle containers. Runs COUNT detached
# `sleep 100000` busybox containers on berthd, then on containerd (each on its own temp root),
# finds each container's shim and reads its PSS and RSS (/proc/<pid>/smaps_rollup) and thread
# count (/proc/<pid>/status). Prints the per-shim means for both and the PSS ratio
# berth-shim / containerd-shim-runc-v2 (target <= 0.25).
#
#   bench/shim-memory.sh [COUNT] [SETTLE_SECONDS]   (as root; defaults 20 and 3; builds first)
#
# A shim is found from its task: the parent of the task's pid (`ctr tasks ls`) is the shim,
# as both shims are the subreaper of their container. For berthd that pid is checked against
# <state>/tasks/<ns>/<id>/shim.pid, for containerd against a containerd-shim-runc-v2 whose
# command line names this run's namespace and daemon address.
set -euo pipefail
shopt -s inherit_errexit
export LC_ALL=C
source "$(dirname "$0")/lib.sh"
COUNT=${1:-20}
SETTLE=${2:-3}

build_task_binaries
WORK=$BENCH_TMP/shim-memory.$$
NS=$(unique_namespace)
CURRENT=""

cleanup() {
  set +e
  [ -n "$CURRENT" ] && teardown "$CURRENT" "$WORK/$CURRENT" "$NS" "$DAEMON_PID"
  remove_namespace_leftovers "$NS"
  rm -rf "$WORK"
}
trap cleanup EXIT
trap "exit 130" INT TERM
mkdir -p "$WORK"
"$REPO/target/release/berth-mkimage" busybox "$WORK/busybox.tar" localhost/busybox:latest >/dev/null

# ppid_of PID: the parent pid of PID from /proc/PID/stat (the field after the parenthesised name).
ppid_of() { sed 's/.*) //' "/proc/$1/stat" | cut -d' ' -f2; }

# shim_pid_checked DAEMON DIR ID SHIM: fails unless SHIM is the shim the daemon's own records
# name for container ID.
shim_pid_checked() {
  local daemon=$1 dir=$2 id=$3 shim=$4 cmdline
  if [ "$daemon" = berthd ]; then
    local recorded
    recorded=$(cat "$dir/state/tasks/$NS/$id/shim.pid")
    [ "$recorded" = "$shim" ] || { echo "berthd $id: shim.pid says $recorded, task's parent is $shim" >&2; return 1; }
  else
    cmdline=$(tr '\0' ' ' <"/proc/$shim/cmdline")
    case "$cmdline" in
      *containerd-shim-runc-v2*"-namespace $NS "*"-address $dir/containerd.sock"*) ;;
      *) echo "containerd $id: parent $shim is not this run's shim: $cmdline" >&2; return 1 ;;
    esac
  fi
}

# measure DAEMON: COUNT idle containers on a fresh DAEMON; prints one "pss_kib rss_kib threads"
# line per shim into $WORK/DAEMON.mem, then removes everything.
measure() {
  local daemon=$1 dir=$WORK/$1 id pid status shim
  CURRENT=$daemon
  "start_$daemon" "$dir"
  ctr --address "$SOCK" -n "$NS" images import "$WORK/busybox.tar" >/dev/null
  run_idle_containers "$SOCK" "$NS" "$WORK/fifo" "$COUNT" idle-
  sleep "$SETTLE"
  : >"$WORK/$daemon.mem"
  while read -r id pid status; do
    [ "$status" = RUNNING ] || { echo "$daemon $id is $status" >&2; return 1; }
    shim=$(ppid_of "$pid")
    shim_pid_checked "$daemon" "$dir" "$id" "$shim"
    awk '/^Pss:/ { pss = $2 } /^Rss:/ { rss = $2 } END { printf "%s %s ", pss, rss }' "/proc/$shim/smaps_rollup" >>"$WORK/$daemon.mem"
    awk '/^Threads:/ { print $2 }' "/proc/$shim/status" >>"$WORK/$daemon.mem"
  done < <(task_table "$SOCK" "$NS")
  local found
  found=$(wc -l <"$WORK/$daemon.mem")
  [ "$found" -eq "$COUNT" ] || { echo "$daemon: $found shims measured, expected $COUNT" >&2; return 1; }
  remove_all_tasks "$SOCK" "$NS"
  stop_daemon "$dir"
  CURRENT=""
}

declare -A PSS=()
for daemon in berthd containerd; do
  measure "$daemon"
  read -r pss rss threads < <(awk '{ p += $1; r += $2; t += $3 } END { printf "%.0f %.0f %.1f\n", p / NR, r / NR, t / NR }' "$WORK/$daemon.mem")
  PSS[$daemon]=$pss
  read -r pmin pmax < <(awk 'NR == 1 { lo = $1; hi = $1 } { if ($1 < lo) lo = $1; if ($1 > hi) hi = $1 } END { print lo, hi }' "$WORK/$daemon.mem")
  printf '%-10s %d shims: mean PSS %6d KiB (min %d, max %d)   mean RSS %6d KiB   threads %s\n' \
    "$daemon" "$COUNT" "$pss" "$pmin" "$pmax" "$rss" "$threads"
done
echo "shim memory: PSS ratio berth-shim/containerd-shim-runc-v2 $(ratio "${PSS[berthd]}" "${PSS[containerd]}") (target <= 0.25)"
