#!/usr/bin/env bash
# Runs the whole test suite as root: formatting, lints, unit tests and the end-to-end
# tests that start the real berthd against Debian's ctr on real overlayfs.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "the end-to-end tests need root (mounts, namespaces)" >&2; exit 1; }
scripts/install-deps.sh

# A one-off build gains nothing from incremental caches, which would double the disk used.
export CARGO_INCREMENTAL=0

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The end-to-end tests run the daemon binaries, so build them first.
cargo build --workspace --bins
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast --failure-output final
else
  cargo test --workspace --no-fail-fast
fi
