//! Compiles every `.proto` file under `berth/`, `containerd/` and `google/` into prost
//! messages and tonic clients and servers, nested by protobuf package.

use std::path::{Path, PathBuf};

/// Directories (relative to this crate) that hold our `.proto` sources.
const PROTO_DIRS: &[&str] = &["berth", "containerd", "google"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let mut protos = Vec::new();
    for dir in PROTO_DIRS {
        let dir = root.join(dir);
        println!("cargo:rerun-if-changed={}", dir.display());
        collect_protos(&dir, &mut protos)?;
    }
    protos.sort();
    for proto in &protos {
        println!("cargo:rerun-if-changed={}", proto.display());
    }

    // `Name` impls give every message its full protobuf name, which is the
    // type URL containerd clients put in `Any` (see `src/any.rs`).
    let mut config = prost_build::Config::new();
    config.enable_type_names();

    tonic_build::configure()
        .build_server(true)
        .build_client(true)
        // No `XClient::connect(uri)` constructors: clients here talk over unix
        // sockets (`XClient::new(channel)`), and the shim's `Connect` rpc would
        // clash with that name.
        .build_transport(false)
        .file_descriptor_set_path(out_dir.join("descriptor_set.bin"))
        .include_file("mod.rs")
        .compile_protos_with_config(config, &protos, &[root])?;
    Ok(())
}

/// Appends every `.proto` file below `dir` to `out`.
fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            out.push(path);
        }
    }
    Ok(())
}
