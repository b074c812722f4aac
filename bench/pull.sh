#!/usr/bin/env bash
# Benchmark: pull + unpack (into overlayfs) of large images from a local registry,
# `berthctl images pull` against berthd vs Debian's `ctr images pull --plain-http`
# against containerd, side by side in the same run and from the same registry. Each
# round starts both daemons on fresh roots and alternates who goes first; `sync` is part
# of every timing. Prints per-round times, medians and the ratio berthctl/ctr
# (target <= 0.70).
#
#   bench/pull.sh [ROUNDS]        (as root; default 3 rounds; builds in release mode)
#
# The images: the Debian minbase image of bench/import.sh (one layer), and a layered
# image of minbase plus three layers made of the host's /usr/share/locale,
# /usr/lib/python3* and /usr/include. Both are made once and cached in $BENCH_CACHE
# (default /var/cache/berth-bench); the registry is Debian's docker-registry on
# 127.0.0.1, filled with skopeo. BENCH_NO_BUILD=1 uses the release binaries already built.
set -euo pipefail
shopt -s inherit_errexit
export LC_ALL=C
source "$(dirname "$0")/lib.sh"
ROUNDS=${1:-3}
BENCH_CACHE=${BENCH_CACHE:-/var/cache/berth-bench}

[ "$(id -u)" = 0 ] || { echo "bench/pull.sh needs root (daemons, overlayfs mounts)" >&2; exit 1; }
if [ -z "${BENCH_NO_BUILD:-}" ]; then
  # berthd is built on its own, so it is linked without the shim's runtime half.
  (cd "$REPO" && cargo build --release -q -p berthd && cargo build --release -q -p berthctl)
fi

WORK=$BENCH_TMP/pull.$$
DAEMON_DIR=
cleanup() {
  set +e
  [ -z "$DAEMON_DIR" ] || stop_daemon "$DAEMON_DIR"
  stop_registry
  rm -rf "$WORK"
}
trap cleanup EXIT
trap "exit 130" INT TERM
mkdir -p "$WORK" "$BENCH_CACHE"

# The images.
ensure_minbase_archive
if [ ! -f "$BENCH_CACHE/layered.tar" ]; then
  layer_from_host_dirs "$BENCH_CACHE/layer-locale.tar.gz" /usr/share/locale
  layer_from_host_dirs "$BENCH_CACHE/layer-python.tar.gz" /usr/lib/python3*
  layer_from_host_dirs "$BENCH_CACHE/layer-include.tar.gz" /usr/include
  oci_archive_from_layers localhost/layered:latest "$BENCH_CACHE/layered.tar" \
    "$BENCH_CACHE/minbase-layer.tar.gz" "$BENCH_CACHE/layer-locale.tar.gz" \
    "$BENCH_CACHE/layer-python.tar.gz" "$BENCH_CACHE/layer-include.tar.gz"
fi

start_registry "$WORK/registry"
declare -A LAYERS=()
for image in minbase layered; do
  push_archive_to_registry "$BENCH_CACHE/$image.tar" "bench/$image:latest"
  manifest=$(tar -xOf "$BENCH_CACHE/$image.tar" index.json | jq -r '.manifests[0].digest | sub("sha256:"; "")')
  manifest_json=$(tar -xOf "$BENCH_CACHE/$image.tar" "blobs/sha256/$manifest")
  LAYERS[$image]=$(jq '.layers | length' <<<"$manifest_json")
  gz=$(jq '[.layers[].size] | add' <<<"$manifest_json")
  raw=0
  for layer in $(jq -r '.layers[].digest | sub("sha256:"; "")' <<<"$manifest_json"); do
    raw=$((raw + $(tar -xOf "$BENCH_CACHE/$image.tar" "blobs/sha256/$layer" | zcat | wc -c)))
  done
  echo "$image: ${LAYERS[$image]} layers, $((gz / 1048576)) MiB gzip, $((raw / 1048576)) MiB tar, at $REGISTRY_ADDR/bench/$image:latest"
done

# pull_once DAEMON REF: a fresh DAEMON (berthd or containerd) pulls and unpacks REF;
# sets PULL_SECONDS to the time from the pull's start to the end of the sync after it.
pull_once() {
  local daemon=$1 ref=$2 t0 t1 committed
  DAEMON_DIR=$WORK/$daemon
  "start_$daemon" "$DAEMON_DIR"
  sync
  if [ "$daemon" = berthd ]; then
    t0=$EPOCHREALTIME
    "$BERTHCTL" --address "$SOCK" images pull "$ref" >/dev/null
    sync
    t1=$EPOCHREALTIME
  else
    t0=$EPOCHREALTIME
    ctr --address "$SOCK" images pull --plain-http "$ref" >/dev/null
    sync
    t1=$EPOCHREALTIME
  fi
  # Both must have unpacked every layer into overlayfs, or the times compare nothing.
  committed=$(ctr --address "$SOCK" snapshots --snapshotter overlayfs ls | awk '$NF == "Committed"' | wc -l)
  if [ "$committed" != "$3" ]; then
    echo "$daemon unpacked $committed of $3 layers of $ref" >&2
    return 1
  fi
  stop_daemon "$DAEMON_DIR"
  DAEMON_DIR=
  PULL_SECONDS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }')
}

declare -A LABEL=([berthd]=berthctl [containerd]=ctr)
for image in minbase layered; do
  ref=$REGISTRY_ADDR/bench/$image:latest
  : >"$WORK/berthd.times"
  : >"$WORK/containerd.times"
  for r in $(seq "$ROUNDS"); do
    # Alternate who goes first, so page-cache warmth is shared fairly.
    if ((r % 2)); then order="containerd berthd"; else order="berthd containerd"; fi
    for d in $order; do
      pull_once "$d" "$ref" "${LAYERS[$image]}"
      echo "$PULL_SECONDS" >>"$WORK/$d.times"
      printf '%-8s round %d %-9s %7.3f s\n' "$image" "$r" "${LABEL[$d]}" "$PULL_SECONDS"
    done
  done
  b=$(median <"$WORK/berthd.times")
  c=$(median <"$WORK/containerd.times")
  printf '%-8s pull+unpack median: berthctl %.3f s, ctr %.3f s, ratio berthctl/ctr %s (target <= 0.70)\n' \
    "$image" "$b" "$c" "$(ratio "$b" "$c")"
done
