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
  launch_berthd "$1"
  wait_socket "$1"
}

# launch_berthd DIR -> sets DAEMON_PID and SOCK; returns at once, without waiting for the
# socket (for timing a restart from the moment the process is started).
launch_berthd() {
  local dir=$1
  mkdir -p "$dir"
  SOCK=$dir/berthd.sock
  "$BERTHD" --root "$dir/root" --state "$dir/state" --address "$SOCK" --log-level warn \
    >>"$dir/daemon.log" 2>&1 &
  DAEMON_PID=$!
}

# start_containerd DIR -> sets DAEMON_PID and SOCK
start_containerd() {
  launch_containerd "$1"
  wait_socket "$1"
}

# launch_containerd DIR -> sets DAEMON_PID and SOCK; returns at once (see launch_berthd).
launch_containerd() {
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
  containerd --config "$dir/config.toml" --log-level warn >>"$dir/daemon.log" 2>&1 &
  DAEMON_PID=$!
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
  { grep -o " $dir[^ ]*" /proc/self/mountinfo || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
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

# ---- Helpers for the task benchmarks (start-latency.sh, shim-memory.sh, recovery.sh) ----

# build_task_binaries: release builds of berthd, berth-shim and berth-mkimage. berthd and the
# shim are built by separate cargo runs, so berthd is linked without the shim's server half;
# the shim lands next to berthd in target/release, where berthd looks for it.
# BENCH_NO_BUILD=1 skips the build and uses the binaries already there.
build_task_binaries() {
  [ -z "${BENCH_NO_BUILD:-}" ] || return 0
  (cd "$REPO" && cargo build --release -q -p berthd && cargo build --release -q -p berth-shim &&
    cargo build --release -q -p berth-tests --bins && cargo build --release -q -p berthctl)
}

# unique_namespace -> a namespace no other run uses. containerd keeps its runc root and shim
# sockets under /run/containerd/ for every instance, so a unique namespace keeps runs apart.
unique_namespace() { echo "bench-$$-$EPOCHSECONDS"; }

# ms_between T0 T1: milliseconds between two $EPOCHREALTIME readings.
ms_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", (b - a) * 1000 }'; }

# percentile P: the P-th percentile (nearest rank) of the numbers on stdin.
percentile() { sort -n | awk -v p="$1" '{ a[NR] = $1 } END { r = int((p * NR + 99) / 100); if (r < 1) r = 1; print a[r] }'; }

# ratio A B: A / B with two decimals ("n/a" when B is not positive).
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f\n", a / b; else print "n/a" }'; }

# task_table SOCK NS: one "id pid status" line per task that `ctr tasks ls` shows (nothing
# while the daemon is down).
task_table() { { ctr --address "$1" -n "$2" tasks ls 2>/dev/null || true; } | awk 'NR > 1 { print $1, $2, $3 }'; }

# running_count SOCK NS: how many tasks `ctr tasks ls` shows RUNNING.
running_count() { task_table "$1" "$2" | awk '$3 == "RUNNING"' | wc -l; }

# run_idle_containers SOCK NS FIFODIR COUNT PREFIX: COUNT detached `sleep 100000` containers
# PREFIX1..PREFIXCOUNT from the busybox image; their stdio fifos live in FIFODIR.
run_idle_containers() {
  local sock=$1 ns=$2 fifos=$3 count=$4 prefix=$5 i
  mkdir -p "$fifos"
  for i in $(seq "$count"); do
    ctr --address "$sock" -n "$ns" run -d --fifo-dir "$fifos" localhost/busybox:latest \
      "$prefix$i" sleep 100000 >/dev/null
  done
}

# remove_all_tasks SOCK NS: SIGKILLs every task in NS, deletes the tasks, then every container
# with its snapshot.
remove_all_tasks() {
  local sock=$1 ns=$2 ids
  ids=$(ctr --address "$sock" -n "$ns" tasks ls -q 2>/dev/null || true)
  for id in $ids; do
    ctr --address "$sock" -n "$ns" tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
  done
  [ -z "$ids" ] || ctr --address "$sock" -n "$ns" tasks rm -f $ids >/dev/null 2>&1 || true
  ids=$(ctr --address "$sock" -n "$ns" containers ls -q 2>/dev/null || true)
  [ -z "$ids" ] || ctr --address "$sock" -n "$ns" containers rm $ids >/dev/null 2>&1 || true
}

# teardown DAEMON DIR NS PID: leaves nothing of a benchmark daemon behind, whatever state the
# run stopped in. A daemon that is down (PID gone) is started again on DIR first, so that its
# shims and containers are removed through it; then the daemon is stopped, DIR unmounted and
# removed, and the namespace's leftovers cleared.
teardown() {
  local daemon=$1 dir=$2 ns=$3
  DAEMON_PID=$4
  [ -d "$dir" ] || return 0
  if [ -z "$DAEMON_PID" ] || ! kill -0 "$DAEMON_PID" 2>/dev/null; then "launch_$daemon" "$dir"; fi
  SOCK=$dir/$daemon.sock
  wait_socket "$dir" && remove_all_tasks "$SOCK" "$ns"
  stop_daemon "$dir"
  remove_namespace_leftovers "$ns"
}

# remove_namespace_leftovers NS: the empty cgroups runc made for NS in every hierarchy and
# containerd's per-namespace runc root; rmdir refuses anything still in use.
remove_namespace_leftovers() {
  local ns=$1 d
  for d in "/sys/fs/cgroup/$ns" /sys/fs/cgroup/*/"$ns"; do
    [ -d "$d" ] || continue
    rmdir "$d"/*/ 2>/dev/null || true
    rmdir "$d" 2>/dev/null || true
  done
  rmdir "/run/containerd/runc/$ns" 2>/dev/null || true
}

# runc_bundle_from_archive ARCHIVE DIR: an OCI bundle for a bare `runc run` of the same image:
# the archive's layers unpacked into DIR/rootfs, and `runc spec`'s default config with no
# terminal and `true` as the process.
runc_bundle_from_archive() {
  local archive=$1 dir=$2 work manifest layer
  work=$(mktemp -d)
  tar -C "$work" -xf "$archive"
  manifest=$(jq -r '.manifests[0].digest | sub("sha256:"; "")' "$work/index.json")
  mkdir -p "$dir/rootfs"
  for layer in $(jq -r '.layers[].digest | sub("sha256:"; "")' "$work/blobs/sha256/$manifest"); do
    tar -C "$dir/rootfs" -xf "$work/blobs/sha256/$layer"
  done
  rm -rf "$work"
  runc spec --bundle "$dir"
  jq '.process.terminal = false | .process.args = ["true"]' "$dir/config.json" >"$dir/config.json.new"
  mv "$dir/config.json.new" "$dir/config.json"
}

# ---- Helpers for the pull benchmark (pull.sh) ----

BERTHCTL=${BERTHCTL:-$REPO/target/release/berthctl}

# ensure_minbase_archive: makes (once, cached in $BENCH_CACHE) the Debian bookworm minbase
# rootfs with debootstrap (needs the Debian mirror), its gzip layer
# $BENCH_CACHE/minbase-layer.tar.gz and the one-layer OCI archive $BENCH_CACHE/minbase.tar
# named localhost/minbase:latest.
ensure_minbase_archive() {
  BENCH_CACHE=${BENCH_CACHE:-/var/cache/berth-bench}
  mkdir -p "$BENCH_CACHE"
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
  [ -f "$BENCH_CACHE/minbase.tar" ] ||
    oci_archive_from_layer "$BENCH_CACHE/minbase-layer.tar.gz" localhost/minbase:latest "$BENCH_CACHE/minbase.tar"
}

# layer_from_host_dirs OUT.tar.gz DIR...: a gzip layer of the host's directories DIR (absolute
# paths, kept at the same place in the layer), made once: an existing OUT is reused.
layer_from_host_dirs() {
  local out=$1 d
  shift
  [ -f "$out" ] && return 0
  local rel=()
  for d in "$@"; do rel+=("${d#/}"); done
  tar --numeric-owner --xattrs -C / -cf - "${rel[@]}" | gzip -6 >"$out.tmp"
  mv "$out.tmp" "$out"
}

# oci_archive_from_layers NAME OUT.tar LAYER.tar.gz...: a linux/amd64 OCI image archive of
# the gzip layers, bottom first, named NAME.
oci_archive_from_layers() {
  local name=$1 out=$2 work layer dig size diffid diff_ids="" layers="" cdig csize mdig msize
  shift 2
  work=$(mktemp -d)
  mkdir -p "$work/blobs/sha256"
  for layer in "$@"; do
    dig=$(sha256sum "$layer" | cut -d' ' -f1)
    size=$(stat -c %s "$layer")
    diffid=$(zcat "$layer" | sha256sum | cut -d' ' -f1)
    cp "$layer" "$work/blobs/sha256/$dig"
    diff_ids+="${diff_ids:+,}\"sha256:$diffid\""
    layers+="${layers:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$dig\",\"size\":$size}"
  done
  printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":[%s]}}' \
    "$diff_ids" >"$work/config.json"
  cdig=$(sha256sum "$work/config.json" | cut -d' ' -f1)
  csize=$(stat -c %s "$work/config.json")
  mv "$work/config.json" "$work/blobs/sha256/$cdig"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' \
    "$cdig" "$csize" "$layers" >"$work/manifest.json"
  mdig=$(sha256sum "$work/manifest.json" | cut -d' ' -f1)
  msize=$(stat -c %s "$work/manifest.json")
  mv "$work/manifest.json" "$work/blobs/sha256/$mdig"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$work/oci-layout"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"latest"},"platform":{"architecture":"amd64","os":"linux"}}]}' \
    "$mdig" "$msize" "$name" >"$work/index.json"
  tar -C "$work" -cf "$out.tmp" oci-layout index.json blobs
  mv "$out.tmp" "$out"
  rm -rf "$work"
}

# free_tcp_port: a port in 20000-60999 nothing listened on a moment ago.
free_tcp_port() {
  local port
  while :; do
    port=$(shuf -i 20000-60999 -n 1)
    [ -z "$(ss -Hltn "sport = :$port")" ] && echo "$port" && return 0
  done
}

# registry_answers ADDR: whether the registry at ADDR (127.0.0.1:PORT) answers GET /v2/.
registry_answers() {
  local status
  { exec 3<>"/dev/tcp/${1%:*}/${1##*:}"; } 2>/dev/null || return 1
  printf 'GET /v2/ HTTP/1.0\r\nHost: %s\r\n\r\n' "$1" >&3
  read -r -t 2 _ status _ <&3 || status=
  exec 3<&-
  [ "$status" = 200 ]
}

# start_registry DIR: Debian's docker-registry on 127.0.0.1:<free port>, storage and config
# under DIR; sets REGISTRY_PID and REGISTRY_ADDR once it answers /v2/.
start_registry() {
  local dir=$1 attempt
  mkdir -p "$dir/storage"
  for attempt in 1 2 3 4 5; do
    REGISTRY_ADDR=127.0.0.1:$(free_tcp_port)
    cat >"$dir/config.yml" <<YAML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/storage
http:
  addr: $REGISTRY_ADDR
  secret: berth-bench-$$
YAML
    docker-registry serve "$dir/config.yml" >>"$dir/registry.log" 2>&1 &
    REGISTRY_PID=$!
    for _ in $(seq 100); do
      registry_answers "$REGISTRY_ADDR" && return 0
      kill -0 "$REGISTRY_PID" 2>/dev/null || break
      sleep 0.05
    done
    stop_registry
    echo "docker-registry did not start on $REGISTRY_ADDR (attempt $attempt)" >&2
  done
  tail -20 "$dir/registry.log" >&2
  return 1
}

# stop_registry: stops the registry start_registry started (its pid only).
stop_registry() {
  [ -n "${REGISTRY_PID:-}" ] || return 0
  kill "$REGISTRY_PID" 2>/dev/null || true
  wait "$REGISTRY_PID" 2>/dev/null || true
  REGISTRY_PID=
}

# push_archive_to_registry ARCHIVE REPO:TAG: copies the OCI archive's image to
# $REGISTRY_ADDR/REPO:TAG with skopeo over plain HTTP, digests kept.
push_archive_to_registry() {
  skopeo --insecure-policy copy --quiet --preserve-digests --dest-tls-verify=false \
    --dest-no-creds "oci-archive:$1" "docker://$REGISTRY_ADDR/$2"
}
