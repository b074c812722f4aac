# Shared helpers for the benchmarks: start/stop berthd and containerd side by side, each on
# its own temp root, state and socket, and build OCI image archives from a directory.
# Sourced by the bench scripts; never used by tests.

BENCH_TMP=${BENCH_TMP:-/var/tmp/berth-bench}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BERTHD=${BERTHD:-$REPO/target/release/berthd}

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc; }

# start_berthd DIR -> sets DAEMON_PID and SOCK
start_berthd() {
  local dir=$1
  mkdir -p "$dir"
  SOCK=$dir/berthd.sock
  "$BERTHD" --root "$dir/root" --state "$dir/state" --address "$SOCK" --log-level warn \
    >"$dir/daemon.log" 2>&1 &
  DAEMON_PID=$!
  wait_socket "$dir"
}

# start_containerd DIR -> sets DAEMON_PID and SOCK
start_containerd() {
  local dir=$1
  mkdir -p "$dir"
  SOCK=$dir/containerd.sock
  cat >"$dir/config.toml" <<TOML
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
TOML
  containerd --config "$dir/config.toml" --log-level warn >"$dir/daemon.log" 2>&1 &
  DAEMON_PID=$!
  wait_socket "$dir"
}

wait_socket() {
  for _ in $(seq 200); do
    ctr --address "$SOCK" version >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "daemon did not come up; log:" >&2
  tail -20 "$1/daemon.log" >&2
  return 1
}

# stop_daemon DIR: stops the daemon we started, unmounts anything left under DIR, removes it.
stop_daemon() {
  local dir=$1
  kill "$DAEMON_PID" 2>/dev/null || true
  wait "$DAEMON_PID" 2>/dev/null || true
  grep -o " $dir[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$dir"
}

# oci_archive_from_layer LAYER.tar.gz NAME OUT.tar: a one-layer linux/amd64 OCI image archive.
oci_archive_from_layer() {
  local layer=$1 name=$2 out=$3 work
  work=$(mktemp -d)
  mkdir -p "$work/blobs/sha256"
  local ldig lsize diffid cdig csize mdig msize
  ldig=$(sha256sum "$layer" | cut -d' ' -f1)
  lsize=$(stat -c %s "$layer")
  diffid=$(zcat "$layer" | sha256sum | cut -d' ' -f1)
  cp "$layer" "$work/blobs/sha256/$ldig"
  printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$diffid" >"$work/config.json"
  cdig=$(sha256sum "$work/config.json" | cut -d' ' -f1)
  csize=$(stat -c %s "$work/config.json")
  mv "$work/config.json" "$work/blobs/sha256/$cdig"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "$cdig" "$csize" "$ldig" "$lsize" >"$work/manifest.json"
  mdig=$(sha256sum "$work/manifest.json" | cut -d' ' -f1)
  msize=$(stat -c %s "$work/manifest.json")
  mv "$work/manifest.json" "$work/blobs/sha256/$mdig"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$work/oci-layout"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"latest"},"platform":{"architecture":"amd64","os":"linux"}}]}' \
    "$mdig" "$msize" "$name" >"$work/index.json"
  tar -C "$work" -cf "$out" oci-layout index.json blobs
  rm -rf "$work"
}

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
