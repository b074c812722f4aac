#!/usr/bin/env bash
# Installs what building and testing Berth needs on a Debian 12 machine, if missing.
# Safe to run again: it only calls apt-get when a package is absent.
set -euo pipefail

packages=(
  protobuf-compiler # protoc, for the gRPC code in proto/
  runc              # the OCI runtime the shim drives
  containerd        # its `ctr` is the independent client in tests; its daemon the benchmark baseline
  busybox-static    # the test images are built from the host's static busybox
  util-linux        # mount/umount
  docker-registry   # the local registry the pull/push tests run against
  skopeo            # puts test images into that registry
  openssl           # self-signed certificate for the HTTPS registry test
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# A package install may start containerd as a service on machines with an init system;
# Berth's tests start their own daemons and never use a system-wide one.
command -v cargo >/dev/null || { echo "cargo (Rust toolchain) is required" >&2; exit 1; }
