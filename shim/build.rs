//! Links the `berth-shim` binary as a position-dependent executable.
//!
//! A position-independent executable has its relocated read-only data (`.data.rel.ro`,
//! a few hundred KiB for a gRPC server) rewritten at load time, which makes those pages
//! private to every process. Hundreds of shims run at once, so linking without PIE keeps
//! that data shared between all of them and cuts each idle shim's memory (PSS) markedly.

fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
