#!/usr/bin/env bash
# Benchmark: `ctr images import` (content ingest + unpack into overlayfs) of a large
# Debian minbase image and of the busybox image, against berthd and containerd side by
# side in the same run, each round on a fresh root. Prints times, medians and ratios,
# plus the machine's yardsticks (plain tar -xzpf, sha256 and disk write speed).
#
#   bench/import.sh [ROUNDS]        (as root; builds berthd in release mode first)
#
# The minbase rootfs is made once with debootstrap (needs the Debian mirror) and cached
# in $BENCH_CACHE (default /var/cache/berth-bench).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ROUNDS=${1:-3}
BENCH_CACHE=${BENCH_CACHE:-/var/cache/berth-bench}

(cd "$REPO" && cargo build --release -q -p berthd -p berth-tests --bins)
mkdir -p "$BENCH_CACHE" "$BENCH_TMP"

if [ ! -f "$BENCH_CACHE/minbase-layer.tar.gz" ]; then
  if [ ! -x "$BENCH_CACHE/rootfs/bin/sh" ]; then
    command -v debootstrap >/dev/null || apt-get install -y -q debootstrap
    debootstrap --variant=minbase bookworm "$BENCH_CACHE/rootfs" http://deb.debian.org/debian >"$BENCH_CACHE/debootstrap.log"
  fi
  # What a published minbase image leaves out: downloaded packages and package lists.
  rm -rf "$BENCH_CACHE"/rootfs/var/cache/apt/archives/*.deb "$BENCH_CACHE"/rootfs/var/lib/apt/lists/*_* "$BENCH_CACHE"/rootfs/var/cache/apt/*.bin
  tar --numeric-owner --xattrs -C "$BENCH_CACHE/rootfs" -cf - . | gzip -6 >"$BENCH_CACHE/minbase-layer.tar.gz.tmp"
  mv "$BENCH_CACHE/minbase-layer.tar.gz.tmp" "$BENCH_CACHE/minbase-layer.tar.gz"
fi
layer=$BENCH_CACHE/minbase-layer.tar.gz
[ -f "$BENCH_CACHE/minbase.tar" ] || oci_archive_from_layer "$layer" localhost/minbase:latest "$BENCH_CACHE/minbase.tar"
"$REPO/target/release/berth-mkimage" busybox "$BENCH_TMP/busybox.tar" localhost/busybox:latest >/dev/null

entries=$(tar -tzf "$layer" | wc -l)
usize=$(zcat "$layer" | wc -c)
csize=$(stat -c %s "$layer")
echo "minbase layer: $((csize / 1048576)) MiB gzip, $((usize / 1048576)) MiB tar, $entries entries"

# Yardsticks.
x=$BENCH_TMP/tar-x; rm -rf "$x"; mkdir -p "$x"; sync
t0=$(now); tar -xzpf "$layer" -C "$x"; sync; t1=$(now); rm -rf "$x"
echo "yardstick: tar -xzpf + sync: $(elapsed "$t0" "$t1") s"
cat "$BENCH_CACHE/minbase.tar" >/dev/null
t0=$(now); sha256sum "$BENCH_CACHE/minbase.tar" >/dev/null; t1=$(now)
sha_s=$(elapsed "$t0" "$t1")
t0=$(now); dd if="$BENCH_CACHE/minbase.tar" of="$BENCH_TMP/dd.out" bs=1M conv=fsync status=none; t1=$(now)
dd_s=$(elapsed "$t0" "$t1"); rm -f "$BENCH_TMP/dd.out"
asize=$(stat -c %s "$BENCH_CACHE/minbase.tar")
echo "yardstick: ingest limit for the $((asize / 1048576)) MiB archive: sha256 $sha_s s + write+fsync $dd_s s = $(echo "$sha_s + $dd_s" | bc) s ($(echo "scale=1; $asize / 1048576 / ($sha_s + $dd_s)" | bc) MiB/s)"

run_import() { # daemon archive -> seconds
  local daemon=$1 archive=$2 dir
  dir=$BENCH_TMP/$daemon.$$
  "start_$daemon" "$dir"
  sync
  local t0 t1
  t0=$(now)
  ctr --address "$SOCK" images import "$archive" >/dev/null
  sync
  t1=$(now)
  stop_daemon "$dir"
  elapsed "$t0" "$t1"
}

for image in minbase busybox; do
  archive=$BENCH_CACHE/minbase.tar
  [ "$image" = busybox ] && archive=$BENCH_TMP/busybox.tar
  : >"$BENCH_TMP/berthd.times"; : >"$BENCH_TMP/containerd.times"
  for r in $(seq "$ROUNDS"); do
    # alternate who goes first so page-cache warmth is shared fairly
    if ((r % 2)); then order="containerd berthd"; else order="berthd containerd"; fi
    for d in $order; do
      t=$(run_import "$d" "$archive")
      echo "$t" >>"$BENCH_TMP/$d.times"
      printf '%-8s round %d %-10s %6.3f s\n' "$image" "$r" "$d" "$t"
    done
  done
  b=$(median <"$BENCH_TMP/berthd.times"); c=$(median <"$BENCH_TMP/containerd.times")
  printf '%-8s import+unpack median: berthd %.3f s, containerd %.3f s, ratio berth/containerd %.2f (target <= 0.80)\n' \
    "$image" "$b" "$c" "$(echo "scale=3; $b / $c" | bc)"
done
