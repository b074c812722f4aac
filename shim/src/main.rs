//! `berth-shim`: the per-container shim binary. All of it lives in the library
//! (`berth_shim::server`); this is only the entry point.

fn main() -> std::process::ExitCode {
    berth_shim::server::cli::main()
}
