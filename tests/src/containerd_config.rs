//! The config.toml the harness gives a reference containerd: everything inside the
//! test's temp dir, and no plugin that needs the network or could touch the host's
//! own containerd (no CRI, no tracing exporter, no extra snapshotters).

use std::path::Path;

/// Plugins switched off in the reference containerd.
pub const DISABLED_PLUGINS: &[&str] = &[
    "io.containerd.grpc.v1.cri",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.internal.v1.tracing",
];

/// Renders the TOML (config version 2) for a containerd whose root, state, sockets and
/// `opt` directory are the given paths.
pub fn containerd_config(root: &Path, state: &Path, socket: &Path, opt: &Path) -> String {
    let quote = |p: &Path| toml_string(&p.display().to_string());
    let disabled: Vec<String> = DISABLED_PLUGINS.iter().map(|p| toml_string(p)).collect();
    let ttrpc = socket.with_extension("ttrpc");
    format!(
        "version = 2\n\
         root = {root}\n\
         state = {state}\n\
         disabled_plugins = [{disabled}]\n\
         \n\
         [grpc]\n  address = {socket}\n\
         \n\
         [ttrpc]\n  address = {ttrpc}\n\
         \n\
         [debug]\n  level = \"debug\"\n\
         \n\
         [plugins.\"io.containerd.internal.v1.opt\"]\n  path = {opt}\n",
        root = quote(root),
        state = quote(state),
        disabled = disabled.join(", "),
        socket = quote(socket),
        ttrpc = quote(&ttrpc),
        opt = quote(opt),
    )
}

/// A TOML basic string holding `s`.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_is_the_one_given() {
        let text = containerd_config(
            Path::new("/t/root"),
            Path::new("/t/state"),
            Path::new("/t/d.sock"),
            Path::new("/t/opt"),
        );
        assert!(text.contains("root = \"/t/root\""));
        assert!(text.contains("state = \"/t/state\""));
        assert!(text.contains("address = \"/t/d.sock\""));
        assert!(text.contains("address = \"/t/d.ttrpc\""));
        assert!(text.contains("path = \"/t/opt\""));
        assert!(text.contains("\"io.containerd.grpc.v1.cri\""));
    }

    #[test]
    fn quotes_and_backslashes_are_escaped() {
        assert_eq!(toml_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
